"""$virtual-ward: a team's worklist, highest risk first, only what the caller may read,
and audited like every read; over real HTTP on both engines."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.monitoring.readings import HIGH, at, load_people, new_patient, reading_set, transaction
from tests.people import ODS

TEAM = "RVW01"


def enrol(fhir: httpx.Client, patient: str) -> None:
    episode = {
        "resourceType": "EpisodeOfCare",
        "id": uuid.uuid4().hex,
        "status": "active",
        "patient": {"reference": f"Patient/{patient}"},
        "managingOrganization": {"reference": "Organization/vw-team"},
        "period": {"start": at(48 * 60)},
    }
    plan = {
        "resourceType": "CarePlan",
        "id": uuid.uuid4().hex,
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": at(48 * 60)},
        "supportingInfo": [{"reference": f"EpisodeOfCare/{episode['id']}"}],
        "activity": [
            {
                "detail": {
                    "status": "in-progress",
                    "scheduledTiming": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                }
            }
        ],
    }
    fhir.post("/", json=transaction([episode, plan])).raise_for_status()


@pytest.fixture(scope="module")
def ward(server: RunningServer) -> dict[str, str]:
    with server.client() as fhir:
        load_people(fhir)
        team = {
            "resourceType": "Organization",
            "id": "vw-team",
            "identifier": [{"system": ODS, "value": TEAM}],
            "name": "Virtual ward team",
        }
        fhir.put("/Organization/vw-team", json=team).raise_for_status()
        patients = {
            "high": new_patient(fhir),
            "steady": new_patient(fhir),
            "incomplete": new_patient(fhir),
            "overdue": new_patient(fhir),
            "elsewhere": new_patient(fhir, "practice-b"),
        }
        for patient in patients.values():
            enrol(fhir, patient)
        sets = [
            *reading_set(patients["high"], at(20), HIGH),
            *reading_set(patients["steady"], at(90)),
            *reading_set(patients["steady"], at(30)),
            *reading_set(patients["incomplete"], at(60)),
            *reading_set(patients["incomplete"], at(10))[:-1],  # no temperature yet
            *reading_set(patients["elsewhere"], at(15), HIGH),
        ]
        fhir.post("/", json=transaction(sets)).raise_for_status()
    return patients


def rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for parameter in answer["parameter"]:
        if parameter["name"] != "patient":
            continue
        row: dict[str, Any] = {}
        for part in parameter["part"]:
            value = next(v for k, v in part.items() if k.startswith("value"))
            row.setdefault(part["name"], []).append(value)
        out.append(row)
    return out


def test_the_worklist_puts_the_highest_risk_first_and_says_what_is_missing(
    ward: dict[str, str], fhir: httpx.Client
) -> None:
    response = fhir.get("/$virtual-ward", params={"organization": TEAM})
    assert response.status_code == 200, response.text
    listed = rows(response.json())
    by_patient = {r["patient"][0]["reference"].split("/")[1]: r for r in listed}
    assert set(ward.values()) == set(by_patient)
    assert {listed[0]["patient"][0]["reference"], listed[1]["patient"][0]["reference"]} == {
        f"Patient/{ward['high']}",
        f"Patient/{ward['elsewhere']}",
    }
    high = by_patient[ward["high"]]
    assert high["band"] == ["high"] and high["total"] == [13]
    assert any(t["display"].startswith("stat") for t in high["task"])
    assert by_patient[ward["steady"]]["trend"] == ["steady"]
    assert by_patient[ward["steady"]]["minutesSinceLastSet"][0] in range(29, 33)
    assert by_patient[ward["incomplete"]]["missing"] == ["temperature"]
    assert by_patient[ward["overdue"]]["overdue"] == [True]
    assert "band" not in by_patient[ward["overdue"]]
    assert by_patient[ward["steady"]]["overdue"] == [False]


def test_a_clinician_sees_only_the_patients_they_may_read_and_is_audited(
    ward: dict[str, str], server: RunningServer
) -> None:
    authority = TokenAuthority.in_directory(server.data_dir)
    clinician = authority.issue("dr-ward", "clinician", organisation="A81001")
    with server.client(clinician) as http:
        response = http.get("/$virtual-ward", params={"organization": TEAM})
    assert response.status_code == 200, response.text
    shown = {r["patient"][0]["reference"] for r in rows(response.json())}
    assert f"Patient/{ward['elsewhere']}" not in shown
    assert f"Patient/{ward['high']}" in shown
    assert ward["elsewhere"] not in response.text
    own = authority.issue("patient", "patient", patient_id=ward["high"])
    with server.client(own) as http:
        log = http.get(f"/Patient/{ward['high']}/$audit").json()
    assert any(
        "dr-ward" in str(e["resource"]) and "virtual-ward" in str(e["resource"])
        for e in log["entry"]
    )


@pytest.mark.parametrize("role", ["device", "analyst", "receptionist"])
def test_roles_without_clinical_reads_learn_nothing_from_the_worklist(
    ward: dict[str, str], server: RunningServer, role: str
) -> None:
    authority = TokenAuthority.in_directory(server.data_dir)
    token = authority.issue(f"a-{role}", role, organisation="A81001", patient_id=ward["high"])
    with server.client(token) as http:
        response = http.get("/$virtual-ward", params={"organization": TEAM})
    assert response.status_code == 403
    assert ward["high"] not in response.text


def test_the_worklist_needs_a_team(fhir: httpx.Client) -> None:
    response = fhir.get("/$virtual-ward")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["organization"]


def test_a_clinician_completes_a_task_with_a_note_and_it_leaves_the_worklist(
    ward: dict[str, str], server: RunningServer, fhir: httpx.Client
) -> None:
    clinician = TokenAuthority.in_directory(server.data_dir).issue(
        "dr-ward", "clinician", organisation="A81001"
    )
    with server.client(clinician) as http:
        found = http.get(
            "/Task", params={"subject": f"Patient/{ward['high']}", "status": "requested"}
        )
        (entry,) = found.json()["entry"]
        task = entry["resource"]
        task["status"] = "completed"
        task["note"] = [{"text": "Phoned; district nurse visiting within the hour"}]
        response = http.put(f"/Task/{task['id']}", json=task)
        assert response.status_code == 200, response.text
        listed = rows(http.get("/$virtual-ward", params={"organization": TEAM}).json())
    row = next(r for r in listed if r["patient"][0]["reference"] == f"Patient/{ward['high']}")
    assert "task" not in row
    history = fhir.get(f"/Task/{task['id']}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]][:1] == ["completed"]


def test_a_clinician_cannot_touch_the_task_of_a_patient_they_may_not_read(
    ward: dict[str, str], server: RunningServer, fhir: httpx.Client
) -> None:
    (entry,) = fhir.get("/Task", params={"subject": f"Patient/{ward['elsewhere']}"}).json()["entry"]
    task = entry["resource"]
    clinician = TokenAuthority.in_directory(server.data_dir).issue(
        "dr-ward", "clinician", organisation="A81001"
    )
    with server.client(clinician) as http:
        assert http.get(f"/Task/{task['id']}").status_code == 403
        task["status"] = "completed"
        response = http.put(f"/Task/{task['id']}", json=task)
    assert response.status_code == 403
    assert fhir.get(f"/Task/{task['id']}").json()["status"] == "requested"


def test_a_team_of_more_patients_than_one_search_may_name_is_listed_whole(
    ward: dict[str, str], server: RunningServer
) -> None:
    from bevan.monitoring.enrolment import active_enrolments

    many = {*ward.values(), *(uuid.uuid4().hex for _ in range(250))}
    with server.records.reading() as session:
        found = {e.patient_id for e in active_enrolments(session, many)}
    assert found == set(ward.values())


def test_a_patient_cannot_close_their_own_escalation(
    ward: dict[str, str], server: RunningServer, fhir: httpx.Client
) -> None:
    (entry,) = fhir.get("/Task", params={"subject": f"Patient/{ward['elsewhere']}"}).json()["entry"]
    task = entry["resource"]
    own = TokenAuthority.in_directory(server.data_dir).issue(
        "patient", "patient", patient_id=ward["elsewhere"]
    )
    task["status"] = "completed"
    with server.client(own) as http:
        response = http.put(f"/Task/{task['id']}", json=task)
    assert response.status_code in (403, 422), response.text
    assert fhir.get(f"/Task/{task['id']}").json()["status"] == "requested"
