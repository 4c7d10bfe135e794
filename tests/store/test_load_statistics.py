"""A long load refreshes the planner's statistics as it goes and at its end."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bevan.records import loader
from bevan.records.service import RecordService
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from tests.conftest import database_url
from tests.store.patients import patient


def test_statistics_are_refreshed_each_time_the_load_doubles(
    service: RecordService, store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "FIRST_STATISTICS_REFRESH", 20)
    monkeypatch.setattr(loader, "NDJSON_BATCH", 10)
    stored_at_refresh: list[int | str] = []
    analyse = store.analyse

    def counting_analyse(*, settle: bool = False) -> None:
        with store.read() as session:
            stored = sum(session.resource_counts().values())
        stored_at_refresh.append(f"{stored} settled" if settle else stored)
        analyse(settle=settle)

    monkeypatch.setattr(store, "analyse", counting_analyse)
    lines = [orjson.dumps(patient(f"mrn-{n}", f"Okafor{n}")) for n in range(110)]
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = loader.load_files(service, [path])
    assert report.total == 110 and not report.refused
    # The first refresh once 20 are stored, then at 40 and 80, each seeing the rows so
    # far; and at the end (settled: on PostgreSQL, vacuumed too) the 30 since.
    assert stored_at_refresh == [20, 40, 80, "110 settled"]


@pytest.mark.postgres
def test_a_settled_load_is_vacuumed_and_analysed(tmp_path: Path) -> None:
    # VACUUM marks the new rows visible to every reader, so that a search reading only
    # an index (as most lookups do) need not visit each matching row; ANALYZE counts
    # them for the planner.
    store = RecordStore.from_url(database_url("postgres", tmp_path))
    try:
        upgrade(store.engine)
        service = RecordService(store)
        for n in range(30):
            service.create(patient(f"mrn-{n}", f"Okafor{n}"))
        store.analyse(settle=True)
        with store.engine.connect() as connection:
            vacuumed, analysed = connection.exec_driver_sql(
                "SELECT vacuum_count, analyze_count FROM pg_stat_user_tables "
                "WHERE relid = 'index_string'::regclass"
            ).one()
    finally:
        store.close()
    assert vacuumed >= 1 and analysed >= 1
