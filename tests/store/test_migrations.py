"""`bevan db upgrade` builds exactly the schema the code declares, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from bevan.store.engine import make_engine
from bevan.store.migrate import pending, upgrade
from bevan.store.schema import metadata
from tests.conftest import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
# SQLite cannot reflect an index on an expression (the prefix buckets): not compared there.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrading_drops_the_rows_of_parameters_that_repeat_others(
    backend: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url(backend, tmp_path))
    upgrade(engine, "0005")
    written = [  # as an earlier version wrote them for one Observation and one Patient
        ("index_token", 1, "Observation", "code", "8480-6"),
        ("index_token", 1, "Observation", "combo-code", "8480-6"),
        ("index_token", 1, "Observation", "code-value-concept$0", "8480-6"),
        ("index_string", 2, "Patient", "name", "ndlovu"),
        ("index_string", 2, "Patient", "phonetic", "ndlovu"),
    ]
    with engine.begin() as connection:
        for table, rid, resource_type, param, value in written:
            column = "code" if table == "index_token" else "value"
            extra = ", exact" if table == "index_string" else ""
            connection.execute(
                text(
                    f"INSERT INTO {table} (rid, resource_type, param, {column}{extra}, grp) "
                    f"VALUES (:rid, :type, :param, :value{', :value' if extra else ''}, 0)"
                ),
                {"rid": rid, "type": resource_type, "param": param, "value": value},
            )
    upgrade(engine)
    with engine.connect() as connection:
        kept = {
            (table, param)
            for table in ("index_token", "index_string")
            for (param,) in connection.execute(text(f"SELECT param FROM {table}"))
        }
    assert kept == {("index_token", "code"), ("index_string", "name")}
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrading_indexes_the_positions_of_locations_already_stored(
    backend: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url(backend, tmp_path))
    upgrade(engine, "0008")
    stored = [  # rid, id, deleted, content of the current version
        (
            1,
            "cardiff",
            False,
            '{"resourceType":"Location","position":{"latitude":51.4816,"longitude":-3.1791}}',
        ),
        (2, "gone", True, None),
        (3, "nowhere", False, '{"resourceType":"Location","name":"Nowhere"}'),
    ]
    with engine.begin() as connection:
        for rid, id, deleted, content in stored:
            connection.execute(
                text(
                    "INSERT INTO resource (rid, resource_type, id, version_id, seq, last_updated,"
                    " deleted) VALUES (:rid, 'Location', :id, 1, :rid, '2026-01-01', :deleted)"
                ),
                {"rid": rid, "id": id, "deleted": deleted},
            )
            connection.execute(
                text(
                    "INSERT INTO resource_version (resource_type, id, version_id, last_updated,"
                    " method, content) VALUES ('Location', :id, 1, '2026-01-01', :method, :content)"
                ),
                {"id": id, "method": "delete" if deleted else "create", "content": content},
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT rid, param, value FROM index_number ORDER BY rid, param")
        ).fetchall()
    assert [tuple(r) for r in rows] == [
        (1, "near$latitude", 51.4816),
        (1, "near$longitude", -3.1791),
    ]
    engine.dispose()
