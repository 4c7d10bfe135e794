"""RecordStore: versions, current rows, index rows and the change sequence, in one place.

Every write goes through WriteSession.write_version, which appends the version, moves the
current row and replaces the index rows in the caller's transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    any_,
    bindparam,
    delete,
    func,
    insert,
    not_,
    select,
    text,
    true,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.search import (
    CompositeMatch,
    Criterion,
    SearchQuery,
    StringMatch,
)
from bevan.fhir.search_parameters import IndexRows
from bevan.store.budget import budgeted, learning, statement_budget, within_budget
from bevan.store.engine import WalCheckpointer, WriterLock, is_sqlite, make_engine, reads_engine
from bevan.store.raw import (
    ArrayStatement,
    CompiledStatement,
    ListStatement,
    RawCursor,
    compile_for,
)
from bevan.store.schema import (
    INDEX_TABLES,
    PREFIX_BUCKET,
    index_reference,
    metadata,
    resource,
    resource_version,
)
from bevan.store.search import SearchCompiler
from bevan.store.shapes import ShapeCache

# A driving criterion with more index rows than a page should list is walked instead:
# the threshold depends on the type's size (see ReadSession._dense) within these bounds.
# A plan line longer than this (PostgreSQL prints every row key it was given) is cut.
PLAN_LINE_CHARS = 200
MIN_DENSE_MATCHES = 500
MAX_LISTED_MATCHES = 20_000
SQRT_WALK_STEP_COST = 2.5  # a walk step costs about six listing steps
# A composite's components have their index rows counted up to this many, to pick the
# one to lead; one whose leading component has fewer is listed without more ado. One
# whose every component has more is judged from a sample: how many of the first
# COMPOSITE_SAMPLE rows of its leading component match the rest, scaled to that
# component's rows, counted up to LEADING_ROWS_COUNTED (see _composite_walks).
DENSE_MATCHES = 5000
COMPOSITE_SAMPLE = 1000
LEADING_ROWS_COUNTED = 100_000
MAX_REMEMBERED_DENSITIES = 10_000
# The subquery listing a search page's row keys (plans show it as scanned: it holds at
# most a page's worth).
PAGE = "page"


class StoreConflict(Exception):
    """Two writers raced for the same new resource; the caller may retry or answer 409."""


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as stored: its content is the JSON text we return."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    deleted: bool
    content: str | None
    seq: int


@dataclass(frozen=True)
class SearchHit(StoredVersion):
    """A stored version found by a search, with its sort values (for the next page)."""

    sort_values: tuple[Any, ...] = ()
    rid: int = 0


@dataclass(frozen=True)
class CurrentRow:
    rid: int
    version_id: int
    deleted: bool


# Each resource row with its current version.
_VERSIONS = resource.join(resource_version, resource_version.c.seq == resource.c.seq)
_VERSION_COLUMNS = (
    resource_version.c.resource_type,
    resource_version.c.id,
    resource_version.c.version_id,
    resource_version.c.last_updated,
    resource_version.c.method,
    resource_version.c.content,
    resource_version.c.seq,
)


# Statements built once: composing them per call costs more than running them.
def _insert(table: Any, *names: str) -> Any:
    return insert(table).values({name: bindparam(name) for name in names})


_INSERT_VERSION = _insert(
    resource_version, "resource_type", "id", "version_id", "last_updated", "method", "content"
).returning(resource_version.c.seq)
_INSERT_RESOURCE = _insert(
    resource, "resource_type", "id", "version_id", "seq", "last_updated", "deleted"
).returning(resource.c.rid)
# SQLite: the keys are given (see WriteSession.write_version), so rows can wait and go
# in a table at a time.
_KEYED_NAMES = {
    "resource_version": (
        "seq",
        "resource_type",
        "id",
        "version_id",
        "last_updated",
        "method",
        "content",
    ),
    "resource": ("rid", "resource_type", "id", "version_id", "seq", "last_updated", "deleted"),
}
_INSERT_KEYED = {
    "resource_version": _insert(resource_version, *_KEYED_NAMES["resource_version"]),
    "resource": _insert(resource, *_KEYED_NAMES["resource"]),
}
_LAST_KEYS = select(
    select(func.max(resource_version.c.seq)).scalar_subquery(),
    select(func.max(resource.c.rid)).scalar_subquery(),
)


# PostgreSQL: a version or resource row that meets one another transaction committed
# first (two creates of one id at once) inserts nothing and returns nothing, instead of
# failing, which would end the transaction or need a savepoint round each insert.
def _insert_unless_taken(table: Any, names: tuple[str, ...], key: list[Any], back: Any) -> Any:
    values: dict[str, Any] = {name: bindparam(name) for name in names}
    return (
        postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=key)
    ).returning(back)


_INSERT_VERSION_UNLESS_TAKEN = _insert_unless_taken(
    resource_version,
    ("resource_type", "id", "version_id", "last_updated", "method", "content"),
    [resource_version.c.resource_type, resource_version.c.id, resource_version.c.version_id],
    resource_version.c.seq,
)
_INSERT_RESOURCE_UNLESS_TAKEN = _insert_unless_taken(
    resource,
    ("resource_type", "id", "version_id", "seq", "last_updated", "deleted"),
    [resource.c.resource_type, resource.c.id],
    resource.c.rid,
)
_UPDATE_RESOURCE = (
    update(resource)
    .where(resource.c.rid == bindparam("b_rid"))
    .values(
        version_id=bindparam("version_id"),
        seq=bindparam("seq"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
    )
)
# Index table columns after rid and resource_type, in the order IndexRows gives them.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "token": ("param", "system", "code", "text", "grp"),
    "string": ("param", "value", "exact", "grp"),
    "date": ("param", "low", "high", "grp"),
    "number": ("param", "value", "grp"),
    "quantity": ("param", "value", "system", "code", "canonical_value", "canonical_unit", "grp"),
    "reference": (
        "param",
        "target_type",
        "target_id",
        "identifier_system",
        "identifier_value",
        "grp",
    ),
    "uri": ("param", "value", "grp"),
}
_INDEX_NAMES = {name: ("rid", "resource_type", *columns) for name, columns in INDEX_COLUMNS.items()}
# The columns of each kind of row a write session holds back, in the order it holds them.
_HELD_NAMES = {**_KEYED_NAMES, **_INDEX_NAMES}
_INSERT_INDEX = {
    name: _insert(table, "rid", "resource_type", *INDEX_COLUMNS[name])
    for name, table in INDEX_TABLES.items()
}
_DELETE_INDEX = {
    name: delete(table).where(table.c.rid == bindparam("b_rid"))
    for name, table in INDEX_TABLES.items()
}


_SELECT_CURRENT = (
    select(*_VERSION_COLUMNS)
    .select_from(_VERSIONS)
    .where(resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i"))
)
_SELECT_ROW = select(resource.c.rid, resource.c.version_id, resource.c.deleted).where(
    resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i")
)


# Lookups of sets of resources, built once with expanding parameters: composing a
# statement with hundreds of literal values per call cost more than running it.
_CURRENT_MANY = (
    select(*_VERSION_COLUMNS)
    .select_from(_VERSIONS)
    .where(
        resource.c.resource_type == bindparam("t"),
        resource.c.id.in_(bindparam("ids", expanding=True)),
        not_(resource.c.deleted),
    )
    .order_by(resource.c.id)
)
# On PostgreSQL a list of row keys is one bigint[] parameter (see raw.ArrayStatement).
_RIDS_ARRAY = bindparam("rids", type_=postgresql.ARRAY(BigInteger))


def _among_rids(column: Any, postgres: bool) -> ColumnElement[bool]:
    if postgres:
        return column == any_(_RIDS_ARRAY)
    return column.in_(bindparam("rids", expanding=True))


def _versions_by_rid(postgres: bool) -> Select[Any]:
    return (
        select(resource.c.rid, *_VERSION_COLUMNS)
        .select_from(_VERSIONS)
        .where(_among_rids(resource.c.rid, postgres), not_(resource.c.deleted))
        .order_by(resource.c.rid)
    )


# The current versions of what the resources with rids reference, and of what the one
# resource of type t and id i references: $everything's referenced resources in one
# statement (they were found first, then read type by type).
def _pointed_at(postgres: bool) -> Any:
    return union(
        select(index_reference.c.target_type, index_reference.c.target_id).where(
            _among_rids(index_reference.c.rid, postgres),
            index_reference.c.target_type.is_not(None),
        ),
        select(index_reference.c.target_type, index_reference.c.target_id)
        .join(resource, resource.c.rid == index_reference.c.rid)
        .where(
            resource.c.resource_type == bindparam("t"),
            resource.c.id == bindparam("i"),
            index_reference.c.target_type.is_not(None),
        ),
    ).subquery()


_POINTED_AT = _pointed_at(postgres=False)
_TARGET_VERSIONS = (
    select(*_VERSION_COLUMNS)
    .select_from(_VERSIONS)
    .where(
        tuple_(resource.c.resource_type, resource.c.id).in_(
            select(_POINTED_AT.c.target_type, _POINTED_AT.c.target_id)
        ),
        not_(resource.c.deleted),
    )
)


# PostgreSQL: each target looked up by its own probe of the (type, id) key. Left to
# choose, the planner expected every reference of a long record to name a different
# target (2,273 for a Patient with 403 resources, where there were 11) and hashed
# them against a scan of every resource: 94 ms at 222,449 resources, against 2.
def _target_versions_probed() -> Select[Any]:
    pointed_at = _pointed_at(postgres=True)
    found = (
        select(resource.c.seq)
        .where(
            resource.c.resource_type == pointed_at.c.target_type,
            resource.c.id == pointed_at.c.target_id,
            not_(resource.c.deleted),
        )
        .limit(1)  # one at most (the key is unique); and the planner cannot merge it away
        .lateral("found")
    )
    return select(*_VERSION_COLUMNS).select_from(
        pointed_at.join(found, true()).join(resource_version, resource_version.c.seq == found.c.seq)
    )


_COMPARTMENT = select(
    index_reference.c.rid, index_reference.c.resource_type, index_reference.c.param
).where(
    index_reference.c.target_id == bindparam("id"),
    index_reference.c.target_type == bindparam("t"),
)


def _references_from(by_param: bool, by_target_type: bool) -> Any:
    statement = (
        select(index_reference.c.target_type, index_reference.c.target_id)
        .join(resource, resource.c.rid == index_reference.c.rid)
        .where(
            resource.c.resource_type == bindparam("t"),
            resource.c.id.in_(bindparam("ids", expanding=True)),
            index_reference.c.target_type.is_not(None),
        )
    )
    if by_param:
        statement = statement.where(index_reference.c.param == bindparam("param"))
    if by_target_type:
        statement = statement.where(index_reference.c.target_type == bindparam("target"))
    return statement


def _referencing(by_param: bool) -> Any:
    pointing = select(index_reference.c.rid).where(
        index_reference.c.resource_type == bindparam("t"),
        index_reference.c.target_type == bindparam("target"),
        index_reference.c.target_id.in_(bindparam("ids", expanding=True)),
    )
    if by_param:
        pointing = pointing.where(index_reference.c.param == bindparam("param"))
    return (
        select(*_VERSION_COLUMNS)
        .select_from(_VERSIONS)
        .where(resource.c.rid.in_(pointing), not_(resource.c.deleted))
        .order_by(resource.c.resource_type, resource.c.id)
        .limit(bindparam("n"))
    )


_REFERENCING = {by_param: _referencing(by_param) for by_param in (False, True)}
_REFERENCES_FROM = {
    (by_param, by_target): _references_from(by_param, by_target)
    for by_param in (False, True)
    for by_target in (False, True)
}


class HotStatements:
    """The per-request statements, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        postgres = dialect.name == "postgresql"
        self.insert_version = compile_for(
            _INSERT_VERSION_UNLESS_TAKEN if postgres else _INSERT_VERSION, dialect
        )
        self.insert_resource = compile_for(
            _INSERT_RESOURCE_UNLESS_TAKEN if postgres else _INSERT_RESOURCE, dialect
        )
        self.update_resource = compile_for(_UPDATE_RESOURCE, dialect)
        self.last_keys = compile_for(_LAST_KEYS, dialect)
        self.insert_held = {
            n: compile_for(st, dialect) for n, st in {**_INSERT_KEYED, **_INSERT_INDEX}.items()
        }
        self.delete_index = {n: compile_for(st, dialect) for n, st in _DELETE_INDEX.items()}
        self.select_current = compile_for(_SELECT_CURRENT, dialect)
        self.select_row = compile_for(_SELECT_ROW, dialect)
        self.compartment = compile_for(_COMPARTMENT, dialect)
        self.current_many = ListStatement(_CURRENT_MANY, "ids", dialect)
        self.versions_by_rid: ListStatement | ArrayStatement
        self.target_versions: ListStatement | ArrayStatement
        if postgres:
            self.versions_by_rid = ArrayStatement(_versions_by_rid(True), "rids", dialect)
            self.target_versions = ArrayStatement(_target_versions_probed(), "rids", dialect)
        else:
            self.versions_by_rid = ListStatement(_versions_by_rid(False), "rids", dialect)
            self.target_versions = ListStatement(_TARGET_VERSIONS, "rids", dialect)
        self.references_from = {
            key: ListStatement(statement, "ids", dialect)
            for key, statement in _REFERENCES_FROM.items()
        }
        self.referencing = {
            key: ListStatement(statement, "ids", dialect) for key, statement in _REFERENCING.items()
        }
        locking = dialect.name != "sqlite"  # SQLite's BEGIN IMMEDIATE already serialises writers
        self.select_row_for_update = compile_for(
            _SELECT_ROW.with_for_update() if locking else _SELECT_ROW, dialect
        )


