"""A load refreshes the planner's statistics at its end."""

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


def test_statistics_are_refreshed_once_a_load_has_stored_its_files(
    service: RecordService, store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The load's own lookups plan from the keys, not from statistics (store/bulk.py), so
    # they are refreshed once, at the end, seeing every row the load stored.
    monkeypatch.setattr(loader, "FIRST_STATISTICS_REFRESH", 20)
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
    assert stored_at_refresh == ["110 settled"]


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
