"""The SQL statements of the hot paths, built once and compiled for a dialect.

Building a Core statement costs more than running a small one, so the statements every
request runs are built at import and compiled once per engine (HotStatements).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    any_,
    bindparam,
    delete,
    func,
    insert,
    not_,
    select,
    true,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from bevan.store.raw import ArrayStatement, ListStatement, compile_for
from bevan.store.schema import INDEX_TABLES, index_reference, resource, resource_version

# Each resource row with its current version.
VERSIONS = resource.join(resource_version, resource_version.c.seq == resource.c.seq)
VERSION_COLUMNS = (
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
KEYED_NAMES = {
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
    "resource_version": _insert(resource_version, *KEYED_NAMES["resource_version"]),
    "resource": _insert(resource, *KEYED_NAMES["resource"]),
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
HELD_NAMES = {**KEYED_NAMES, **_INDEX_NAMES}
_INSERT_INDEX = {
    name: _insert(table, "rid", "resource_type", *INDEX_COLUMNS[name])
    for name, table in INDEX_TABLES.items()
}
_DELETE_INDEX = {
    name: delete(table).where(table.c.rid == bindparam("b_rid"))
    for name, table in INDEX_TABLES.items()
}


_SELECT_CURRENT = (
    select(*VERSION_COLUMNS)
    .select_from(VERSIONS)
    .where(resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i"))
)
_SELECT_ROW = select(resource.c.rid, resource.c.version_id, resource.c.deleted).where(
    resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i")
)


# Lookups of sets of resources, built once with expanding parameters: composing a
# statement with hundreds of literal values per call cost more than running it.
_CURRENT_MANY = (
    select(*VERSION_COLUMNS)
    .select_from(VERSIONS)
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
        select(resource.c.rid, *VERSION_COLUMNS)
        .select_from(VERSIONS)
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
    select(*VERSION_COLUMNS)
    .select_from(VERSIONS)
    .where(
        tuple_(resource.c.resource_type, resource.c.id).in_(
            select(_POINTED_AT.c.target_type, _POINTED_AT.c.target_id)
        ),
        not_(resource.c.deleted),
    )
)


# PostgreSQL: each target looked up by its own probe of the (type, id) key. Left to
# choose, the planner expected every reference of a long record to name a different
# target (thousands for a Patient whose references named a handful) and hashed them
# against a scan of every resource, far slower than probing (benchmarks/search.py,
# `$everything`).
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
    return select(*VERSION_COLUMNS).select_from(
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
        select(*VERSION_COLUMNS)
        .select_from(VERSIONS)
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


def given(**values: Any) -> dict[str, Any]:
    """Return the parameters that have values: the statement variant chosen by which
    are None binds only the others."""
    return {name: value for name, value in values.items() if value is not None}


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Return items in lists of at most size (each list one statement's parameters)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