def _given(**values: Any) -> dict[str, Any]:
    """Return the parameters that have values: the statement variant chosen by which
    are None binds only the others."""
    return {name: value for name, value in values.items() if value is not None}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_VersionFields = tuple[str, str, int, str, bool, "str | None", int]


def _version_fields(row: Any, start: int = 0) -> _VersionFields:
    """Return, in StoredVersion's field order, the version held in row's
    _VERSION_COLUMNS from position start (positional: a page of search results makes
    one for each row, and keywords cost more than building the rest of the entry)."""
    return (
        row[start],
        row[start + 1],
        row[start + 2],
        row[start + 3],
        row[start + 4] == "delete",
        row[start + 5],
        row[start + 6],
    )


def _stored_at(row: Any, start: int = 0) -> StoredVersion:
    """Return the version held in row's _VERSION_COLUMNS, from position start."""
    return StoredVersion(*_version_fields(row, start))


class PlanFacts:
    """What search plans need to know about the data, remembered for a while: how many
    resources of each type are stored (recounted every few minutes: plans need the
    order of magnitude), whether a driving criterion has more matches than a page
    should list, and how many index rows (up to a bound) a composite's component has
    (each asked again after a minute). Every answer picks a plan, never the results,
    and asking costs a query."""

    def __init__(self, max_age: float = 300.0, density_age: float = 60.0) -> None:
        self.max_age = max_age
        self.density_age = density_age
        self._counts: dict[str, tuple[int, float]] = {}
        self._answers: dict[Hashable, tuple[Any, float]] = {}

    def size(self, connection: Connection, resource_type: str) -> int:
        now = time.monotonic()
        known = self._counts.get(resource_type)
        if known is not None and now - known[1] < self.max_age:
            return known[0]
        statement = select(func.count()).where(resource.c.resource_type == resource_type)
        with learning():
            count = int(connection.execute(statement).scalar_one())
        self._counts[resource_type] = (count, now)
        return count

    def dense(self, key: Hashable, count_reaches: Callable[[], bool]) -> bool:
        """Return the remembered answer for key, else count_reaches() (and remember it)."""
        return bool(self._recall(("dense", key), count_reaches))

    def rows_up_to(self, key: Hashable, count: Callable[[], int]) -> int:
        """Return the remembered row count for key, else count() (and remember it)."""
        return int(self._recall(("rows", key), count))

    def _recall(self, key: Hashable, ask: Callable[[], Any]) -> Any:
        now = time.monotonic()
        known = self._answers.get(key)
        if known is not None and now - known[1] < self.density_age:
            return known[0]
        with learning():
            answer = ask()
        if len(self._answers) >= MAX_REMEMBERED_DENSITIES:
            self._answers.clear()
        self._answers[key] = (answer, now)
        return answer


