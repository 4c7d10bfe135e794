"""`bevan load` of NDJSON in bulk: whole files or nothing, bad lines named by file and
line, files in any order, and a load killed part way finishes when run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM
from bevan.records.loader import load_files
from bevan.records.service import RecordService
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from bevan.synth import write_population
from tests.nhs_numbers import fresh_nhs_number


def _write(path: Path, resources: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def _counts(store: RecordStore) -> dict[str, int]:
    with store.read() as session:
        return session.resource_counts()


def _lines_by_type(directory: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in directory.glob("*.ndjson"):
        counts[path.stem] = sum(1 for line in path.open("rb") if line.strip())
    return counts


def _versions(store: RecordStore) -> tuple[int, int, int]:
    """Return (resources, versions, resources whose current version row is missing)."""
    with store.engine.connect() as connection:
        resources = connection.exec_driver_sql("SELECT count(*) FROM resource").scalar()
        versions = connection.exec_driver_sql("SELECT count(*) FROM resource_version").scalar()
        orphans = connection.exec_driver_sql(
            "SELECT count(*) FROM resource r WHERE NOT EXISTS "
            "(SELECT 1 FROM resource_version v WHERE v.seq = r.seq)"
        ).scalar()
    return int(resources or 0), int(versions or 0), int(orphans or 0)


def _practice(id: str = "practice") -> dict[str, Any]:
    return {"resourceType": "Organization", "id": id, "name": "The Surgery"}


def _person(number: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": number}],
        "name": [{"family": family}],
    }


def _registered(id: str, practice: str = "practice") -> dict[str, Any]:
    return {
        **_person(fresh_nhs_number(), f"Okafor{id}"),
        "id": id,
        "managingOrganization": {"reference": f"Organization/{practice}"},
    }


def test_files_given_in_reverse_dependency_order_load(
    service: RecordService, store: RecordStore, tmp_path: Path
) -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "serviceProvider": {"reference": "Organization/practice"},
    }
    files = [
        _write(tmp_path / "Encounter.ndjson", [encounter]),
        _write(tmp_path / "Patient.ndjson", [_registered("p1"), _registered("p2")]),
        _write(tmp_path / "Organization.ndjson", [_practice()]),
    ]
    report = load_files(service, files)
    assert report.refused == [] and report.unresolved == []
    assert _counts(store) == {"Encounter": 1, "Patient": 2, "Organization": 1}
    # Searchable at once, by every kind of index row the load wrote.
    with store.read() as session:
        from bevan.fhir.search import parse_search

        assert session.search_ids(parse_search("Encounter", "patient=p1"), limit=5) == ["e1"]
        assert len(session.search_ids(parse_search("Patient", "name=okafor"), limit=5)) == 2


def test_a_file_with_bad_lines_is_refused_whole_each_bad_line_named(
    service: RecordService, store: RecordStore, tmp_path: Path
) -> None:
    good = _write(tmp_path / "Organization.ndjson", [_practice()])
    lines = [
        orjson.dumps(_registered("p1")),
        b'{"resourceType": "Patient", "id": "p2", "gender": "sometimes"}',
        b"{not json",
        orjson.dumps(_registered("p3")),
        b'{"resourceType": "Patient", "id": "no spaces allowed"}',
    ]
    bad = tmp_path / "Patient.ndjson"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    report = load_files(service, [bad, good])
    refused = "\n".join(report.refused)
    assert f"{bad}: line 2" in refused and "Patient.gender" in refused
    assert f"{bad}: line 3" in refused
    assert f"{bad}: line 5" in refused
    assert f"{bad}: line 1:" not in refused and f"{bad}: line 4:" not in refused
    assert [(r.path, r.line) for r in report.refusals if r.line] == [
        (str(bad), 2),
        (str(bad), 3),
        (str(bad), 5),
    ]
    assert _counts(store) == {"Organization": 1}  # nothing of the bad file

    partial = load_files(service, [bad], partial=True)
    assert len([r for r in partial.refused if "line" in r]) == 3
    assert _counts(store) == {"Organization": 1, "Patient": 2}


def test_a_reference_to_nothing_is_named_and_refused_with_its_file(
    service: RecordService, store: RecordStore, tmp_path: Path
) -> None:
    patients = _write(
        tmp_path / "Patient.ndjson", [_registered("p1"), _registered("p2", practice="nowhere")]
    )
    practices = _write(tmp_path / "Organization.ndjson", [_practice()])
    report = load_files(service, [patients, practices])
    named = [r for r in report.refused if "line 2" in r]
    assert named and "Patient.managingOrganization" in named[0] and "nowhere" in named[0]
    assert _counts(store) == {"Organization": 1}
    assert report.stored == {"Organization": 1, "Patient": 0}

    kept = load_files(service, [patients, practices], partial=True)
    assert _counts(store) == {"Organization": 1, "Patient": 1}
    assert kept.stored == {"Organization": 1, "Patient": 1}


def test_an_nhs_number_held_by_another_patient_is_refused(
    service: RecordService, store: RecordStore, tmp_path: Path
) -> None:
    number = fresh_nhs_number()
    service.create(_person(number, "Holder"))
    other = {**_person(number, "Claimant"), "id": "claimant"}
    path = _write(tmp_path / "Patient.ndjson", [other])
    report = load_files(service, [path], partial=True)
    assert any(f"{path}: line 1" in r and number in r for r in report.refused)
    assert _counts(store) == {"Patient": 1}


def test_loading_the_same_files_again_stores_nothing_twice(
    service: RecordService, store: RecordStore, tmp_path: Path
) -> None:
    files = [
        _write(tmp_path / "Organization.ndjson", [_practice()]),
        _write(tmp_path / "Patient.ndjson", [_registered("p1"), _registered("p2")]),
    ]
    load_files(service, files)
    again = load_files(service, files)
    assert again.refused == [] and again.unchanged == 3
    assert _versions(store) == (3, 3, 0)
    changed = {**_registered("p2"), "gender": "female"}
    load_files(service, [_write(tmp_path / "Patient.ndjson", [changed])])
    assert _versions(store) == (3, 4, 0)
    assert service.read("Patient", "p2").version_id == 2


def _bevan_load(url: str, data_dir: Path, directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bevan.cli", "load", "--data-dir", str(data_dir), "--database",
         url, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its worker processes are killed with it
    )  # fmt: skip


def test_a_load_killed_part_way_and_run_again_holds_exactly_the_files(
    store: RecordStore, tmp_path: Path
) -> None:
    population = tmp_path / "population"
    write_population(400, 11, population, ndjson=True, workers=1)
    url = store.engine.url.render_as_string(hide_password=False)
    data_dir = tmp_path / "data"
    first = _bevan_load(url, data_dir, population)
    deadline = time.monotonic() + 120
    while not _counts(store):
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "nothing was stored"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    partway = _counts(store)
    expected = _lines_by_type(population)
    assert partway != dict(expected)
    for resource_type, count in partway.items():
        assert count == expected[resource_type]  # whole files only
    resources, versions, orphans = _versions(store)
    assert resources == versions and orphans == 0

    again = _bevan_load(url, data_dir, population)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-2000:]
    # What one uninterrupted load stores: the files' resources, and what the services'
    # write rules add (NEWS2 scores of complete sets, and the tasks they raise).
    whole, whole_versions = _uninterrupted(population, tmp_path / "whole")
    for resource_type, count in expected.items():
        assert whole[resource_type] >= count
    assert _counts(store) == whole
    assert _versions(store) == whole_versions  # no resource written twice
    with store.engine.connect() as connection:
        holders = connection.exec_driver_sql("SELECT count(*) FROM patient_nhs_number").scalar()
    assert holders == expected["Patient"]


def _uninterrupted(population: Path, data_dir: Path) -> tuple[dict[str, int], tuple[int, int, int]]:
    """Return what one `bevan load` of population stores in a database of its own: the
    resources by type, and _versions() of it."""
    from bevan.app import record_service
    from bevan.config import Settings

    settings = Settings(data_dir=data_dir)
    data_dir.mkdir()
    other = RecordStore.from_url(settings.resolved_database_url)
    try:
        upgrade(other.engine)
        load_files(record_service(settings, other), sorted(population.glob("*.ndjson")))
        return _counts(other), _versions(other)
    finally:
        other.close()


def test_every_load_is_one_audit_entry_naming_its_files(tmp_path: Path) -> None:
    _write(tmp_path / "Organization.ndjson", [_practice()])
    _write(tmp_path / "Patient.ndjson", [_registered("p1")])
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "bevan.cli", "load", "--data-dir", str(data_dir),
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "bevan.cli", "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    store = RecordStore.from_url(f"sqlite:///{data_dir / 'bevan.db'}")
    try:
        with store.engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT content FROM audit_event").all()
    finally:
        store.close()
    assert len(rows) == 1
    event = rows[0][0]
    assert "Organization.ndjson" in event and "Patient.ndjson" in event
    assert "1 Organization" in event and "1 Patient" in event


def test_the_services_write_rules_see_every_loaded_line(store: RecordStore, tmp_path: Path) -> None:
    from tests.store.test_write_rules import FlagHeavyReadings, reading

    service = RecordService(store, rules=[FlagHeavyReadings()])
    person = {"resourceType": "Patient", "id": "p"}
    readings = [{**reading(kg), "id": f"r{n}"} for n, kg in enumerate((70, 300, 600))]
    files = [
        _write(tmp_path / "Observation.ndjson", readings),
        _write(tmp_path / "Patient.ndjson", [person]),
    ]
    report = load_files(service, files, partial=True)
    assert any(f"{files[0]}: line 3" in r and "500 kg" in r for r in report.refused)
    assert _counts(store) == {"Patient": 1, "Observation": 2, "Flag": 2}
    tagged = orjson.loads(service.read("Observation", "r1").content or "{}")
    assert tagged["meta"]["tag"][0]["code"] == "implausible"


def test_diaries_load_whole_though_appointments_come_before_their_slots(
    store: RecordStore, tmp_path: Path
) -> None:
    # Appointment.ndjson is read before Slot.ndjson: the booking rule, finding no slot,
    # puts the appointments off, in their order, until the slots are in.
    from bevan.app import record_service
    from bevan.cli.data import coming_monday
    from bevan.config import Settings

    population = tmp_path / "population"
    write_population(20, 5, population, ndjson=True, workers=1, diaries_from=coming_monday())
    service = record_service(Settings(data_dir=tmp_path), store)
    files = sorted(population.glob("*.ndjson"))
    assert [p.stem for p in files].index("Appointment") < [p.stem for p in files].index("Slot")
    report = load_files(service, files)
    assert report.refused == []
    expected = _lines_by_type(population)
    counts = _counts(store)
    assert all(counts[t] >= n for t, n in expected.items()), (counts, expected)
    assert counts["Appointment"] == expected["Appointment"] > 0
