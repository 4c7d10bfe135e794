"""Typed search criteria -> SQL over the index tables (SQLAlchemy Core, both dialects).

Each criterion becomes `rid IN (SELECT rid FROM index_<type> WHERE ...)` on the resource
row, so every lookup starts from an index on (resource_type, param, value) and no plan
scans a whole index table. Chains and `_has` nest the same shape through
index_reference. On PostgreSQL the same plan is spelled so that its planner keeps it:
the driving rows as `rid = ANY(ARRAY(...))`, the per-candidate checks with OFFSET 0 (see
`_among` and `_checked`). Paging is by keyset (the sort values and id of the last row),
so pages stay correct while resources are created and deleted between requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    any_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BooleanClauseList
from sqlalchemy.sql.selectable import CompoundSelect, NamedFromClause
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.types import ARRAY, BigInteger

from bevan.fhir.search import (
    AnyOf,
    Bound,
    Chain,
    CompositeMatch,
    Criterion,
    Cursor,
    DateMatch,
    Has,
    IdMatch,
    LastUpdatedMatch,
    Missing,
    NearMatch,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
    Restriction,
    SearchQuery,
    SortKey,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from bevan.fhir.search_parameters import NEAR_LATITUDE, NEAR_LONGITUDE, shared_rows
from bevan.store.schema import (
    INDEX_TABLES,
    PREFIX_BUCKET_OF,
    index_date,
    index_reference,
    index_string,
    resource,
)
from bevan.store.shapes import derived

Alias = Any  # a resource table or an alias of it


class RowKeys(ColumnElement[Any]):
    """PostgreSQL's `ARRAY(SELECT rid ...)`: the rows' keys as one array value."""

    inherit_cache = False
    type = ARRAY(BigInteger())

    def __init__(self, rows: Select[Any] | CompoundSelect[Any]) -> None:
        self.rows = rows

    def get_children(self, **kw: Any) -> list[Any]:
        return [self.rows]

    def _copy_internals(self, clone: Any = None, **kw: Any) -> None:
        self.rows = clone(self.rows, **kw)


@compiles(RowKeys)
def _row_keys(element: RowKeys, compiler: Any, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.rows, asfrom=False, **kw)})"


# How selective a criterion usually is: the lowest rank drives the query (its index rows
# are read first); the others are checked per candidate through the rid index.
def _rank(criterion: Criterion) -> int | None:
    if isinstance(criterion, ReferenceMatch):
        return 1
    if isinstance(criterion, TokenMatch):
        return None if criterion.modifier == "not" else 2 if criterion.modifier is None else 4
    if isinstance(criterion, StringMatch):
        return 3 if criterion.modifier != "contains" else 6
    if narrow_chain(criterion):
        return 1
    if isinstance(criterion, UriMatch | CompositeMatch | Chain):
        return 4
    if isinstance(criterion, QuantityMatch):
        return None if _only_ne(v.bound for v in criterion.values) else 5
    if isinstance(criterion, NumberMatch | NearMatch):
        return None if isinstance(criterion, NumberMatch) and _only_ne(criterion.bounds) else 5
    if isinstance(criterion, DateMatch):
        return None if _only_ne(criterion.bounds) else 6
    if isinstance(criterion, AnyOf) and all(_rank(c) is not None for c in criterion.criteria):
        return 2
    if isinstance(criterion, Missing) and not criterion.missing:
        return 7
    return None


def narrow_chain(criterion: Criterion) -> bool:
    """Return True for a chain through a reference (Slot?schedule.actor=Location/x): it
    passes the few resources that refer to one resource, so its matches are about as few
    as a reference's, and lie together (one diary's slots) rather than spread through
    the type: listed in row-key order (walked only when there are very many of them),
    not ordered target by target (benchmarks/booking.py, free-slot search)."""
    return isinstance(criterion, Chain) and isinstance(criterion.inner, ReferenceMatch)


def _driving_position(criteria: tuple[Criterion, ...]) -> int | None:
    """Return the position of the criterion that drives (the lowest rank, first on a tie)."""
    ranked = [(rank, i) for i, c in enumerate(criteria) if (rank := _rank(c)) is not None]
    return min(ranked)[1] if ranked else None


def _only_ne(bounds: Iterable[Bound]) -> bool:
    """Return True if every value is "ne", which matches nearly every row: listing those
    would read the whole parameter, so such a criterion never drives."""
    return all(b.prefix == "ne" for b in bounds)


def _names_few(criterion: Criterion) -> bool:
    """Return True for identifier=system|value (or value): business identifiers are meant
    to name one resource, so there is no need to count its matches first."""
    return (
        isinstance(criterion, TokenMatch)
        and criterion.param == "identifier"
        and criterion.modifier is None
        and all(v.code for v in criterion.values)
    )


# The criteria whose rows are one index table's, found by a value condition (_match).
_INDEX_VALUE_MATCHES = (
    TokenMatch,
    StringMatch,
    DateMatch,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
    UriMatch,
)


class SearchCompiler:
    """Compiles criteria to SQL; each database's subclass (SQLiteSearchCompiler,
    PostgreSQLSearchCompiler) overrides only what it must do differently."""

    # --- the WHERE clause -----------------------------------------------------------------

    def conditions(
        self, alias: Alias, query: SearchQuery, *, dense: bool = False
    ) -> list[ColumnElement[bool]]:
        """Return the conditions selecting current, live resources matching query.

        dense: the most selective criterion still matches a large share of the type, so
        walking the type in row-key order and testing each candidate finds a page sooner
        than listing every match first.
        """
        return self._where(alias, query.resource_type, query.criteria, dense=dense)

    def driver(self, query: SearchQuery) -> Criterion | None:
        """Return the query's driving criterion (None if it has none, or if it is a
        business identifier, which names one resource or a few)."""
        at = _driving_position(query.criteria)
        if at is None:
            return None
        driver = query.criteria[at]
        return None if _names_few(driver) else driver

    def _where(
        self,
        alias: Alias,
        resource_type: str,
        criteria: tuple[Criterion, ...],
        *,
        dense: bool = False,
    ) -> list[ColumnElement[bool]]:
        driver = None if dense else _driving_position(criteria)
        out = [
            self.condition(alias, resource_type, c, driving=i == driver)
            for i, c in enumerate(criteria)
        ]
        out.append(not_(alias.c.deleted))
        # Index rows exist only for live resources of their own type, so a driving index
        # criterion already selects by type. Leaving the type test out lets the planner
        # start from those rows (rowid lookups) instead of every resource of the type.
        if driver is None:
            out.append(alias.c.resource_type == resource_type)
        return out

    def condition(
        self, alias: Alias, resource_type: str, criterion: Criterion, driving: bool = False
    ) -> ColumnElement[bool]:
        """Return the condition for one criterion: `rid IN (rows)` if it drives the
        query, else a per-candidate EXISTS on the rid index."""
        if isinstance(criterion, Restriction):
            return self.condition(alias, resource_type, criterion.inner)
        if isinstance(criterion, IdMatch):
            return alias.c.id.in_(criterion.ids)
        if isinstance(criterion, LastUpdatedMatch):
            return or_(*(_instant_in(alias.c.last_updated, b) for b in criterion.bounds))
        if isinstance(criterion, AnyOf):
            if driving:
                parts = [self.driving_rows(resource_type, c) for c in criterion.criteria]
                return self._among(
                    alias, parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
                )
            return or_(*(self.condition(alias, resource_type, c) for c in criterion.criteria))
        if isinstance(criterion, Has):
            return self._has(alias, resource_type, criterion)
        if isinstance(criterion, Missing):
            present = self._present_rows(resource_type, criterion)
            if driving:
                return self._among(alias, present)
            table = INDEX_TABLES[criterion.table]
            return self._checked(present.where(table.c.rid == alias.c.rid), not criterion.missing)
        if isinstance(criterion, TokenMatch) and criterion.modifier == "not":
            matching = self._rows(
                resource_type, TokenMatch(criterion.param, criterion.values), per_candidate=True
            )
            return self._checked(matching.where(INDEX_TABLES["token"].c.rid == alias.c.rid), False)
        if driving:
            return self._among(alias, self.driving_rows(resource_type, criterion))
        if isinstance(criterion, Chain):
            rows = self._chain_rows(resource_type, criterion, per_candidate=True)
        elif isinstance(criterion, NearMatch):
            rows = self._near_rows(resource_type, criterion, per_candidate=True)
        elif isinstance(criterion, CompositeMatch):
            rows = self.driving_rows(resource_type, criterion)
        else:
            rows = self._rows(resource_type, criterion, per_candidate=True)
        return self._checked(rows.where(rows.selected_columns[0] == alias.c.rid))

    def _among(self, alias: Alias, rows: Select[Any] | CompoundSelect[Any]) -> ColumnElement[bool]:
        """The candidates are the driving criterion's rows: `rid IN (rows)`."""
        return alias.c.rid.in_(rows)

    def page_by_prefix(
        self,
        alias: Alias,
        resource_type: str,
        criterion: StringMatch,
        limit: int,
        cursor: Cursor | None = None,
    ) -> ColumnElement[bool]:
        """A page of a search by one prefix of PREFIX_BUCKET characters alone: its
        limit row keys after the cursor (before it, for a previous page), read in order
        from the prefix's bucket in ix_string_bucket.

        Listing every match first read each of them to keep the lowest keys: thousands
        of index rows for a page of 20 Patients by three letters of a name at a million
        resources, most of the search's time on both engines (benchmarks/search.py, by
        name prefix). The bucket is exactly the prefix's matches, in key
        order, so the page stops at its 20th. Index rows exist only for live resources:
        none read is left out of the page. Longer prefixes match fewer rows, which
        listing finds faster than walking a bucket shared with every value that begins
        the same way.
        """
        table = index_string
        # The bucket's expression as the index has it, its numbers written into the
        # statement: as parameters, no plan could use the index.
        bucket = PREFIX_BUCKET_OF
        rows = (
            select(table.c.rid)
            .where(
                table.c.resource_type == resource_type,
                _param_is(table.c.param, resource_type, criterion.param),
                bucket == criterion.values[0],
            )
            .distinct()
            .order_by(table.c.rid.desc() if cursor is not None and cursor.before else table.c.rid)
            .limit(limit)
        )
        if cursor is not None:
            rows = rows.where(_after([], table.c.rid, cursor.rid, cursor.before))
        return self._among(alias, rows)

    def _checked(self, rows: Select[Any], holds: bool = True) -> ColumnElement[bool]:
        """EXISTS (rows), or NOT EXISTS: rows correlated with one candidate, checked for
        each candidate in turn through the index on rid."""
        exists = self._kept_apart(rows).exists()
        return exists if holds else not_(exists)

    def _kept_apart(self, rows: Select[Any]) -> Select[Any]:
        """Return a per-candidate subquery as the planner must keep it: as it is."""
        return rows

    def _in_one_element(
        self, resource_type: str, first: _Component, others: Iterable[_Component]
    ) -> Select[Any]:
        """SELECT rid of first's rows that match, where the same element (rid and group)
        has a matching row of each of the others (checked row by row)."""
        param, table, match = first
        query = select(table.c.rid).where(
            table.c.resource_type == resource_type,
            _param_is(table.c.param, resource_type, param),
            match,
        )
        return query.where(*self._in_same_element(resource_type, table.c, others))

    def _in_same_element(
        self, resource_type: str, element: Any, others: Iterable[_Component]
    ) -> list[ColumnElement[bool]]:
        """Return, for each of others, the check that the element whose rid and grp
        columns are element's has a matching row of it."""
        checks = []
        for index, (other_param, other_table, other_match) in enumerate(others, start=1):
            other = other_table.alias(f"component{index}")
            same_element = select(other.c.rid).where(
                other.c.rid == element.rid,
                other.c.grp == element.grp,
                _param_is(other.c.param, resource_type, other_param),
                _rebind(other_match, other_table, other),
            )
            checks.append(self._checked(same_element))
        return checks

    def driving_rows(self, resource_type: str, criterion: Criterion) -> Select[Any]:
        """Return SELECT rid of the index rows a criterion matches."""
        if isinstance(criterion, AnyOf):
            parts = [self.driving_rows(resource_type, c) for c in criterion.criteria]
            if len(parts) == 1:
                return parts[0]
            return select(parts[0].union(*parts[1:]).subquery().c[0])
        if isinstance(criterion, Chain):
            return self._chain_rows(resource_type, criterion)
        if isinstance(criterion, CompositeMatch):
            rows = [self._composite_rows(resource_type, parts) for parts in criterion.alternatives]
            if len(rows) == 1:
                return rows[0]
            return select(rows[0].union(*rows[1:]).subquery().c[0])
        if isinstance(criterion, Missing):  # :missing=false, the only kind that drives
            return self._present_rows(resource_type, criterion)
        if isinstance(criterion, NearMatch):
            return self._near_rows(resource_type, criterion)
        return self._rows(resource_type, criterion)

    def _near_rows(
        self, resource_type: str, near: NearMatch, *, per_candidate: bool = False
    ) -> Select[Any]:
        """Return SELECT rid of the positions within near's distance: a band of latitudes
        read from the lookup index, the longitudes of the box around the circle checked
        beside it, then the exact great-circle distance of what is left."""
        latitude = INDEX_TABLES["number"].alias("near_latitude")
        longitude = INDEX_TABLES["number"].alias("near_longitude")
        kind, param = self._type_and_param(latitude, per_candidate)
        low, high, longitudes = _bounding_box(near.latitude, near.longitude, near.distance_km)
        distance = great_circle_km(
            latitude.c.value, longitude.c.value, near.latitude, near.longitude
        )
        return select(latitude.c.rid).where(
            kind == resource_type,
            param == NEAR_LATITUDE,
            latitude.c.value >= low,
            latitude.c.value <= high,
            longitude.c.rid == latitude.c.rid,
            longitude.c.param == NEAR_LONGITUDE,
            or_(*(and_(longitude.c.value >= a, longitude.c.value <= b) for a, b in longitudes)),
            distance <= near.distance_km + _SAME_PLACE_KM,
        )

    def counted_rows(self, resource_type: str, criterion: Criterion) -> Select[Any]:
        """Return driving_rows for counting up to a limit (the count only chooses a plan)."""
        return self.driving_rows(resource_type, criterion)

    def _present_rows(self, resource_type: str, criterion: Missing) -> Select[Any]:
        """Return SELECT rid of every index row of the criterion's parameter (for a
        composite, of its first component where the element has every other one)."""
        others = [(param, INDEX_TABLES[name], true()) for param, name in criterion.others]
        first = (criterion.param, INDEX_TABLES[criterion.table], true())
        return self._in_one_element(resource_type, first, others)

    def _rows(
        self, resource_type: str, criterion: Criterion, *, per_candidate: bool = False
    ) -> Select[Any]:
        """Return SELECT rid FROM the criterion's index table WHERE it matches.

        per_candidate: the rows are checked for one resource at a time (rid = ...), so
        on SQLite the lookup index is kept out of reach: its sampled statistics can make
        a wide value range look cheaper than the handful of rows under one rid.
        """
        table, match = self._match(criterion)
        kind, param = self._type_and_param(table, per_candidate)
        return select(table.c.rid).where(
            kind == resource_type, _param_is(param, resource_type, _param(criterion)), match
        )

    def _type_and_param(
        self, table: Table | NamedFromClause, per_candidate: bool
    ) -> tuple[ColumnElement[str], ColumnElement[str]]:
        """Return an index table's type and parameter columns (per_candidate: for a check
        of one candidate)."""
        return table.c.resource_type, table.c.param

    def _match(self, criterion: Criterion) -> tuple[Table, ColumnElement[bool]]:
        """Return the index table and the value condition (ORed over the values)."""
        if isinstance(criterion, TokenMatch):
            table = INDEX_TABLES["token"]
            if criterion.modifier == "text":
                return table, or_(
                    *(self._prefix(table.c.text, v.code or "") for v in criterion.values)
                )
            return table, or_(*(_token_value(table, v.system, v.code) for v in criterion.values))
        if isinstance(criterion, StringMatch):
            table = index_string
            if criterion.modifier == "exact":
                return table, table.c.exact.in_(criterion.values)
            if criterion.modifier == "contains":
                return table, or_(
                    *(
                        table.c.value.like(derived(v, _containing), escape="\\")
                        for v in criterion.values
                    )
                )
            return table, or_(*(self._prefix(table.c.value, v) for v in criterion.values))
        if isinstance(criterion, DateMatch):
            table = index_date
            return table, or_(
                *(_range_matches(table.c.low, table.c.high, b) for b in criterion.bounds)
            )
        if isinstance(criterion, NumberMatch):
            table = INDEX_TABLES["number"]
            return table, or_(*(_number_matches(table.c.value, b) for b in criterion.bounds))
        if isinstance(criterion, QuantityMatch):
            table = INDEX_TABLES["quantity"]
            alternatives = []
            for value in criterion.values:
                if value.canonical is not None:
                    bound, unit = value.canonical
                    alternatives.append(
                        and_(
                            table.c.canonical_unit == unit,
                            _number_matches(table.c.canonical_value, bound),
                        )
                    )
                parts = [_number_matches(table.c.value, value.bound)]
                if value.code is not None:
                    parts.append(table.c.code == value.code)
                if value.system is not None:
                    parts.append(table.c.system == value.system)
                alternatives.append(and_(*parts))
            return table, or_(*alternatives)
        if isinstance(criterion, ReferenceMatch):
            table = index_reference
            alternatives = []
            for ref in criterion.values:
                if ref.identifier is not None:
                    system, identifier = ref.identifier
                    parts = (
                        [table.c.identifier_value == identifier] if identifier is not None else []
                    )
                    if system is not None:
                        parts.append(table.c.identifier_system == system)
                    alternatives.append(and_(true(), *parts))
                elif ref.url is not None:
                    alternatives.append(
                        and_(table.c.target_type.is_(None), table.c.target_id == ref.url)
                    )
                else:
                    parts = [table.c.target_id == ref.id]
                    if ref.resource_type is not None:
                        parts.append(table.c.target_type == ref.resource_type)
                    else:
                        parts.append(table.c.target_type.is_not(None))
                    alternatives.append(and_(*parts))
            return table, or_(*alternatives)
        if isinstance(criterion, UriMatch):
            table = INDEX_TABLES["uri"]
            if criterion.modifier == "below":
                return table, or_(*(_uri_below(table.c.value, v) for v in criterion.values))
            if criterion.modifier == "above":
                return table, or_(*(literal(v).like(table.c.value + "%") for v in criterion.values))
            return table, table.c.value.in_(criterion.values)
        raise TypeError(f"no index match for {criterion!r}")

    def _prefix(self, column: Any, text: str) -> ColumnElement[bool]:
        """Starts-with that can use the index on both engines."""
        if not text:
            return true()
        # [text, text + U+10FFFF) compared by bytes is exactly "starts with". Unlike
        # LIKE 'abc%', whose range the planner finds only in a pattern it can see, the
        # range serves a plan kept for every value (benchmarks/search.py: Observations
        # of Patients by surname).
        return self._in_byte_range(column, text, derived(text, _past_prefix))

    def _in_byte_range(self, column: Any, low: Any, high: Any) -> ColumnElement[bool]:
        """Return low <= column < high, compared by bytes (as SQLite compares text)."""
        return and_(column >= low, column < high)

    def component_rows(self, resource_type: str, part: Criterion) -> Select[Any]:
        """Return SELECT rid of the index rows one composite component matches alone."""
        return self._rows(resource_type, part)

    def composite_sample(
        self, resource_type: str, parts: tuple[Criterion, ...], size: int
    ) -> Select[Any]:
        """Return SELECT count of the first size index rows of a composite's leading
        component (in index order) whose element also matches every other component."""
        first, *others = [(_param(part), *self._match(part)) for part in parts]
        param, table, match = first
        sample = (
            select(table.c.rid, table.c.grp)
            .where(
                table.c.resource_type == resource_type,
                _param_is(table.c.param, resource_type, param),
                match,
            )
            .limit(size)
            .subquery("sample")
        )
        checks = self._in_same_element(resource_type, sample.c, others)
        return select(func.count()).select_from(sample).where(*checks)

    def _composite_rows(self, resource_type: str, parts: tuple[Criterion, ...]) -> Select[Any]:
        """Rows where all components match within one element (the same group)."""
        first, *others = [(_param(part), *self._match(part)) for part in parts]
        return self._in_one_element(resource_type, first, others)

    def _chain_rows(
        self, resource_type: str, chain: Chain, *, per_candidate: bool = False
    ) -> Select[Any]:
        targets = []
        for target_type in chain.target_types:
            # Anonymous aliases: unique within a statement, yet the same from one search
            # to the next, so the compiled statement is reused.
            target = resource.alias()
            matching_ids = select(target.c.id).where(
                *self._where(target, target_type, (chain.inner, *chain.limits))
            )
            targets.append(
                and_(
                    index_reference.c.target_type == target_type,
                    index_reference.c.target_id.in_(matching_ids),
                )
            )
        kind, param = self._type_and_param(index_reference, per_candidate)
        return select(index_reference.c.rid).where(
            kind == resource_type, param == chain.param, or_(*targets)
        )

    def _has(self, alias: Alias, resource_type: str, has: Has) -> ColumnElement[bool]:
        source = resource.alias()
        sources = select(source.c.rid).where(
            *self._where(source, has.source_type, (has.inner, *has.limits))
        )
        pointed_at = select(index_reference.c.target_id).where(
            index_reference.c.resource_type == has.source_type,
            index_reference.c.param == has.param,
            index_reference.c.target_type == resource_type,
            index_reference.c.rid.in_(sources),
        )
        return alias.c.id.in_(pointed_at)

    # --- pages listed target by target ---------------------------------------------------

    def target_ordered(self, query: SearchQuery) -> int | None:
        """Return the position of the chain whose targets order an unsorted page, or None.

        A chain on a common value (`subject:Patient.name=smith`) matches thousands of
        resources through hundreds of targets. Ordered by row key, a page must list them
        all first, a probe of the reference index for every target. Ordered by the
        target's row key and then its own, a page reads the targets in turn and stops
        once it is full. The choice depends on the query alone, never on the data, so a
        cursor always continues the order it was made in.
        """
        if query.sort:
            return None
        at = _driving_position(query.criteria)
        if at is None:
            return None
        chain = query.criteria[at]
        if isinstance(chain, Chain) and len(chain.target_types) == 1 and not narrow_chain(chain):
            return at
        return None

    def by_target(
        self, alias: Alias, query: SearchQuery, at: int
    ) -> tuple[Any, list[ColumnElement[bool]]]:
        """Return the target's row key and the conditions of a page ordered by target.

        Each resource is listed once, under the first target (by row key) it matches
        through; the query's other criteria are checked per resource.
        """
        chain = query.criteria[at]
        assert isinstance(chain, Chain)
        target_type = chain.target_types[0]
        others = query.criteria[:at] + query.criteria[at + 1 :]
        target = resource.alias()
        pointing = index_reference.alias()
        to_target = [
            pointing.c.resource_type == query.resource_type,
            pointing.c.param == chain.param,
            pointing.c.target_type == target_type,
            pointing.c.target_id == target.c.id,
        ]
        conditions = self._where(alias, query.resource_type, others, dense=True)
        conditions += self._where(target, target_type, (chain.inner, *chain.limits))
        pointer = self._pointing_at_targets(pointing, to_target, conditions)
        conditions.append(alias.c.rid == pointer.c.rid)
        earlier_target = resource.alias()
        earlier = index_reference.alias()
        kind, param = self._type_and_param(earlier, per_candidate=True)
        listed_before = select(earlier.c.rid).where(
            earlier.c.rid == pointer.c.rid,
            kind == query.resource_type,
            param == chain.param,
            earlier.c.target_type == target_type,
            earlier_target.c.resource_type == target_type,
            earlier_target.c.id == earlier.c.target_id,
            earlier_target.c.rid < target.c.rid,
            *self._where(earlier_target, target_type, (chain.inner, *chain.limits)),
        )
        conditions.append(self._checked(listed_before, False))
        return target.c.rid, conditions

    def _pointing_at_targets(
        self, pointing: Alias, to_target: list[ColumnElement[bool]], conditions: list[Any]
    ) -> Any:
        """Return the references a page ordered by target joins through (adding to
        conditions what ties them to the target): here a plain join."""
        conditions += to_target
        return pointing

    @staticmethod
    def target_order(keys: tuple[Any, Any], reverse: bool) -> list[Any]:
        """ORDER BY target row key, then row key (reversed for a previous page)."""
        return [key.desc() if reverse else key.asc() for key in keys]

    @staticmethod
    def after_target(keys: tuple[Any, Any], cursor: Cursor) -> ColumnElement[bool]:
        """Rows after the cursor in target order (or before it, for a previous page)."""
        target_rid, rid = keys
        (last_target,) = cursor.values
        if cursor.before:
            return or_(target_rid < last_target, and_(target_rid == last_target, rid < cursor.rid))
        return or_(target_rid > last_target, and_(target_rid == last_target, rid > cursor.rid))

    # --- order and pages --------------------------------------------------------------------

    def sort_columns(
        self, alias: Alias, resource_type: str, keys: tuple[SortKey, ...]
    ) -> list[Any]:
        """Return one SQL expression per sort key (its value for each resource)."""
        return [self._sort_value(alias, resource_type, key) for key in keys]

    def _sort_value(self, alias: Alias, resource_type: str, key: SortKey) -> Any:
        if key.param == "_id":
            return alias.c.id
        if key.param == "_lastUpdated":
            return alias.c.last_updated
        if key.table == "near":
            assert key.origin is not None
            latitude = INDEX_TABLES["number"].alias("sort_latitude")
            longitude = INDEX_TABLES["number"].alias("sort_longitude")
            return (
                select(great_circle_km(latitude.c.value, longitude.c.value, *key.origin))
                .where(
                    latitude.c.rid == alias.c.rid,
                    latitude.c.param == NEAR_LATITUDE,
                    longitude.c.rid == alias.c.rid,
                    longitude.c.param == NEAR_LONGITUDE,
                )
                .scalar_subquery()
            )
        assert key.table is not None
        table = INDEX_TABLES[key.table]
        if key.table == "date":
            value = func.max(table.c.high) if key.descending else func.min(table.c.low)
        else:
            column = table.c[_SORT_COLUMN[key.table]]
            value = func.max(column) if key.descending else func.min(column)
        return (
            select(value)
            .where(table.c.rid == alias.c.rid, _param_is(table.c.param, resource_type, key.param))
            .scalar_subquery()
        )

    def order_by(
        self, alias: Alias, keys: tuple[SortKey, ...], columns: list[Any], reverse: bool
    ) -> list[Any]:
        """ORDER BY the sort keys (missing values last), then id; reversed for a previous page."""
        out = []
        for key, column in zip(keys, columns, strict=True):
            descending = key.descending != reverse
            ordered = column.desc() if descending else column.asc()
            out.append(ordered.nulls_first() if reverse else ordered.nulls_last())
        out.append(alias.c.rid.desc() if reverse else alias.c.rid.asc())
        return out

    def position(
        self, alias: Alias, keys: tuple[SortKey, ...], columns: list[Any], cursor: Cursor
    ) -> ColumnElement[bool]:
        """Rows after the cursor in the page order (or before it, for a previous page)."""
        items = list(zip(keys, columns, cursor.values, strict=True))
        return _after(items, alias.c.rid, cursor.rid, cursor.before)


