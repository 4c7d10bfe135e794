"""`bevan db upgrade` builds exactly the schema the code declares, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bevan.store.engine import make_engine
from bevan.store.migrate import pending, upgrade
from bevan.store.schema import metadata
from tests.conftest import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_the_declared_schema(backend: str, tmp_path: Path) -> None:
    engine = make_engine(database_url(backend, tmp_path))
    assert pending(engine)
    before, after = upgrade(engine)
    assert before is None and after is not None
    assert not pending(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert upgrade(engine) == (after, after)  # running again changes nothing
    engine.dispose()


def test_a_new_sqlite_database_uses_8_kb_pages_and_write_ahead_logging(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bevan.sqlite'}")
    try:
        upgrade(engine)
        with engine.connect() as connection:
            page_size = connection.exec_driver_sql("PRAGMA page_size").scalar()
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        engine.dispose()
    assert (page_size, journal) == (8192, "wal")
