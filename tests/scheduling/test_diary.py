"""The diary: slots made in bulk from a template (the operation and the command), and
free slots found with ordinary search, a patient at most 14 days at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bevan.cli import main
from tests.conftest import RunningServer
from tests.people import PEOPLE
from tests.scheduling.diaries import CLINICS, FHIR_JSON, GP, NURSE, put_all, token

MONDAY = date.today() + timedelta(days=7 - date.today().weekday())  # next Monday


def parameters(**values: object) -> dict:
    found = []
    for name, value in values.items():
        for each in value if isinstance(value, list) else [value]:
            kind = (
                "valueInteger"
                if isinstance(each, int) and not isinstance(each, bool)
                else ("valueBoolean" if isinstance(each, bool) else "valueString")
            )
            found.append({"name": name, kind: each})
    return {"resourceType": "Parameters", "parameter": found}


@pytest.fixture(scope="module")
def diary(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        nurse_diary = {
            "resourceType": "Schedule",
            "id": "diary-nurse",
            "active": True,
            "serviceType": [NURSE],
            "actor": [{"reference": "Location/clinic-a"}],
        }
        put_all(fhir, PEOPLE + CLINICS + [nurse_diary])
        made = fhir.post(
            "/Schedule/diary-a/$generate-slots",
            json=parameters(start=MONDAY.isoformat()),
            headers=FHIR_JSON,
        )
        assert made.status_code == 201, made.text
        server.made = made.json()  # type: ignore[attr-defined]
        practice_only = fhir.post(
            "/Schedule/diary-nurse/$generate-slots",
            json=parameters(
                start=MONDAY.isoformat(), days=2, session="08:00-09:00", patientBookable=False
            ),
            headers=FHIR_JSON,
        )
        assert practice_only.status_code == 201, practice_only.text
    return server


def test_a_week_of_fifteen_minute_slots_is_made_from_the_default_template(
    diary: RunningServer,
) -> None:
    made = diary.made  # type: ignore[attr-defined]
    assert made["resourceType"] == "Bundle" and made["type"] == "collection"
    # Monday to Friday, 09:00-12:00 and 14:00-17:00: 24 slots a day.
    assert made["total"] == 5 * 24
    slots = [e["resource"] for e in made["entry"]]
    assert {s["status"] for s in slots} == {"free"}
    assert all(s["serviceType"] == [GP] for s in slots)
    first = datetime.fromisoformat(slots[0]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(slots[0]["end"].replace("Z", "+00:00"))
    assert end - first == timedelta(minutes=15)
    assert first.astimezone(UTC).date() == MONDAY


def test_generating_the_same_week_again_makes_nothing_new(diary: RunningServer) -> None:
    with diary.client() as fhir:
        again = fhir.post(
            "/Schedule/diary-a/$generate-slots",
            json=parameters(start=MONDAY.isoformat()),
            headers=FHIR_JSON,
        )
        assert again.status_code == 201, again.text
        assert again.json()["total"] == 0


def test_a_bad_template_is_refused_naming_the_parameter(diary: RunningServer) -> None:
    with diary.client() as fhir:
        bad = fhir.post(
            "/Schedule/diary-a/$generate-slots",
            json=parameters(start=MONDAY.isoformat(), session="17:00-09:00"),
            headers=FHIR_JSON,
        )
        assert bad.status_code == 400, bad.text
        assert bad.json()["issue"][0]["expression"] == ["session"]
        unknown = fhir.post(
            "/Schedule/nowhere/$generate-slots",
            json=parameters(start=MONDAY.isoformat()),
            headers=FHIR_JSON,
        )
        assert unknown.status_code == 404, unknown.text


def test_only_system_accounts_generate_slots(diary: RunningServer) -> None:
    receptionist = token(diary, "receptionist", organisation="A81001")
    with diary.client(receptionist) as fhir:
        refused = fhir.post(
            "/Schedule/diary-a/$generate-slots",
            json=parameters(start=(MONDAY + timedelta(days=14)).isoformat()),
            headers=FHIR_JSON,
        )
        assert refused.status_code == 403, refused.text


def test_the_command_fills_a_diary_too(diary: RunningServer, capsys: pytest.CaptureFixture) -> None:
    url = str(diary.store.engine.url.render_as_string(hide_password=False))
    week = (MONDAY + timedelta(days=21)).isoformat()
    arguments = ["slots", "generate", "--data-dir", str(diary.data_dir), "--database", url]
    arguments += ["--schedule", "diary-a", "--start", week, "--days", "1", "--weekdays", "mon"]
    assert main([*arguments, "--session", "09:00-10:00", "--minutes", "10"]) == 0
    assert "Made 6 free slots" in capsys.readouterr().out
    with diary.client() as fhir:
        found = fhir.get(
            "/Slot", params={"schedule": "Schedule/diary-a", "start": [f"ge{week}", f"le{week}"]}
        ).json()
        assert found["total"] == 6


def test_free_slots_are_found_with_ordinary_search_and_include_their_schedule(
    diary: RunningServer,
) -> None:
    with diary.client() as fhir:
        found = fhir.get(
            "/Slot",
            params={
                "schedule.actor": "Location/clinic-a",
                "status": "free",
                "service-type": f"{GP['coding'][0]['system']}|{GP['coding'][0]['code']}",
                "start": [f"ge{MONDAY}", f"le{MONDAY}"],
                "_include": "Slot:schedule",
                "_count": "100",
            },
        ).json()
    matches = [e for e in found["entry"] if e["search"]["mode"] == "match"]
    included = [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "include"]
    assert len(matches) == 24
    assert included == ["diary-a"]


def test_a_patient_finds_only_slots_open_to_patient_booking(diary: RunningServer) -> None:
    patient = token(diary, "patient", patient_id="related")
    window = {"start": [f"ge{MONDAY}", f"le{MONDAY + timedelta(days=1)}"], "_count": "200"}
    with diary.client(patient) as fhir:
        found = fhir.get("/Slot", params={**window, "status": "free"})
        assert found.status_code == 200, found.text
        schedules = {e["resource"]["schedule"]["reference"] for e in found.json()["entry"]}
    with diary.client() as fhir:
        everything = fhir.get("/Slot", params={**window, "status": "free"}).json()
        every_schedule = {e["resource"]["schedule"]["reference"] for e in everything["entry"]}
    assert schedules == {"Schedule/diary-a"}
    assert every_schedule == {"Schedule/diary-a", "Schedule/diary-nurse"}


def test_a_patient_searches_at_most_fourteen_days_at_a_time(diary: RunningServer) -> None:
    patient = token(diary, "patient", patient_id="related")
    with diary.client(patient) as fhir:
        fortnight = fhir.get(
            "/Slot", params={"start": [f"ge{MONDAY}", f"le{MONDAY + timedelta(days=13)}"]}
        )
        assert fortnight.status_code == 200, fortnight.text
        for params in (
            {"start": [f"ge{MONDAY}", f"le{MONDAY + timedelta(days=30)}"]},
            {"start": f"ge{MONDAY}"},
            {"status": "free"},
        ):
            refused = fhir.get("/Slot", params=params)
            assert refused.status_code == 400, refused.text
            issue = refused.json()["issue"][0]
            assert "14 days" in issue["diagnostics"]
            assert issue["expression"] == ["Slot?start"]
    # Staff search the diary as far as they like.
    receptionist = token(diary, "receptionist", organisation="A81001")
    with diary.client(receptionist) as fhir:
        assert fhir.get("/Slot", params={"status": "free"}).status_code == 200