def _after(
    items: list[tuple[SortKey, Any, Any]], rid_column: Any, last_rid: int, before: bool
) -> ColumnElement[bool]:
    if not items:
        return rid_column < last_rid if before else rid_column > last_rid
    (key, column, value), rest = items[0], items[1:]
    descending = key.descending != before
    tail = _after(rest, rid_column, last_rid, before)
    if value is None:
        # In page order missing values come last; going backwards, first.
        if before:
            return or_(column.is_not(None), and_(column.is_(None), tail))
        return and_(column.is_(None), tail)
    beyond = column < value if descending else column > value
    if before:
        return or_(beyond, and_(column == value, tail))
    return or_(beyond, and_(column == value, tail), column.is_(None))


# The mean radius of the Earth (IUGG), the sphere distances are measured on.
EARTH_RADIUS_KM = 6371.0088
# Positions this close count as the same place (a floating-point margin, a micrometre).
_SAME_PLACE_KM = 1e-9
_BOX_MARGIN_DEGREES = 1e-9


def great_circle_km(
    latitude: Any, longitude: Any, from_latitude: float, from_longitude: float
) -> Any:
    """Return the SQL for the haversine distance in km from a point to (latitude, longitude).

    sin, cos, asin, sqrt and radians are built into PostgreSQL and SQLite (3.35 and
    later; the store adds them where SQLite was built without them).
    """
    half_latitude = func.radians(latitude - from_latitude) / 2
    half_longitude = func.radians(longitude - from_longitude) / 2
    a = func.sin(half_latitude) * func.sin(half_latitude) + math.cos(
        math.radians(from_latitude)
    ) * func.cos(func.radians(latitude)) * func.sin(half_longitude) * func.sin(half_longitude)
    # rounding can carry a just past 1 for antipodes, where asin is undefined
    return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(case((a > 1.0, 1.0), else_=a)))


