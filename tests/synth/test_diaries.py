"""Practice diaries in the synthetic population: deterministic, realistic (a week past
mostly attended, this week nearly full, next week half free, a full nurse clinic with a
waiting list), and loaded through the record they leave every diary consistent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson
import pytest

from bevan.records.loader import load_files
from bevan.scheduling.diary import SCHEDULING
from bevan.synth import diaries, write_population
from bevan.synth.bundles import population_files
from tests.conftest import RunningServer, database_url, start_server

MONDAY = date(2027, 1, 4)
PATIENTS = 60


def test_diaries_are_written_only_when_asked_and_the_same_each_time(tmp_path: Path) -> None:
    plain = write_population(20, 7, tmp_path / "plain")
    assert "Slot" not in plain and not (tmp_path / "plain" / "diaries.json").exists()
    first = write_population(20, 7, tmp_path / "a", diaries_from=MONDAY)
    again = write_population(20, 7, tmp_path / "b", diaries_from=MONDAY)
    assert first == again
    assert (tmp_path / "a" / "diaries.json").read_bytes() == (
        tmp_path / "b" / "diaries.json"
    ).read_bytes()
    # Everything else is exactly what a population without diaries holds.
    for path in (tmp_path / "plain").iterdir():
        assert (tmp_path / "a" / path.name).read_bytes() == path.read_bytes()
    assert population_files(tmp_path / "a")[-1].name == "diaries.json"


def test_ndjson_diaries_name_patients_by_id(tmp_path: Path) -> None:
    counts = write_population(20, 7, tmp_path, ndjson=True, diaries_from=MONDAY)
    slots = (tmp_path / "Slot.ndjson").read_bytes().splitlines()
    assert counts["Slot"] == len(slots) > 0
    patients = {
        orjson.loads(line)["id"] for line in (tmp_path / "Patient.ndjson").read_bytes().splitlines()
    }
    for line in (tmp_path / "Appointment.ndjson").read_bytes().splitlines():
        named = orjson.loads(line)["participant"][0]["actor"]["reference"]
        assert named.removeprefix("Patient/") in patients


@pytest.fixture(scope="module")
def loaded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"diaries-{backend}")
    population = tmp / "population"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diaries, "PRACTICES_WITH_DIARIES", 1)  # one practice's is enough here
        write_population(PATIENTS, 5, population, diaries_from=date.today())
    for running in start_server(database_url(backend, tmp), tmp):
        report = load_files(running.app.state.services.records, sorted(population.glob("*.json")))
        assert not report.refused, report.refused[:3]
        yield running


def statuses(fhir, **params: str) -> Counter[str]:
    found = fhir.get("/Slot", params={**params, "_count": "1000", "_elements": "status"})
    assert found.status_code == 200, found.text
    return Counter(e["resource"]["status"] for e in found.json().get("entry", []))


def test_loaded_diaries_have_booked_and_free_slots_and_a_waiting_list(
    loaded: RunningServer,
) -> None:
    with loaded.client() as fhir:
        schedules = fhir.get("/Schedule", params={"_count": "50"}).json()
        ids = sorted(e["resource"]["id"] for e in schedules["entry"])
        assert ids and all(i.endswith(("-gp-diary", "-nurse-diary")) for i in ids)
        gp = statuses(fhir, schedule=f"Schedule/{ids[0]}")
        assert gp["busy"] > gp["free"] > 0
        nurse = [i for i in ids if i.endswith("-nurse-diary")][0]
        future = statuses(fhir, schedule=f"Schedule/{nurse}", start=f"ge{date.today()}")
        assert set(future) == {"busy"}  # the nurse clinic is full
        booked = fhir.get("/Appointment", params={"status": "booked", "_summary": "count"})
        busy = fhir.get(
            "/Slot", params={"status": "busy", "start": f"ge{date.today()}", "_summary": "count"}
        )
        assert booked.json()["total"] == busy.json()["total"] > 0
        waiting = fhir.get("/Appointment", params={"status": "waitlist", "_summary": "count"})
        assert waiting.json()["total"] >= 2
        # Nobody has been offered a slot: none was free for them.
        offers = fhir.get("/Task", params={"code": f"{SCHEDULING}|slot-offer", "_summary": "count"})
        assert offers.json()["total"] == 0
        past = fhir.get("/Appointment", params={"status": "fulfilled,noshow", "_summary": "count"})
        assert past.json()["total"] > 0
