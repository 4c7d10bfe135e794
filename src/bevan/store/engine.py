"""One database URL chooses the engine: sqlite:///path (default) or postgresql://..."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger("bevan.store")


def is_sqlite(engine: Engine) -> bool:
    """Return True if engine's database is SQLite (the record store asks its dialect
    object instead; this is for the modules beside it that keep their own SQL)."""
    return engine.dialect.name == "sqlite"


def normalise_url(url: str) -> str:
    """Return url with the driver Bevan uses (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


SQLITE_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


def make_engine(url: str, *, pool_size: int = 16, sqlite_synchronous: str = "NORMAL") -> Engine:
    """Return an Engine for url, tuned for Bevan's workload on its dialect (on SQLite,
    committing at sqlite_synchronous, one of SQLITE_SYNCHRONOUS_LEVELS).

    The pool keeps enough connections for the event loop, the offload threads, the
    group-commit writer and the audit writer, so none is opened per request.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_timeout=60)
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    # PostgreSQL plans a statement the driver has prepared (after five runs) once for
    # every value when that costs no more than planning it each time: the search SQL
    # fixes how each search runs (store/search.py), so such a plan is the same plan,
    # without the planning, which cost more than running the search (benchmarks/search.py:
    # Observations by patient, code and dates).
    engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=False)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Compiling a statement to machine code pays back over minutes of analytics,
        # not in a search: a composite search whose estimated cost passed the threshold
        # spent longer compiling on each run at a million resources than it saved
        # (benchmarks/search.py, composite searches).
        dbapi_connection.execute("SET jit = off")
        dbapi_connection.commit()


def reads_engine(engine: Engine, *, pool_size: int = 16) -> Engine:
    """Return an engine on engine's PostgreSQL database whose connections run each
    statement in a transaction of its own (autocommit), set once as each connects.

    The pool hands out the connection returned last, so a few busy connections serve
    most reads. Each prepares a statement after PREPARE_AFTER runs of it, and the
    server plans it once for every value after five more: with every connection in turn
    (the default) each of the 10 to 20 a process holds had to see each statement ten
    times before it ran without being planned.

    A connection goes back to the pool as it is: with no transaction ever open there is
    nothing to roll back (the pool's rollback on each return was a few per cent of the
    server's CPU for a search by NHS number).
    """
    reads = create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=32,
        pool_pre_ping=False,
        pool_use_lifo=True,
        pool_reset_on_return=None,
    )
    _configure_postgresql(reads)

    @event.listens_for(reads, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.prepare_threshold = PREPARE_AFTER
        dbapi_connection.prepared_max = MAX_PREPARED
        # Every read is answered from an index by design (a search from its driving
        # criterion's rows, or by walking the type in row-key order). A sequential scan
        # is only ever chosen on a misjudged row count, as when counting a component's
        # matches up to a limit was expected to stop early and read the whole table.
        dbapi_connection.execute("SET enable_seqscan = off")

    return reads


# Runs of a statement on a connection before psycopg prepares it (its default: 5), and
# how many prepared statements a connection keeps (default 100; the search mix alone
# has more shapes than that).
PREPARE_AFTER = 2
MAX_PREPARED = 256


def _add_math_functions(connection: sqlite3.Connection) -> None:
    """Give a connection the math functions distances need where SQLite lacks them (it
    has them from 3.35 when built with them, as most builds are)."""
    try:
        connection.execute("SELECT asin(sqrt(sin(radians(1.0)) * cos(1.0)))").fetchone()
    except sqlite3.OperationalError:
        for name, function in (
            ("sin", math.sin),
            ("cos", math.cos),
            ("asin", math.asin),
            ("sqrt", math.sqrt),
            ("radians", math.radians),
        ):
            connection.create_function(name, 1, _or_null(function), deterministic=True)


def _or_null(function: Callable[[float], float]) -> Callable[[float | None], float | None]:
    # SQL's NULL in, NULL out, as the built-in functions answer
    def apply(value: float | None) -> float | None:
        return None if value is None else function(value)

    return apply


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    synchronous = synchronous.upper()
    if synchronous not in SQLITE_SYNCHRONOUS_LEVELS:
        synchronous = "NORMAL"

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer. synchronous=NORMAL keeps every
        # committed transaction across a crash of the process (SIGKILL); only a power
        # cut can lose the last commits before a checkpoint. Operators who need more
        # set BEVAN_SQLITE_SYNCHRONOUS=FULL.
        # 8 KB pages for a new database (an existing one keeps its own; this must come
        # before WAL is set). Imports store more resources a second, mostly from fewer
        # log frames to write at each commit (benchmarks/bundle_import.py with Synthea
        # bundles); searches at a million resources were as fast or faster, but for
        # $everything (benchmarks/search.py).
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()
        _add_math_functions(dbapi_connection)

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # A write takes the write lock at BEGIN, so two writers queue instead of one
        # failing with "database is locked" when it upgrades from reading.
        # Straight to the driver: through Core, BEGIN cost as much as a small search.
        immediate = connection.get_execution_options().get("bevan_write")
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


SQLITE_PAGE_SIZE = 8192