def _bounding_box(
    latitude: float, longitude: float, distance_km: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """Return the latitudes (low, high) and longitude ranges of a box holding the circle.

    Where the circle reaches a pole every longitude is inside; where it crosses the
    antimeridian its longitudes are two ranges.
    """
    angle = distance_km / EARTH_RADIUS_KM
    spread = math.degrees(angle) + _BOX_MARGIN_DEGREES
    low, high = latitude - spread, latitude + spread
    if low <= -90.0 or high >= 90.0:
        return max(low, -90.0), min(high, 90.0), [(-180.0, 180.0)]
    # the widest longitude a circle spans is at the latitude where its edge is tangent
    ratio = math.sin(angle) / math.cos(math.radians(latitude))
    if ratio >= 1.0:
        return low, high, [(-180.0, 180.0)]
    width = math.degrees(math.asin(ratio)) + _BOX_MARGIN_DEGREES
    west, east = longitude - width, longitude + width
    if west < -180.0:
        return low, high, [(west + 360.0, 180.0), (-180.0, east)]
    if east > 180.0:
        return low, high, [(west, 180.0), (-180.0, east - 360.0)]
    return low, high, [(west, east)]


_SORT_COLUMN = {
    "token": "code",
    "string": "value",
    "number": "value",
    "quantity": "value",
    "reference": "target_id",
    "uri": "value",
}


_Component = tuple[str, Table, ColumnElement[bool]]  # stored parameter, table, value condition


def _param_is(column: ColumnElement[str], resource_type: str, param: str) -> ColumnElement[bool]:
    """The rows of param: its own, or those of the parameters it repeats (SharedRows)."""
    codes = shared_rows(resource_type).codes(param)
    return column == codes[0] if len(codes) == 1 else column.in_(codes)


def _param(criterion: Criterion) -> str:
    param: str = criterion.param  # type: ignore[union-attr]
    return param


def _uri_below(column: Any, uri: str) -> ColumnElement[bool]:
    """The URI itself or one below it by whole path segments (…/123 is not below …/12)."""
    if uri.endswith("/"):
        return column.like(derived(uri, _starting), escape="\\")
    return or_(column == uri, column.like(derived(uri, _below), escape="\\"))


# Values made from a search value: through `derived`, so a statement reused for the
# next search of its shape makes them from that search's value.
def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starting(text: str) -> str:
    return f"{_escape(text)}%"


def _containing(text: str) -> str:
    return f"%{_escape(text)}%"


def _below(uri: str) -> str:
    return f"{_escape(uri)}/%"


def _past_prefix(text: str) -> str:
    return text + "\U0010ffff"


def _token_value(table: Table, system: str | None, code: str | None) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if code is not None:
        parts.append(table.c.code == code)
    if system == "":
        parts.append(table.c.system.is_(None))
    elif system is not None:
        parts.append(table.c.system == system)
    return and_(true(), *parts) if parts else false()


def _range_matches(low: Any, high: Any, bound: Bound) -> ColumnElement[bool]:
    """A stored range [low, high) against a search range, by the spec's prefix rules.

    Where a rule implies a bound on low (as low <= high), it is stated too: the lookup
    index is ordered by low, so the bound ends its scan, which the test on high alone
    cannot do (date=1800-01-01 would otherwise read every later row).
    """
    inside = and_(low >= bound.low, high <= bound.high)
    prefix = bound.prefix
    if prefix == "eq":
        return and_(inside, low <= bound.high)
    if prefix == "ne":
        return not_(inside)
    if prefix == "gt":
        return high > bound.high
    if prefix == "lt":
        return low < bound.low
    if prefix == "ge":
        return or_(high > bound.high, inside)
    if prefix == "le":
        return and_(or_(low < bound.low, inside), low <= bound.high)
    if prefix == "sa":
        return low >= bound.high
    if prefix == "eb":
        return and_(high <= bound.low, low <= bound.low)
    return and_(low < bound.high, high > bound.low)  # ap: overlaps the widened range


def _instant_in(column: Any, bound: Bound) -> ColumnElement[bool]:
    """A stored instant (a point, to the millisecond) against a search range [low, high)."""
    prefix = bound.prefix
    if prefix in ("eq", "ap"):
        return and_(column >= bound.low, column < bound.high)
    if prefix == "ne":
        return or_(column < bound.low, column >= bound.high)
    if prefix in ("gt", "sa"):
        return column >= bound.high
    if prefix in ("lt", "eb"):
        return column < bound.low
    if prefix == "ge":
        return column >= bound.low
    return column < bound.high  # le


def _number_matches(column: Any, bound: Bound) -> ColumnElement[bool]:
    prefix = bound.prefix
    if prefix in ("eq", "ap"):
        return and_(column >= bound.low, column < bound.high)
    if prefix == "ne":
        return or_(column < bound.low, column >= bound.high)
    if prefix in ("gt", "sa"):
        return column > bound.value
    if prefix in ("lt", "eb"):
        return column < bound.value
    if prefix == "ge":
        return column >= bound.value
    return column <= bound.value  # le


def _rebind(
    condition: ColumnElement[bool], table: Table, alias: NamedFromClause
) -> ColumnElement[bool]:
    """Return condition with table's columns replaced by alias's."""
    adapted: ColumnElement[bool] = ClauseAdapter(alias).traverse(condition)
    return adapted


class SQLiteSearchCompiler(SearchCompiler):
    """Search SQL for SQLite."""

    def _type_and_param(
        self, table: Table | NamedFromClause, per_candidate: bool
    ) -> tuple[ColumnElement[str], ColumnElement[str]]:
        """Return an index table's type and parameter columns; for per-candidate checks,
        wrapped (`|| ''`) so the planner cannot lead with the lookup index."""
        kind: ColumnElement[str] = table.c.resource_type
        param: ColumnElement[str] = table.c.param
        if per_candidate:
            return kind.concat(""), param.concat("")
        return kind, param


class PostgreSQLSearchCompiler(SearchCompiler):
    """Search SQL for PostgreSQL."""

    def _among(self, alias: Alias, rows: Select[Any] | CompoundSelect[Any]) -> ColumnElement[bool]:
        """The candidates are the driving criterion's rows, as `rid = ANY(ARRAY(rows))`,
        listed once before the page. Given `rid IN (rows)` with a page in row-key order,
        PostgreSQL may walk the resource table's key in order, looking each row up among
        the matches, and stop at a page's worth: misjudging how the matches of a name
        prefix are spread, it walked most of the type to find a page, where listing the
        matches first is quick (benchmarks/search.py, by name prefix).
        Pages that should walk the type are chosen here (`dense`), not by the planner.
        """
        return alias.c.rid == any_(RowKeys(rows))

    def _kept_apart(self, rows: Select[Any]) -> Select[Any]:
        """Return a per-candidate subquery with OFFSET 0, which keeps it a check of each
        candidate. A plain EXISTS becomes a join: planning weighs every order of joining
        it with the rest (for Observations by patient, code and dates, far longer than
        running the search), or it is run once as a hash of every matching row, which a
        walk of the type in row-key order then probes (Observations of two common
        categories: every match hashed to fill a page of 20; benchmarks/search.py)."""
        return rows.offset(0)

    def counted_rows(self, resource_type: str, criterion: Criterion) -> Select[Any]:
        """Return driving_rows for counting up to a limit. A value condition that ORs
        alternatives becomes one SELECT per alternative (UNION ALL), each an index scan
        that stops at the limit. Counted as one condition, the planner either scanned the
        whole index table expecting to stop early (a weight under a bound, given as kg
        and as grams: few matches among every quantity row, far slower than the indexes)
        or, without sequential scans, built a bitmap of every row of each alternative
        before counting any (two common codes, again far slower than counting each apart;
        benchmarks/search.py). A row matching two alternatives is counted twice: the
        count only chooses a plan."""
        if not isinstance(criterion, _INDEX_VALUE_MATCHES):
            return self.driving_rows(resource_type, criterion)
        table, match = self._match(criterion)
        if not (isinstance(match, BooleanClauseList) and match.operator is operators.or_):
            return self.driving_rows(resource_type, criterion)
        kind, param = self._type_and_param(table, per_candidate=False)
        branches = [
            select(table.c.rid).where(
                kind == resource_type, _param_is(param, resource_type, _param(criterion)), branch
            )
            for branch in match.clauses
        ]
        return select(union_all(*branches).subquery().c[0])

    def _in_byte_range(self, column: Any, low: Any, high: Any) -> ColumnElement[bool]:
        """Return low <= column < high by bytes: the text_pattern_ops operators, with
        which the lookup index is built."""
        return and_(column.op("~>=~")(low), column.op("~<~")(high))

    def _pointing_at_targets(
        self, pointing: Alias, to_target: list[ColumnElement[bool]], conditions: list[Any]
    ) -> Any:
        """Return the references looked up target by target, in their order, and only
        until the page is full. As a plain join PostgreSQL may read every reference of
        the kind first (Observations of Patients by surname: every subject reference
        hashed, where looking up each Patient's is quick; benchmarks/search.py)."""
        return select(pointing.c.rid).where(*to_target).offset(0).lateral()
