"""A long load refreshes the planner's statistics as it goes and at its end."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bevan.records import loader
from bevan.records.service import RecordService
from bevan.store.records import RecordStore
from tests.store.patients import patient


def test_statistics_are_refreshed_each_time_the_load_doubles(
    service: RecordService, store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "FIRST_STATISTICS_REFRESH", 20)
    monkeypatch.setattr(loader, "NDJSON_BATCH", 10)
    stored_at_refresh: list[int] = []
    analyse = store.analyse

    def counting_analyse() -> None:
        with store.read() as session:
            stored_at_refresh.append(sum(session.resource_counts().values()))
        analyse()

    monkeypatch.setattr(store, "analyse", counting_analyse)
    lines = [orjson.dumps(patient(f"mrn-{n}", f"Okafor{n}")) for n in range(110)]
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = loader.load_files(service, [path])
    assert report.total == 110 and not report.refused
    # The first refresh once 20 are stored, then at 40 and 80, each seeing the rows so
    # far; and at the end, 30 more having come since the last.
    assert stored_at_refresh == [20, 40, 80, 110]
