"""RecordStore: the record database, which opens read and write sessions on it.

It owns what outlives a session: the engine and its dialect object (its pools and, on
SQLite, the writer lock and the WAL checkpointer), the compiled statements and the plan
facts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine

from bevan.store.budget import ReadBudget
from bevan.store.dialect import StoreDialect
from bevan.store.engine import make_engine
from bevan.store.plan_facts import PlanFacts
from bevan.store.postgresql_dialect import PostgreSQLDialect
from bevan.store.reading import ReadSession
from bevan.store.schema import metadata
from bevan.store.shapes import ShapeCache
from bevan.store.sqlite_dialect import SQLiteDialect, WriterLock
from bevan.store.statements import HotStatements
from bevan.store.versions import StoreConflict, StoredVersion
from bevan.store.writing import WriteSession, savepoint

S = TypeVar("S", bound=ReadSession)


class RecordStore:
    """The record database: open read or write sessions on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = dialect_for(engine)
        self.hot = HotStatements(engine.dialect)
        self.compiler = self.dialect.compiler
        self.shapes = ShapeCache(engine.dialect)
        self.facts = PlanFacts()
        # The transaction a group-commit batch holds open on this thread (see batch()).
        self._batch = threading.local()

    @classmethod
    def from_url(cls, url: str, *, sqlite_synchronous: str = "NORMAL") -> RecordStore:
        return cls(make_engine(url, sqlite_synchronous=sqlite_synchronous))

    @property
    def read_budget(self) -> ReadBudget:
        """Return how long a read may first be tried where it must be quick."""
        return self.dialect.read_budget

    @contextmanager
    def read(self) -> Iterator[ReadSession]:
        with self.snapshot() as connection, self._session(ReadSession, connection) as session:
            yield session

    @contextmanager
    def _session(self, kind: type[S], connection: Connection) -> Iterator[S]:
        session = kind(connection, self.dialect, self.hot, self.compiler, self.facts, self.shapes)
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection to read on; inside batch(), the batch's own, so reads see what
        the batch has written so far.

        Outside a batch, the dialect's (see each dialect's read_connection).
        """
        batch: Connection | None = getattr(self._batch, "connection", None)
        if batch is not None:
            writer: WriteSession | None = getattr(self._batch, "writer", None)
            if writer is not None:
                writer.store_held_rows()
            yield batch
            return
        with self.dialect.read_connection() as connection:
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
        lock = self.dialect.write_lock or contextlib.nullcontext()
        with lock:
            connection = self.engine.connect().execution_options(bevan_write=True)
            with connection, connection.begin():
                yield connection

    @property
    def write_lock(self) -> WriterLock | None:
        """The lock this process's SQLite writers queue on (None on PostgreSQL)."""
        return self.dialect.write_lock

    def analyse(self, *, settle: bool = False) -> None:
        """Refresh the planner's statistics (after loads; cheap, sampled on SQLite).

        settle (at the end of a load): also what makes the new rows cheap to read at
        once, where the database needs it (PostgreSQL's VACUUM).
        """
        names = ", ".join(table.name for table in metadata.sorted_tables)
        self.dialect.analyse(names, settle=settle)

    def close(self) -> None:
        self.dialect.close()


def dialect_for(engine: Engine) -> StoreDialect:
    """Return the store's dialect object for engine's database."""
    kinds: dict[str, type[SQLiteDialect | PostgreSQLDialect]] = {
        "sqlite": SQLiteDialect,
        "postgresql": PostgreSQLDialect,
    }
    kind = kinds.get(engine.dialect.name)
    if kind is None:
        raise ValueError(f"records are stored in SQLite or PostgreSQL, not {engine.dialect.name}")
    return kind(engine)


__all__: Sequence[str] = (
    "RecordStore",
    "ReadSession",
    "WriteSession",
    "StoredVersion",
    "StoreConflict",
)
