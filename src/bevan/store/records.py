"""RecordStore: versions, current rows, index rows and the change sequence, in one place.

Every write goes through WriteSession.write_version, which appends the version, moves the
current row and replaces the index rows in the caller's transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from bevan.fhir.dates import format_instant
from bevan.fhir.search import (
    Criterion,
    IdCriterion,
    LastUpdatedCriterion,
    SearchQuery,
    TokenCriterion,
)
from bevan.fhir.search_parameters import IndexRows
from bevan.store.engine import is_sqlite, make_engine
from bevan.store.raw import RawCursor, compile_for
from bevan.store.schema import index_reference, index_token, resource, resource_version


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
class CurrentRow:
    rid: int
    version_id: int
    deleted: bool


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
_DELETE_TOKENS = delete(index_token).where(index_token.c.rid == bindparam("b_rid"))
_DELETE_REFERENCES = delete(index_reference).where(index_reference.c.rid == bindparam("b_rid"))
_INSERT_TOKEN = _insert(index_token, "rid", "resource_type", "param", "system", "code")
_INSERT_REFERENCE = _insert(
    index_reference, "rid", "resource_type", "param", "target_type", "target_id"
)


_SELECT_CURRENT = (
    select(*_VERSION_COLUMNS)
    .select_from(resource.join(resource_version, resource_version.c.seq == resource.c.seq))
    .where(resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i"))
)
_SELECT_ROW = select(resource.c.rid, resource.c.version_id, resource.c.deleted).where(
    resource.c.resource_type == bindparam("t"), resource.c.id == bindparam("i")
)


class HotStatements:
    """The per-request statements, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.insert_version = compile_for(_INSERT_VERSION, dialect)
        self.insert_resource = compile_for(_INSERT_RESOURCE, dialect)
        self.update_resource = compile_for(_UPDATE_RESOURCE, dialect)
        self.delete_tokens = compile_for(_DELETE_TOKENS, dialect)
        self.delete_references = compile_for(_DELETE_REFERENCES, dialect)
        self.insert_token = compile_for(_INSERT_TOKEN, dialect)
        self.insert_reference = compile_for(_INSERT_REFERENCE, dialect)
        self.select_current = compile_for(_SELECT_CURRENT, dialect)
        self.select_row = compile_for(_SELECT_ROW, dialect)
        locking = dialect.name != "sqlite"  # SQLite's BEGIN IMMEDIATE already serialises writers
        self.select_row_for_update = compile_for(
            _SELECT_ROW.with_for_update() if locking else _SELECT_ROW, dialect
        )


def _stored(row: Any) -> StoredVersion:
    return StoredVersion(
        resource_type=row.resource_type,
        id=row.id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        deleted=row.method == "delete",
        content=row.content,
        seq=row.seq,
    )


class ReadSession:
    """Reads inside one transaction (a consistent snapshot on both engines)."""

    def __init__(self, connection: Connection, sqlite: bool, hot: HotStatements) -> None:
        self.connection = connection
        self.sqlite = sqlite
        self.hot = hot
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
        row = self.connection.execute(statement).first()
        return _stored(row) if row else None

    def history(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: str | None = None,
        before_seq: int | None = None,
        count: int = 20,
    ) -> list[StoredVersion]:
        """Return versions newest first, at most count, optionally after since."""
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
        return [_stored(row) for row in self.connection.execute(statement)]

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
        return int(self.connection.execute(statement).scalar_one())

    def search(self, query: SearchQuery, limit: int | None = None) -> list[StoredVersion]:
        """Return current, non-deleted resources matching query, ordered by id."""
        conditions = _search_conditions(query)
        if query.cursor is not None:
            conditions.append(resource.c.id > query.cursor)
        statement = (
            select(*_VERSION_COLUMNS)
            .select_from(resource.join(resource_version, resource_version.c.seq == resource.c.seq))
            .where(*conditions)
            .order_by(resource.c.id)
            .limit(query.count if limit is None else limit)
        )
        return [_stored(row) for row in self.connection.execute(statement)]

    def search_ids(self, query: SearchQuery, limit: int) -> list[str]:
        """Return the ids of up to limit matches (for conditional operations)."""
        statement = (
            select(resource.c.id)
            .where(*_search_conditions(query))
            .order_by(resource.c.id)
            .limit(limit)
        )
        return [row.id for row in self.connection.execute(statement)]

    def count(self, query: SearchQuery) -> int:
        statement = select(func.count()).select_from(resource).where(*_search_conditions(query))
        return int(self.connection.execute(statement).scalar_one())

    def resource_counts(self) -> dict[str, int]:
        """Return how many current (not deleted) resources of each type are stored."""
        statement = (
            select(resource.c.resource_type, func.count())
            .where(not_(resource.c.deleted))
            .group_by(resource.c.resource_type)
        )
        return {row[0]: int(row[1]) for row in self.connection.execute(statement)}

    def last_seq(self) -> int:
        return int(self.connection.execute(select(func.max(resource_version.c.seq))).scalar() or 0)


