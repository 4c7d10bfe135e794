"""The store on SQLite: one writer at a time, queued on a lock of this process and one
beside the database, the write-ahead log checkpointed off the commit path, and reads in
a transaction of their own interrupted once past their budget."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: there, writers in other processes queue in SQLite itself
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, event

from bevan.store.budget import SQLITE_READ_BUDGET, within_budget
from bevan.store.dialect import StoreDialect
from bevan.store.search import SQLiteSearchCompiler

log = logging.getLogger("bevan.store")


class SQLiteDialect(StoreDialect):
    """SQLite: the one writer holds the only write lock, so a write session keys and
    holds its rows itself (`single_writer`)."""

    name = "sqlite"
    read_budget = SQLITE_READ_BUDGET
    single_writer = True
    explain = "EXPLAIN QUERY PLAN "

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, SQLiteSearchCompiler())
        # SQLite has one writer at a time. Queue this process's writers on a lock
        # rather than in SQLite's busy handler, which sleeps and retries and so gives
        # long, unfair waits under load; other processes still meet BEGIN IMMEDIATE.
        self._writer_lock = self.write_lock = WriterLock(engine.url.database)
        self._checkpointer = WalCheckpointer(engine)
        self._checkpointer.start()

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """The reads share one transaction, and so one snapshot; inside time_budget()
        they are interrupted once past it."""
        with (
            self.engine.connect() as connection,
            connection.begin(),
            within_budget(connection),
        ):
            yield connection

    def plan_line(self, row: Any) -> str:
        return str(row[-1])  # the detail is EXPLAIN QUERY PLAN's last column

    def analyse(self, table_names: str, *, settle: bool = False) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA analysis_limit=1000")
            connection.exec_driver_sql("ANALYZE")
            connection.commit()

    def close(self) -> None:
        self._checkpointer.stop()
        self.engine.dispose()
        self._writer_lock.close()


# Pages of write-ahead log past which a commit checkpoints it itself (SQLite's default
# is 1,000): by then the checkpoint thread has copied most of them, so little is left.
WAL_BACKSTOP_PAGES = 8000


class WalCheckpointer:
    """Copies a SQLite database's write-ahead log back into the database on a thread of
    its own, so that commits don't.

    By default SQLite checkpoints inside whichever commit takes the log past 1,000
    pages: most of the time of the commit that does so, all of it while holding the
    write lock (benchmarks/bundle_import.py). This thread checkpoints every interval instead, in PASSIVE mode (it
    never waits for, or blocks, readers or the writer), in SQLite's own code, beside the
    request work. Commits still checkpoint past WAL_BACKSTOP_PAGES: under writes that
    never pause, only a checkpoint run by the writer itself finishes before the next
    write begins, and only then does the log start again from its beginning rather
    than grow without end. By then this thread has copied most pages already.

    Every 50 ms: the log then starts again far more often, in the gaps between writers,
    so commits seldom reach the backstop. Against a longer interval, importing Bundles
    spends less time committing each resource, and far fewer commits are slow
    (benchmarks/bundle_import.py). A check of a log with nothing new costs little.
    """

    def __init__(self, engine: Engine, interval: float = 0.05) -> None:
        self.path = engine.url.database or ""
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        event.listen(engine, "connect", self._on_connect)

    @staticmethod
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
        # A log that grew under a burst of writes shrinks back when it is next reset.
        cursor.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        cursor.close()

    def start(self) -> None:
        if self._thread is None and self.path not in ("", ":memory:"):
            self._thread = threading.Thread(
                target=self._run, name="bevan-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more and end the thread."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            thread.join()
            self._thread = None

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.warning("WAL checkpoint of %s failed; will retry", self.path, exc_info=True)
                if stopping:
                    return
        finally:
            connection.close()


class WriterLock:
    """One SQLite writer at a time: across this process's threads, and across the
    processes serving the same database file.

    SQLite lets one connection write at a time and makes the others retry in its busy
    handler, which sleeps between tries (up to 100 ms): a writer queued there starts long
    after the database is free, and not in turn. Writers queue here instead, on a
    thread lock and an advisory lock on a file beside the database, and each starts as
    soon as the one before it ends.
    """

    def __init__(self, database_path: str | None) -> None:
        self._threads = threading.Lock()
        self._fd: int | None = None
        if database_path and database_path != ":memory:" and fcntl is not None:
            self._fd = os.open(f"{database_path}-writer", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, blocking: bool = True) -> bool:
        if not self._threads.acquire(blocking):
            return False
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._threads.release()
                return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
