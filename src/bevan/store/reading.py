"""ReadSession: the reads of one connection, from a resource by id to a search page.

Every read the service makes goes through one; WriteSession (store/writing.py) adds
the writes on top, so a transaction reads its own writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Select, func, not_, select
from sqlalchemy.sql.elements import ColumnElement

from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.search import CompositeMatch, SearchQuery, StringMatch
from bevan.store import plan_choice
from bevan.store.dialect import StoreDialect
from bevan.store.plan_choice import PlanChoice
from bevan.store.plan_facts import PlanFacts
from bevan.store.raw import CompiledStatement, RawCursor
from bevan.store.schema import INDEX_TABLES, PREFIX_BUCKET, resource, resource_version
from bevan.store.search import SearchCompiler
from bevan.store.shapes import ShapeCache
from bevan.store.statements import VERSION_COLUMNS, VERSIONS, HotStatements, chunks, given
from bevan.store.versions import SearchHit, StoredVersion, stored_at, version_fields

# A plan line longer than this (PostgreSQL prints every row key it was given) is cut.
PLAN_LINE_CHARS = 200
# The subquery listing a search page's row keys (plans show it as scanned: it holds at
# most a page's worth).
PAGE = "page"


class ReadSession(PlanChoice):
    """Reads on one connection (see RecordStore.snapshot for what each sees)."""

    def __init__(
        self,
        connection: Connection,
        dialect: StoreDialect,
        hot: HotStatements,
        compiler: SearchCompiler,
        facts: PlanFacts,
        shapes: ShapeCache,
    ) -> None:
        self.connection = connection
        self.facts = facts
        # Composites reordered to lead with their fewest rows: whether those are few.
        self._narrow_leads: dict[CompositeMatch, bool] = {}
        self.shapes = shapes
        self.dialect = dialect
        self.hot = hot
        self.compiler = compiler
        self._raw: RawCursor | None = None

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    @property
    def raw(self) -> RawCursor:
        if self._raw is None:
            self._raw = RawCursor(self.connection)
        return self._raw

    @property
    def indexed(self) -> RawCursor:
        """The cursor for reads of the index tables (a write session first stores the
        index rows it is holding back, so its reads see its own writes)."""
        return self.raw

    def _see_own_writes(self) -> None:
        """Before a read through Core: nothing here (a write session stores the rows it
        holds back)."""

    def current(self, resource_type: str, id: str) -> StoredVersion | None:
        """Return the current version (a tombstone if deleted), or None if never stored."""
        row = self.raw.first(self.hot.select_current, {"t": resource_type, "i": id})
        if row is None:
            return None
        return StoredVersion(row[0], row[1], row[2], row[3], row[4] == "delete", row[5], row[6])

    def version(self, resource_type: str, id: str, version_id: int) -> StoredVersion | None:
        statement = select(*VERSION_COLUMNS).where(
            resource_version.c.resource_type == resource_type,
            resource_version.c.id == id,
            resource_version.c.version_id == version_id,
        )
        self._see_own_writes()
        row = self.connection.execute(statement).first()
        return stored_at(row) if row else None

    def history(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: str | None = None,
        before_seq: int | None = None,
        count: int = 20,
        max_bytes: int | None = None,
    ) -> list[StoredVersion]:
        """Return versions newest first, at most count, optionally after since; given
        max_bytes, stop once the versions read hold more content than that, having read
        one more (so the caller knows whether another page follows)."""
        conditions: list[ColumnElement[bool]] = []
        if resource_type is not None:
            conditions.append(resource_version.c.resource_type == resource_type)
        if id is not None:
            conditions.append(resource_version.c.id == id)
        if since is not None:
            conditions.append(resource_version.c.last_updated >= since)
        if before_seq is not None:
            conditions.append(resource_version.c.seq < before_seq)
        statement = (
            select(*VERSION_COLUMNS)
            .where(*conditions)
            .order_by(resource_version.c.seq.desc())
            .limit(count)
        )
        self._see_own_writes()
        if max_bytes is None:
            return [stored_at(row) for row in self.connection.execute(statement)]
        versions: list[StoredVersion] = []
        size = 0
        for row in self.connection.execute(statement):
            versions.append(stored_at(row))
            if size > max_bytes:
                break
            size += len(versions[-1].content or "")
        return versions

    def history_total(
        self, resource_type: str | None = None, id: str | None = None, since: str | None = None
    ) -> int:
        conditions: list[ColumnElement[bool]] = []
        if resource_type is not None:
            conditions.append(resource_version.c.resource_type == resource_type)
        if id is not None:
            conditions.append(resource_version.c.id == id)
        if since is not None:
            conditions.append(resource_version.c.last_updated >= since)
        statement = select(func.count()).select_from(resource_version).where(*conditions)
        self._see_own_writes()
        return int(self.connection.execute(statement).scalar_one())

    def search(self, query: SearchQuery, limit: int) -> list[SearchHit]:
        """Return up to limit current resources matching query, in page order from the cursor."""
        query, at = self._planned(query)
        cursor = query.cursor
        if cursor is not None and len(cursor.values) != (1 if at is not None else len(query.sort)):
            raise InvalidRequest(
                Issue(
                    "_cursor is not a page of this search (it was made for another _sort)",
                    expression=("_cursor",),
                )
            )
        bucketed = self._by_prefix_bucket(query, at)
        dense = at is None and not query.sort and not bucketed and self._dense(query, limit)
        parts = (
            query.resource_type,
            query.criteria,
            cursor,
            query.sort,
            limit,
            dense,
            at,
            bucketed,
        )
        rows = self.shapes.execute(self.indexed, "page", parts, self._page).fetchall()
        if query.cursor is not None and query.cursor.before:
            rows.reverse()
        width = len(VERSION_COLUMNS)
        return [
            SearchHit(*version_fields(row), tuple(row[width + 1 :]), row[width]) for row in rows
        ]

    def _planned(self, query: SearchQuery) -> tuple[SearchQuery, int | None]:
        """Return query with each composite's narrowest component leading, and the
        position of the chain whose targets order its pages (None: row-key order)."""
        query = self._composites_lead_with_fewest(query)
        return query, self.compiler.target_ordered(query)

    def _by_prefix_bucket(self, query: SearchQuery, at: int | None) -> bool:
        """Return True if the page is one of a search by one string prefix of
        PREFIX_BUCKET characters alone: its row keys are read in order from the
        prefix's bucket (SearchCompiler.page_by_prefix), not found by listing every
        match."""
        if at is not None or query.sort:
            return False
        if len(query.criteria) != 1:
            return False
        criterion = query.criteria[0]
        return (
            isinstance(criterion, StringMatch)
            and criterion.modifier is None
            and len(criterion.values) == 1
            and len(criterion.values[0]) == PREFIX_BUCKET
        )

    def _page(self, parts: tuple[Any, ...]) -> Select[Any]:
        """The page statement for search()'s parts: its versions, row key and sort values."""
        resource_type, criteria, cursor, keys, limit, dense, at, bucketed = parts
        compiler = self.compiler
        query = SearchQuery(resource_type, criteria)
        reverse = cursor is not None and cursor.before
        if at is None:
            columns = compiler.sort_columns(resource, resource_type, keys)
            if bucketed:
                conditions = [
                    compiler.page_by_prefix(resource, resource_type, criteria[0], limit, cursor),
                    not_(resource.c.deleted),
                ]
            else:
                conditions = compiler.conditions(resource, query, dense=dense)
            if cursor is not None:
                conditions.append(compiler.position(resource, keys, columns, cursor))
            order = compiler.order_by(resource, keys, columns, reverse)
        else:
            target_rid, conditions = compiler.by_target(resource, query, at)
            columns = [target_rid]
            if cursor is not None:
                conditions.append(compiler.after_target((target_rid, resource.c.rid), cursor))
            order = compiler.target_order((target_rid, resource.c.rid), reverse)
        # The page's row keys first, then their versions: ordering thousands of matches
        # then moves row keys and sort values, not every match's stored JSON.
        page = (
            select(resource.c.rid, *[c.label(f"sort{i}") for i, c in enumerate(columns)])
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
            .subquery(PAGE)
        )
        sorted_by = [page.c[f"sort{i}"] for i in range(len(columns))]
        if at is None:
            page_order = compiler.order_by(page, keys, sorted_by, reverse)
        else:
            page_order = compiler.target_order((sorted_by[0], page.c.rid), reverse)
        return (
            select(*VERSION_COLUMNS, page.c.rid, *sorted_by)
            .select_from(page.join(VERSIONS, resource.c.rid == page.c.rid))
            .order_by(*page_order)
        )

    def explain(self, query: SearchQuery, limit: int = 21) -> list[str]:
        """Return the database's plan for the page query of a search, one line per step."""
        query, at = self._planned(query)
        bucketed = self._by_prefix_bucket(query, at)
        parts = (query.resource_type, query.criteria, query.cursor, query.sort, limit)
        statement = self._page((*parts, False, at, bucketed))
        compiled = statement.compile(
            dialect=self.connection.dialect, compile_kwargs={"literal_binds": True}
        )
        return self._plan_lines(self.connection.exec_driver_sql(self._explain + str(compiled)))

    def explain_choice(self, query: SearchQuery, limit: int = 21) -> list[str]:
        """Return the database's plans for the statements that choose a search's plan
        (its composites' parts counted, its driving criterion's matches counted or
        sampled), each under a line naming it; none for a search that needs none."""
        query, at = self._planned(query)
        statements: list[tuple[str, Select[Any]]] = []
        for criterion in query.criteria:
            if isinstance(criterion, CompositeMatch):
                for parts in criterion.alternatives:
                    for part in parts:
                        key = (query.resource_type, part, plan_choice.DENSE_MATCHES)
                        statements.append(("a component's rows", self._component_count(key)))
        driver = self.compiler.driver(query)
        # As search() asks _dense: only a page in row-key order, not read from a bucket.
        if at is None and not query.sort and not self._by_prefix_bucket(query, at):
            if isinstance(driver, CompositeMatch):
                if not self._narrow_leads.get(driver, False):
                    for parts in driver.alternatives:
                        sample = (query.resource_type, parts, plan_choice.COMPOSITE_SAMPLE)
                        statements.append(("a sample", self._composite_sample(sample)))
            elif driver is not None:
                size = self.facts.size(self.connection, query.resource_type)
                counted = (query.resource_type, driver, self._dense_threshold(limit, size))
                statements.append(("the driving matches", self._driving_count(counted)))
        lines = []
        for title, statement in statements:
            compiled = statement.compile(
                dialect=self.connection.dialect, compile_kwargs={"literal_binds": True}
            )
            lines.append(f"choosing the plan, {title}:")
            result = self.connection.exec_driver_sql(self._explain + str(compiled))
            lines.extend(f"  {line}" for line in self._plan_lines(result))
        return lines

    @property
    def _explain(self) -> str:
        return self.dialect.explain

    def _plan_lines(self, result: Any) -> list[str]:
        """The plan EXPLAIN returned, one line per step."""
        return [self.dialect.plan_line(row) for row in result.fetchall()]

    def explain_everything(
        self, patient_id: str, params: Mapping[str, Sequence[str]], limit: int
    ) -> list[str]:
        """Return the database's plans for `$everything`'s reads of one Patient's record:
        its members' versions, then what they and the Patient reference."""
        rids = [rid for rid, _ in self.compartment("Patient", patient_id, params, limit)]
        parts = (
            ("members", *self.hot.versions_by_rid.bind(rids or [0])),
            (
                "referenced",
                *self.hot.target_versions.bind(rids or [0], {"t": "Patient", "i": patient_id}),
            ),
        )
        lines = []
        for title, statement, bound in parts:
            explained = CompiledStatement(self._explain + statement.sql, statement.names)
            lines.append(f"{title} ({len(rids)} resources in the compartment):")
            for line in self._plan_lines(self.indexed.execute(explained, bound)):
                lines.append(f"  {line[:PLAN_LINE_CHARS]}{' ...' * (len(line) > PLAN_LINE_CHARS)}")
        return lines

    def search_ids(self, query: SearchQuery, limit: int) -> list[str]:
        """Return the ids of up to limit matches (for conditional operations)."""
        parts = (query.resource_type, query.criteria, limit)
        rows = self.shapes.execute(self.indexed, "ids", parts, self._ids).fetchall()
        return [row[0] for row in rows]

    def _ids(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, criteria, limit = parts
        conditions = self.compiler.conditions(resource, SearchQuery(resource_type, criteria))
        return select(resource.c.id).where(*conditions).order_by(resource.c.rid).limit(limit)

    def count(self, query: SearchQuery) -> int:
        parts = (query.resource_type, query.criteria)
        return int(self.shapes.execute(self.indexed, "count", parts, self._count).fetchone()[0])

    def _count(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, criteria = parts
        conditions = self.compiler.conditions(resource, SearchQuery(resource_type, criteria))
        return select(func.count()).select_from(resource).where(*conditions)

    def current_many(self, keys: Iterable[tuple[str, str]]) -> list[StoredVersion]:
        """Return the live current versions of the given (type, id) pairs that exist."""
        by_type: dict[str, set[str]] = {}
        for resource_type, id in keys:
            by_type.setdefault(resource_type, set()).add(id)
        found: list[StoredVersion] = []
        for resource_type, ids in sorted(by_type.items()):
            for chunk in chunks(sorted(ids), 500):
                rows = self.raw.rows(self.hot.current_many, chunk, {"t": resource_type})
                found.extend(stored_at(row) for row in rows)
        return found

    def references_from(
        self, resource_type: str, ids: Sequence[str], param: str | None, target_type: str | None
    ) -> set[tuple[str, str]]:
        """Return the (type, id) targets that resources of resource_type with ids reference
        through param (every reference parameter if None)."""
        statement = self.hot.references_from[(param is not None, target_type is not None)]
        found: set[tuple[str, str]] = set()
        for chunk in chunks(list(ids), 500):
            bound = given(t=resource_type, param=param, target=target_type)
            found.update((row[0], row[1]) for row in self.indexed.rows(statement, chunk, bound))
        return found

    def compartment(
        self, compartment_type: str, id: str, params: Mapping[str, Sequence[str]], limit: int
    ) -> list[tuple[int, StoredVersion]]:
        """Return (rid, version) of up to limit live resources in compartment_type/id's
        compartment: those whose reference parameters named for their type in params
        point at it. One index probe finds them all, whatever their types."""
        pointing = self.indexed.execute(self.hot.compartment, {"id": id, "t": compartment_type})
        rids = sorted({row[0] for row in pointing if row[2] in params.get(row[1], ())})[:limit]
        return self.versions_by_rid(rids)

    def versions_by_rid(self, rids: Sequence[int]) -> list[tuple[int, StoredVersion]]:
        """Return (rid, current version) of the live resources among rids, in rid order."""
        found: list[tuple[int, StoredVersion]] = []
        for chunk in chunks(list(rids), 500):
            rows = self.raw.rows(self.hot.versions_by_rid, chunk)
            found.extend((row[0], stored_at(row, 1)) for row in rows)
        return found

    def versions_referenced(
        self, rids: Sequence[int], resource_type: str, id: str
    ) -> list[StoredVersion]:
        """Return the live current versions of what the resources with rids reference,
        and of what resource_type/id references."""
        found: dict[tuple[str, str], StoredVersion] = {}
        bound = {"t": resource_type, "i": id}
        # With no rids, one run for resource_type/id alone (no row has key 0).
        for chunk in chunks(list(rids), 500) if rids else [[0]]:
            for row in self.indexed.rows(self.hot.target_versions, chunk, bound):
                version = stored_at(row)
                found[(version.resource_type, version.id)] = version
        return list(found.values())

    def referencing(
        self, source_type: str, param: str | None, target_type: str, ids: Sequence[str], limit: int
    ) -> list[StoredVersion]:
        """Return live resources of source_type that point at target_type/ids through param."""
        statement = self.hot.referencing[param is not None]
        found: list[StoredVersion] = []
        for chunk in chunks(list(ids), 500):
            bound = given(t=source_type, target=target_type, param=param)
            rows = self.indexed.rows(statement, chunk, {**bound, "n": limit - len(found)})
            found.extend(stored_at(row) for row in rows)
            if len(found) >= limit:
                break
        return found

    def meta_in_use(self, resource_type: str | None) -> dict[str, list[Any]]:
        """Return the tags and security labels (as Codings) and the profiles that current
        resources carry, of one type or of all."""
        token, uri = INDEX_TABLES["token"], INDEX_TABLES["uri"]
        found: dict[str, list[Any]] = {}
        self._see_own_writes()
        for part, param in (("tag", "_tag"), ("security", "_security")):
            statement = select(token.c.system, token.c.code).where(token.c.param == param)
            if resource_type is not None:
                statement = statement.where(token.c.resource_type == resource_type)
            rows = self.connection.execute(
                statement.distinct().order_by(token.c.system, token.c.code)
            )
            found[part] = [
                {k: v for k, v in (("system", row[0]), ("code", row[1])) if v is not None}
                for row in rows
            ]
        statement = select(uri.c.value).where(uri.c.param == "_profile")
        if resource_type is not None:
            statement = statement.where(uri.c.resource_type == resource_type)
        found["profile"] = [
            row[0] for row in self.connection.execute(statement.distinct().order_by(uri.c.value))
        ]
        return found

    def resource_counts(self) -> dict[str, int]:
        """Return how many current (not deleted) resources of each type are stored."""
        statement = (
            select(resource.c.resource_type, func.count())
            .where(not_(resource.c.deleted))
            .group_by(resource.c.resource_type)
        )
        self._see_own_writes()
        return {row[0]: int(row[1]) for row in self.connection.execute(statement)}

    def live_resources(self, after_rid: int, limit: int) -> list[tuple[int, str, str]]:
        """Return (rid, resource type, content) of live resources after rid, in rid order."""
        statement = (
            select(resource.c.rid, resource.c.resource_type, resource_version.c.content)
            .select_from(VERSIONS)
            .where(resource.c.rid > after_rid, not_(resource.c.deleted))
            .order_by(resource.c.rid)
            .limit(limit)
        )
        self._see_own_writes()
        return [(row[0], row[1], row[2]) for row in self.connection.execute(statement)]

    def last_seq(self) -> int:
        self._see_own_writes()
        return int(self.connection.execute(select(func.max(resource_version.c.seq))).scalar() or 0)