class WriteSession(ReadSession):
    """A write transaction: everything in it commits together or not at all."""

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
        raw, hot = self.raw, self.hot
        seq = raw.scalar(
            hot.insert_version,
            {
                "resource_type": resource_type,
                "id": id,
                "version_id": version_id,
                "last_updated": last_updated,
                "method": method,
                "content": content,
            },
        )
        row = {
            "resource_type": resource_type,
            "id": id,
            "version_id": version_id,
            "seq": seq,
            "last_updated": last_updated,
            "deleted": content is None,
        }
        if current is None:
            if self.sqlite:  # writers are serialised: no one can have raced us
                rid = raw.scalar(hot.insert_resource, row)
            else:
                try:
                    with self.connection.begin_nested():
                        rid = raw.scalar(hot.insert_resource, row)
                except IntegrityError as error:
                    raise StoreConflict(f"{resource_type}/{id} was created concurrently") from error
        else:
            rid = current.rid
            raw.execute(hot.update_resource, {**row, "b_rid": rid})
            raw.execute(hot.delete_tokens, {"b_rid": rid})
            raw.execute(hot.delete_references, {"b_rid": rid})
        if rows.tokens:
            raw.executemany(
                hot.insert_token,
                [
                    {"rid": rid, "resource_type": resource_type, "param": p, "system": s, "code": c}
                    for p, s, c in rows.tokens
                ],
            )
        if rows.references:
            raw.executemany(
                hot.insert_reference,
                [
                    {
                        "rid": rid,
                        "resource_type": resource_type,
                        "param": p,
                        "target_type": t,
                        "target_id": i,
                    }
                    for p, t, i in rows.references
                ],
            )
        return int(seq)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block whose writes are undone alone if it raises (batch entries)."""
        with self.connection.begin_nested():
            yield


def _search_conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        resource.c.resource_type == query.resource_type,
        not_(resource.c.deleted),
    ]
    conditions.extend(_criterion(query.resource_type, c) for c in query.criteria)
    return conditions


def _criterion(resource_type: str, criterion: Criterion) -> ColumnElement[bool]:
    if isinstance(criterion, IdCriterion):
        return resource.c.id.in_(criterion.ids)
    if isinstance(criterion, LastUpdatedCriterion):
        return or_(
            *(
                _date_comparison(resource.c.last_updated, c.prefix, c.low, c.high)
                for c in criterion.comparisons
            )
        )
    if isinstance(criterion, TokenCriterion):
        alternatives = []
        for value in criterion.values:
            parts: list[ColumnElement[bool]] = []
            if value.code is not None:
                parts.append(index_token.c.code == value.code)
            if value.system == "":
                parts.append(index_token.c.system.is_(None))
            elif value.system is not None:
                parts.append(index_token.c.system == value.system)
            alternatives.append(and_(*parts))
        matching = select(index_token.c.rid).where(
            index_token.c.resource_type == resource_type,
            index_token.c.param == criterion.param,
            or_(*alternatives),
        )
        return resource.c.rid.in_(matching)
    alternatives = []
    for ref in criterion.values:
        parts = [index_reference.c.target_id == ref.id]
        if ref.resource_type is not None:
            parts.append(index_reference.c.target_type == ref.resource_type)
        alternatives.append(and_(*parts))
    matching = select(index_reference.c.rid).where(
        index_reference.c.resource_type == resource_type,
        index_reference.c.param == criterion.param,
        or_(*alternatives),
    )
    return resource.c.rid.in_(matching)


def _date_comparison(column: Any, prefix: str, low: Any, high: Any) -> ColumnElement[bool]:
    # Stored instants are points; the search value is a range [low, high).
    lo, hi = format_instant(low), format_instant(high)
    if prefix in ("eq", "ap"):
        return and_(column >= lo, column < hi)
    if prefix == "ne":
        return or_(column < lo, column >= hi)
    if prefix in ("gt", "sa"):
        return column >= hi
    if prefix == "ge":
        return column >= lo
    if prefix in ("lt", "eb"):
        return column < lo
    return column < hi  # le


class RecordStore:
    """The record database: open read or write sessions on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.hot = HotStatements(engine.dialect)
        # SQLite has one writer at a time. Queue this process's writers on a lock
        # rather than in SQLite's busy handler, which sleeps and retries and so gives
        # long, unfair waits under load; other processes still meet BEGIN IMMEDIATE.
        self._write_lock = threading.Lock() if self.sqlite else None

    @classmethod
    def from_url(cls, url: str) -> RecordStore:
        return cls(make_engine(url))

    @contextmanager
    def read(self) -> Iterator[ReadSession]:
        with self.engine.connect() as connection, connection.begin():
            session = ReadSession(connection, self.sqlite, self.hot)
            try:
                yield session
            finally:
                session.close()

    @contextmanager
    def write(self) -> Iterator[WriteSession]:
        lock = self._write_lock or contextlib.nullcontext()
        with lock:
            connection = self.engine.connect().execution_options(bevan_write=True)
            with connection, connection.begin():
                session = WriteSession(connection, self.sqlite, self.hot)
                try:
                    yield session
                finally:
                    session.close()

    def close(self) -> None:
        self.engine.dispose()


__all__: Sequence[str] = (
    "RecordStore",
    "ReadSession",
    "WriteSession",
    "StoredVersion",
    "StoreConflict",
)
