"""RecordStore: the record database, which opens read and write sessions on it.

It owns what outlives a session: the engine and its pools, the compiled statements,
the plan facts and, on SQLite, the writer lock and the WAL checkpointer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine

from bevan.store.budget import (
    POSTGRESQL_READ_BUDGET,
    SQLITE_READ_BUDGET,
    ReadBudget,
    budgeted,
    statement_budget,
    within_budget,
)
from bevan.store.engine import WalCheckpointer, WriterLock, is_sqlite, make_engine, reads_engine
from bevan.store.plan_facts import PlanFacts
from bevan.store.reading import ReadSession
from bevan.store.schema import metadata
from bevan.store.search import SearchCompiler
from bevan.store.shapes import ShapeCache
from bevan.store.statements import HotStatements
from bevan.store.versions import StoreConflict, StoredVersion
from bevan.store.writing import WriteSession, savepoint

S = TypeVar("S", bound=ReadSession)


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
        # isolation level was a share of every search's time in the server. Reads with a time
        # budget have a pool of their own again, as their connections keep its timeout.
        self._reads = None if self.sqlite else reads_engine(engine)
        self._budgeted_reads = None if self.sqlite else reads_engine(engine, pool_size=2)

    @classmethod
    def from_url(cls, url: str, *, sqlite_synchronous: str = "NORMAL") -> RecordStore:
        return cls(make_engine(url, sqlite_synchronous=sqlite_synchronous))

    @property
    def read_budget(self) -> ReadBudget:
        """Return how long a read may first be tried where it must be quick."""
        return SQLITE_READ_BUDGET if self.sqlite else POSTGRESQL_READ_BUDGET

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
        loop that waits for them (benchmarks/search.py, by NHS number, shows it).
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
        table row, as autovacuum would later: searches by name prefix and with
        _revinclude answer more just after a load, for a VACUUM that takes seconds
        (benchmarks/search.py on PostgreSQL).
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