class ReadSession:
    """Reads on one connection (see RecordStore.snapshot for what each sees)."""

    def __init__(
        self,
        connection: Connection,
        sqlite: bool,
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
        self.sqlite = sqlite
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
        statement = select(*_VERSION_COLUMNS).where(
            resource_version.c.resource_type == resource_type,
            resource_version.c.id == id,
            resource_version.c.version_id == version_id,
        )
        self._see_own_writes()
        row = self.connection.execute(statement).first()
        return _stored_at(row) if row else None

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
            select(*_VERSION_COLUMNS)
            .where(*conditions)
            .order_by(resource_version.c.seq.desc())
            .limit(count)
        )
        self._see_own_writes()
        if max_bytes is None:
            return [_stored_at(row) for row in self.connection.execute(statement)]
        versions: list[StoredVersion] = []
        size = 0
        for row in self.connection.execute(statement):
            versions.append(_stored_at(row))
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
        width = len(_VERSION_COLUMNS)
        return [
            SearchHit(*_version_fields(row), tuple(row[width + 1 :]), row[width]) for row in rows
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
            select(*_VERSION_COLUMNS, page.c.rid, *sorted_by)
            .select_from(page.join(_VERSIONS, resource.c.rid == page.c.rid))
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
                        key = (query.resource_type, part, DENSE_MATCHES)
                        statements.append(("a component's rows", self._component_count(key)))
        driver = self.compiler.driver(query)
        # As search() asks _dense: only a page in row-key order, not read from a bucket.
        if at is None and not query.sort and not self._by_prefix_bucket(query, at):
            if isinstance(driver, CompositeMatch):
                if not self._narrow_leads.get(driver, False):
                    for parts in driver.alternatives:
                        sample = (query.resource_type, parts, COMPOSITE_SAMPLE)
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
        return "EXPLAIN QUERY PLAN " if self.sqlite else "EXPLAIN "

    def _plan_lines(self, result: Any) -> list[str]:
        """The plan EXPLAIN returned, one line per step (SQLite's detail is its last column)."""
        return [str(row[-1] if self.sqlite else row[0]) for row in result.fetchall()]

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

    def _composites_lead_with_fewest(self, query: SearchQuery) -> SearchQuery:
        """Reorder each composite's components so that the one with the fewest index rows
        leads and the others are checked per row: `code$value` searches start from a
        narrow value range rather than from every row of a common code, and the reverse."""
        if not any(isinstance(c, CompositeMatch) for c in query.criteria):
            return query
        criteria = tuple(
            self._lead_with_fewest(query.resource_type, c) if isinstance(c, CompositeMatch) else c
            for c in query.criteria
        )
        return replace(query, criteria=criteria)

    def _lead_with_fewest(self, resource_type: str, composite: CompositeMatch) -> Criterion:
        alternatives = []
        most_led = 0
        for parts in composite.alternatives:
            counted = sorted(
                ((self._index_rows_up_to(resource_type, part), i) for i, part in enumerate(parts))
            )
            alternatives.append(tuple(parts[i] for _, i in counted))
            most_led = max(most_led, counted[0][0])
        led = replace(composite, alternatives=tuple(alternatives))
        self._narrow_leads[led] = most_led < DENSE_MATCHES
        return led

    def _index_rows_up_to(
        self, resource_type: str, part: Criterion, most: int = DENSE_MATCHES
    ) -> int:
        """Return how many index rows one component matches alone, up to most
        (remembered for a while: a common code leads many searches, each counting its
        thousands of rows again, while the values beside it change)."""
        parts = (resource_type, part, most)

        def count() -> int:
            probe = self.shapes.execute(
                self.indexed, "component rows", parts, self._component_count
            )
            return int(probe.fetchone()[0])

        return self.facts.rows_up_to(parts, count)

    def _component_count(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, part, limit = parts
        rows = self.compiler.component_rows(resource_type, part)
        return select(func.count()).select_from(rows.limit(limit).subquery())

    def _dense(self, query: SearchQuery, limit: int) -> bool:
        """Return True if the driving criterion matches more rows than a page should list:
        then pages walk the type in row-key order, testing each resource, and stop at a
        page's worth instead of listing every match.

        Listing costs about one step per match; walking about limit * size / matches
        (a page's worth at the matches' density), and a walk step, which tests one
        resource, costs about six listing steps (measured at a million resources: a
        chained search with 6,700 matches took 36 ms walking and 12 ms listing; a
        quantity with 11,500, 35 ms listing and 3 ms walking). Walking wins once
        matches pass sqrt(6 * limit * size). Composites are judged otherwise (see
        _composite_walks).
        """
        driver = self.compiler.driver(query)
        if driver is None:
            return False
        if isinstance(driver, CompositeMatch) and self._narrow_leads.get(driver, False):
            # Its leading components have fewer rows than DENSE_MATCHES: list them, with
            # no need to count the matches first.
            return False
        size = self.facts.size(self.connection, query.resource_type)
        if isinstance(driver, CompositeMatch):
            return self._composite_walks(query.resource_type, driver, limit, size)
        threshold = self._dense_threshold(limit, size)

        def count_reaches() -> bool:
            parts = (query.resource_type, driver, threshold)
            probe = self.shapes.execute(self.indexed, "driving rows", parts, self._driving_count)
            return int(probe.fetchone()[0]) >= threshold

        return self.facts.dense((query.resource_type, driver, threshold), count_reaches)

    @staticmethod
    def _dense_threshold(limit: int, size: int) -> int:
        """Return how many matches make a driving criterion dense (see _dense)."""
        walked = int(SQRT_WALK_STEP_COST * math.sqrt(limit * size))
        return min(MAX_LISTED_MATCHES, max(MIN_DENSE_MATCHES, walked))

    def _composite_walks(
        self, resource_type: str, composite: CompositeMatch, limit: int, size: int
    ) -> bool:
        """Return True if a page of a composite whose every component has thousands of
        rows is found sooner by walking the type than by listing its matches.

        Listing checks every row of the leading component against the element's other
        components, each check costing about a walk step; walking tests about
        limit * size / matches resources. Counting the matches to choose would check
        every leading row too (a heart rate of 98 or more at a million resources:
        50,926 heart rates, 3,278 matches, 205 ms to count and 231 to list), so they are
        estimated from how many of the first COMPOSITE_SAMPLE leading rows match.
        """

        def estimate() -> bool:
            leading = matches = 0.0
            for parts in composite.alternatives:
                rows = self._index_rows_up_to(resource_type, parts[0], LEADING_ROWS_COUNTED)
                key = (resource_type, parts, COMPOSITE_SAMPLE)
                sampled = self.shapes.execute(
                    self.indexed, "composite sample", key, self._composite_sample
                ).fetchone()[0]
                leading += rows
                matches += rows * int(sampled) / max(1, min(rows, COMPOSITE_SAMPLE))
            return matches * leading > limit * size

        return self.facts.dense((resource_type, composite, limit, size), estimate)

    def _composite_sample(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, components, sample = parts
        return self.compiler.composite_sample(resource_type, components, sample)

    def _driving_count(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, driver, limit = parts
        rows = self.compiler.counted_rows(resource_type, driver)
        return select(func.count()).select_from(rows.limit(limit).subquery())

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
            for chunk in _chunks(sorted(ids), 500):
                rows = self.raw.rows(self.hot.current_many, chunk, {"t": resource_type})
                found.extend(_stored_at(row) for row in rows)
        return found

    def references_from(
        self, resource_type: str, ids: Sequence[str], param: str | None, target_type: str | None
    ) -> set[tuple[str, str]]:
        """Return the (type, id) targets that resources of resource_type with ids reference
        through param (every reference parameter if None)."""
        statement = self.hot.references_from[(param is not None, target_type is not None)]
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(list(ids), 500):
            bound = _given(t=resource_type, param=param, target=target_type)
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
        for chunk in _chunks(list(rids), 500):
            rows = self.raw.rows(self.hot.versions_by_rid, chunk)
            found.extend((row[0], _stored_at(row, 1)) for row in rows)
        return found

    def versions_referenced(
        self, rids: Sequence[int], resource_type: str, id: str
    ) -> list[StoredVersion]:
        """Return the live current versions of what the resources with rids reference,
        and of what resource_type/id references."""
        found: dict[tuple[str, str], StoredVersion] = {}
        bound = {"t": resource_type, "i": id}
        # With no rids, one run for resource_type/id alone (no row has key 0).
        for chunk in _chunks(list(rids), 500) if rids else [[0]]:
            for row in self.indexed.rows(self.hot.target_versions, chunk, bound):
                version = _stored_at(row)
                found[(version.resource_type, version.id)] = version
        return list(found.values())

    def referencing(
        self, source_type: str, param: str | None, target_type: str, ids: Sequence[str], limit: int
    ) -> list[StoredVersion]:
        """Return live resources of source_type that point at target_type/ids through param."""
        statement = self.hot.referencing[param is not None]
        found: list[StoredVersion] = []
        for chunk in _chunks(list(ids), 500):
            bound = _given(t=source_type, target=target_type, param=param)
            rows = self.indexed.rows(statement, chunk, {**bound, "n": limit - len(found)})
            found.extend(_stored_at(row) for row in rows)
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
            .select_from(_VERSIONS)
            .where(resource.c.rid > after_rid, not_(resource.c.deleted))
            .order_by(resource.c.rid)
            .limit(limit)
        )
        self._see_own_writes()
        return [(row[0], row[1], row[2]) for row in self.connection.execute(statement)]

    def last_seq(self) -> int:
        self._see_own_writes()
        return int(self.connection.execute(select(func.max(resource_version.c.seq))).scalar() or 0)


# Rows a write session holds back at most before inserting them.
MAX_HELD_ROWS = 20_000


class WriteSession(ReadSession):
    """A write transaction: everything in it commits together or not at all.

    Index rows, and on SQLite version rows and new resource rows, are held back and
    inserted a table at a time (one executemany for many resources instead of several
    statements for each): before any read, before rows are deleted, at a savepoint's
    edges and when the session ends.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._pending: dict[str, list[tuple[Any, ...]]] = {}
        self._pending_rows = 0
        self._last_keys: list[int] | None = None  # SQLite: the last seq and rid given

    @property
    def raw(self) -> RawCursor:
        """The cursor, once every held-back row is in (so reads see this session's writes)."""
        self._see_own_writes()
        return super().raw

    def _see_own_writes(self) -> None:
        if self._pending:
            self.store_held_rows()

    def store_held_rows(self) -> None:
        """Insert the rows held back so far."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        cursor = super().raw
        for table, rows in pending.items():
            cursor.executemany_rows(self.hot.insert_held[table], _HELD_NAMES[table], rows)

    def _hold(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        held = self._pending.get(table)
        if held is None:
            self._pending[table] = rows
        else:
            held.extend(rows)
        self._pending_rows += len(rows)

    def current_row(self, resource_type: str, id: str) -> CurrentRow | None:
        """Return the current row, locked against concurrent writers until commit."""
        row = self.raw.first(self.hot.select_row_for_update, {"t": resource_type, "i": id})
        return CurrentRow(row[0], row[1], bool(row[2])) if row else None

    def lock(self, key: str) -> None:
        """Serialise writers that share key until commit (conditional creates)."""
        if self.sqlite:
            return
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        self.connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": digest})

    def write_version(
        self,
        resource_type: str,
        id: str,
        *,
        version_id: int,
        last_updated: str,
        content: str | None,
        rows: IndexRows,
        current: CurrentRow | None,
    ) -> int:
        """Append a version (content None: a delete) and make it current; return its seq."""
        method = "delete" if content is None else ("create" if current is None else "update")
        row = {
            "resource_type": resource_type,
            "id": id,
            "version_id": version_id,
            "last_updated": last_updated,
            "deleted": content is None,
        }
        row["seq"] = seq = self._append_version(row, method, content)
        if current is None:
            rid = self._add_resource(row)
        else:
            rid = current.rid
            self.raw.execute(self.hot.update_resource, {**row, "b_rid": rid})
            self._delete_index_rows(rid)
        self._insert_index_rows(rid, resource_type, rows)
        return seq

    # On SQLite this transaction is the only writer, so the session gives the keys the
    # database would (one past the largest) and holds the version and resource rows back,
    # to go in with the index rows a table at a time.

    def _append_version(self, row: dict[str, Any], method: str, content: str | None) -> int:
        """Append the version row; return its seq."""
        values = {**row, "method": method, "content": content}
        if self.sqlite:
            values["seq"] = seq = self._next_key(0)
            self._hold_keyed("resource_version", values)
            return seq
        seq = self.raw.scalar(self.hot.insert_version, values)
        if seq is None:  # PostgreSQL: another transaction wrote this version first
            raise StoreConflict(f"{row['resource_type']}/{row['id']} was changed concurrently")
        return int(seq)

    def _add_resource(self, row: dict[str, Any]) -> int:
        """Add the resource row of a new resource; return its rid."""
        if self.sqlite:
            rid = self._next_key(1)
            self._hold_keyed("resource", {**row, "rid": rid})
            return rid
        rid = self.raw.scalar(self.hot.insert_resource, row)
        if rid is None:  # PostgreSQL: another transaction created it first
            raise StoreConflict(f"{row['resource_type']}/{row['id']} was created concurrently")
        return int(rid)

    def _hold_keyed(self, table: str, values: dict[str, Any]) -> None:
        self._hold(table, [tuple(values[name] for name in _KEYED_NAMES[table])])

    def _next_key(self, which: int) -> int:
        """Return the next seq (which 0) or rid (which 1) on SQLite."""
        if self._last_keys is None:
            seq, rid = self.raw.first(self.hot.last_keys, {})
            self._last_keys = [seq or 0, rid or 0]
        self._last_keys[which] += 1
        return self._last_keys[which]

    def replace_index_rows(self, rid: int, resource_type: str, rows: IndexRows) -> None:
        """Replace a resource's index rows (reindexing after the indexed set changes)."""
        self._delete_index_rows(rid)
        self._insert_index_rows(rid, resource_type, rows)

    def _delete_index_rows(self, rid: int) -> None:
        self.store_held_rows()  # any held back for rid are deleted too
        for statement in self.hot.delete_index.values():
            self.raw.execute(statement, {"b_rid": rid})

    def _insert_index_rows(self, rid: int, resource_type: str, rows: IndexRows) -> None:
        for table, values in rows.tables():
            self._hold(table, [(rid, resource_type, *v) for v in values])
        if self._pending_rows >= MAX_HELD_ROWS:
            self.store_held_rows()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block whose writes are undone alone if it raises (batch entries)."""
        self.store_held_rows()
        try:
            with savepoint(self.connection):
                yield
                self.store_held_rows()
        except BaseException:
            self._pending, self._pending_rows = {}, 0  # the block's own, undone with it
            raise


S = TypeVar("S", bound=ReadSession)
_SAVEPOINT_NAMES = itertools.count(1)


@contextmanager
def savepoint(connection: Connection) -> Iterator[None]:
    """Run a block under a savepoint of connection's transaction: undone alone if it
    raises. Straight to the driver: through Core, the SAVEPOINT and RELEASE around a
    small write cost a tenth of a CRUD server's time."""
    name = f"bevan_{next(_SAVEPOINT_NAMES)}"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        cursor.execute(f"RELEASE SAVEPOINT {name}")
    finally:
        cursor.close()


class RecordStore:
    """The record database: open read or write sessions on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.dialect = engine.dialect.name  # "sqlite" or "postgresql"
        self.hot = HotStatements(engine.dialect)
        self.compiler = SearchCompiler(engine.dialect.name)
        self.shapes = ShapeCache(engine.dialect)
        self.facts = PlanFacts()
        # SQLite has one writer at a time. Queue this process's writers on a lock
        # rather than in SQLite's busy handler, which sleeps and retries and so gives
        # long, unfair waits under load; other processes still meet BEGIN IMMEDIATE.
        self._write_lock = WriterLock(engine.url.database) if self.sqlite else None
        # The transaction a group-commit batch holds open on this thread (see batch()).
        self._batch = threading.local()
        self._checkpointer = WalCheckpointer(engine) if self.sqlite else None
        if self._checkpointer is not None:
            self._checkpointer.start()
        # PostgreSQL reads run without a transaction (see snapshot()), on connections
        # of their own that are always so: setting, then resetting, each connection's
        # isolation level took 4% of a search's time in the server. Reads with a time
        # budget have a pool of their own again, as their connections keep its timeout.
        self._reads = None if self.sqlite else reads_engine(engine)
        self._budgeted_reads = None if self.sqlite else reads_engine(engine, pool_size=2)

    @classmethod
    def from_url(cls, url: str) -> RecordStore:
        return cls(make_engine(url))

    @contextmanager
    def read(self) -> Iterator[ReadSession]:
        with self.snapshot() as connection, self._session(ReadSession, connection) as session:
            yield session

    @contextmanager
    def _session(self, kind: type[S], connection: Connection) -> Iterator[S]:
        session = kind(connection, self.sqlite, self.hot, self.compiler, self.facts, self.shapes)
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection to read on; inside batch(), the batch's own, so reads see what
        the batch has written so far.

        On SQLite the reads share one transaction, and so one snapshot. On PostgreSQL
        each statement reads what was committed when it began (READ COMMITTED, which a
        transaction would give them too), so they run without one: a transaction's
        BEGIN and COMMIT were two of a search's three round trips, holding up the event
        loop that waits for them (NHS number: 807 -> 1,014 searches/s over HTTP).
        Inside time_budget() a read is interrupted once past it (store/budget.py): on
        PostgreSQL its connection comes from a pool whose statements carry the timeout.
        """
        batch: Connection | None = getattr(self._batch, "connection", None)
        if batch is not None:
            writer: WriteSession | None = getattr(self._batch, "writer", None)
            if writer is not None:
                writer.store_held_rows()
            yield batch
            return
        if self._reads is not None and not budgeted():
            with self._reads.connect() as connection:
                yield connection
            return
        if self._budgeted_reads is not None:  # PostgreSQL, inside time_budget()
            with self._budgeted_reads.connect() as connection, statement_budget(connection):
                yield connection
            return
        with (
            self.engine.connect() as connection,
            connection.begin(),
            within_budget(connection),
        ):
            yield connection

    @contextmanager
    def write(self) -> Iterator[WriteSession]:
        """A write transaction; inside batch(), a savepoint of the batch's transaction."""
        with self.transaction() as connection, self._session(WriteSession, connection) as session:
            outer = getattr(self._batch, "writer", None)
            self._batch.writer = session
            try:
                yield session
                session.store_held_rows()
            finally:
                self._batch.writer = outer

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a write transaction of its own, or, inside batch(), under a
        savepoint of the batch's: every writer to this database goes through here."""
        batch: Connection | None = getattr(self._batch, "connection", None)
        if batch is None:
            with self._transaction() as connection:
                yield connection
        else:
            with savepoint(batch):
                yield batch

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold one write transaction open on this thread: every write() and read() in
        the block runs inside it (each write under its own savepoint), and all commit
        together at the end."""
        if getattr(self._batch, "connection", None) is not None:
            raise RuntimeError("a write batch is already open on this thread")
        with self._transaction() as connection:
            self._batch.connection = connection
            try:
                yield
            finally:
                self._batch.connection = None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        lock = self._write_lock or contextlib.nullcontext()
        with lock:
            connection = self.engine.connect().execution_options(bevan_write=True)
            with connection, connection.begin():
                yield connection

    @property
    def write_lock(self) -> WriterLock | None:
        """The lock this process's SQLite writers queue on (None on PostgreSQL)."""
        return self._write_lock

    def analyse(self, *, settle: bool = False) -> None:
        """Refresh the planner's statistics (after loads; cheap, sampled on SQLite).

        settle (at the end of a load): on PostgreSQL, VACUUM as well, marking the new
        rows visible to every reader so that index-only scans need not visit each one's
        table row, as autovacuum would later (measured after a 222,449-resource load:
        Patients by name prefix 739 -> 916 searches/s, _revinclude 1,077 -> 1,411;
        2.8 s).
        """
        names = ", ".join(table.name for table in metadata.sorted_tables)
        if not self.sqlite and settle:  # VACUUM cannot run inside a transaction
            assert self._reads is not None
            with self._reads.connect() as connection:
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {names}")
            return
        with self.engine.connect() as connection:
            if self.sqlite:
                connection.exec_driver_sql("PRAGMA analysis_limit=1000")
                connection.exec_driver_sql("ANALYZE")
            else:  # only our tables: a bare ANALYZE visits every schema in the database
                connection.exec_driver_sql(f"ANALYZE {names}")
            connection.commit()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for engine in (self._reads, self._budgeted_reads, self.engine):
            if engine is not None:
                engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()


__all__: Sequence[str] = (
    "RecordStore",
    "ReadSession",
    "WriteSession",
    "StoredVersion",
    "StoreConflict",
)
