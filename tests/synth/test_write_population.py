from __future__ import annotations

from pathlib import Path

import orjson

from bevan.synth import write_population


def test_counts_and_progress_match_what_was_written_as_bundles(tmp_path: Path) -> None:
    reported: list[int] = []
    counts = write_population(250, 3, tmp_path, progress=reported.append)
    assert sum(reported) == 250
    written: dict[str, int] = {}
    for path in sorted(tmp_path.glob("*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            kind = entry["resource"]["resourceType"]
            written[kind] = written.get(kind, 0) + 1
    assert counts == written
    assert counts["Patient"] == 250
    assert (tmp_path / "patient-000001.json").exists()
    assert (tmp_path / "patient-000250.json").exists()


def test_counts_match_what_was_written_as_ndjson(tmp_path: Path) -> None:
    counts = write_population(120, 3, tmp_path, ndjson=True)
    written = {path.stem: len(path.read_bytes().splitlines()) for path in tmp_path.glob("*.ndjson")}
    assert counts == written
    assert not list(tmp_path.glob("*.part"))
    assert counts["Organization"] > 0 and counts["Practitioner"] > 0 and counts["Location"] > 0
