"""One database URL chooses the engine: sqlite:///path (default) or postgresql://..."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    """Return url with the driver Bevan uses (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    """Return an Engine for url, tuned for Bevan's workload on its dialect.

    The pool keeps enough connections for the event loop, the offload threads, the
    group-commit writer and the audit writer, so none is opened per request.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_timeout=60)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer. synchronous=NORMAL keeps every
        # committed transaction across a crash of the process (SIGKILL); only a power
        # cut can lose the last commits before a checkpoint. Operators who need more
        # set BEVAN_SQLITE_SYNCHRONOUS=FULL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={_sqlite_synchronous()}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # A write takes the write lock at BEGIN, so two writers queue instead of one
        # failing with "database is locked" when it upgrades from reading.
        if connection.get_execution_options().get("bevan_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def _sqlite_synchronous() -> str:
    import os

    value = os.environ.get("BEVAN_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    return value if value in ("OFF", "NORMAL", "FULL", "EXTRA") else "NORMAL"
