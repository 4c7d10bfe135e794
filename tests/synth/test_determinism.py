from __future__ import annotations

from pathlib import Path

from bevan.synth import generate_patients, write_population
from bevan.synth.bundles import CHUNK


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_same_seed_writes_byte_identical_bundles(tmp_path: Path) -> None:
    write_population(150, 7, tmp_path / "a")
    write_population(150, 7, tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(first) == 151  # shared.json and one Bundle per patient
    assert first == second


def test_the_same_seed_writes_byte_identical_ndjson(tmp_path: Path) -> None:
    write_population(150, 7, tmp_path / "a", ndjson=True)
    write_population(150, 7, tmp_path / "b", ndjson=True)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert {"Patient.ndjson", "Observation.ndjson", "Organization.ndjson"} <= set(first)
    assert first == second


def test_a_different_seed_gives_a_different_population(tmp_path: Path) -> None:
    write_population(20, 7, tmp_path / "a")
    write_population(20, 8, tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first["shared.json"] != second["shared.json"]
    assert all(first[name] != second[name] for name in first if name.startswith("patient-"))


def test_a_patient_is_the_same_whatever_the_population_size() -> None:
    everyone = list(generate_patients(40, 3))
    alone = next(generate_patients(1, 3, start=37))
    assert alone == everyone[37]
    assert everyone[36] != everyone[37]


def test_two_worker_processes_write_what_one_process_writes(tmp_path: Path) -> None:
    count = CHUNK + 30  # more than one chunk, so the work really is split
    write_population(count, 11, tmp_path / "one", ndjson=True, workers=1)
    write_population(count, 11, tmp_path / "two", ndjson=True, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
