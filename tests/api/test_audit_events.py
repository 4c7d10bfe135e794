"""AuditEvent through the FHIR API: the audit trail is its only source, privacy officers
and system accounts search and read it, and a patient's access log lists every access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PLANTED = "planted-by-an-attacker"
A_FORGED_EVENT = {
    "resourceType": "AuditEvent",
    "id": "1",
    "type": {"code": PLANTED},
    "recorded": "2026-01-01T00:00:00Z",
    "agent": [{"requestor": True, "who": {"display": PLANTED}}],
    "source": {"observer": {"display": PLANTED}},
}


def client_as(server: RunningServer, role: str, **claims: str) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(f"{role}-user", role, **claims)  # type: ignore[arg-type]
    return server.client(token)


@pytest.fixture(scope="module")
def watched(server: RunningServer) -> str:
    """A patient with an Observation, whose record the tests then open in various ways."""
    with server.client() as fhir:
        for resource in (
            {"resourceType": "Patient", "id": "watched-a", "name": [{"family": "Watched"}]},
            {"resourceType": "Patient", "id": "watched-b", "name": [{"family": "Bystander"}]},
            {
                "resourceType": "Observation",
                "id": "watched-obs",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/watched-a"},
            },
            {
                "resourceType": "Observation",
                "id": "bystander-obs",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/watched-b"},
            },
        ):
            response = fhir.put(
                f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
            )
            assert response.status_code in (200, 201), response.text
    return "watched-a"


def test_nobody_can_plant_change_or_remove_an_audit_event(server: RunningServer) -> None:
    log = AuditLog(server.store.engine)
    with server.client() as system:  # a system account, allowed everything else
        attempts = [
            system.post("/AuditEvent", json=A_FORGED_EVENT, headers=FHIR_JSON),
            system.put("/AuditEvent/1", json=A_FORGED_EVENT, headers=FHIR_JSON),
            system.put("/AuditEvent?type=x", json=A_FORGED_EVENT, headers=FHIR_JSON),
            system.patch(
                "/AuditEvent/1",
                content=b'[{"op":"replace","path":"/outcome","value":"0"}]',
                headers={"Content-Type": "application/json-patch+json"},
            ),
            system.delete("/AuditEvent/1"),
            system.delete("/AuditEvent?outcome=4"),
        ]
        for attempt in attempts:
            assert attempt.status_code == 405, attempt.text
            assert attempt.json()["resourceType"] == "OperationOutcome"
        for bundle_type in ("transaction", "batch"):
            answer = system.post(
                "/",
                json={
                    "resourceType": "Bundle",
                    "type": bundle_type,
                    "entry": [
                        {
                            "resource": A_FORGED_EVENT,
                            "request": {"method": "PUT", "url": "AuditEvent/1"},
                        },
                        {"request": {"method": "DELETE", "url": "AuditEvent/2"}},
                    ],
                },
                headers=FHIR_JSON,
            )
            if bundle_type == "transaction":
                assert answer.status_code >= 400, answer.text
            else:
                statuses = [e["response"]["status"] for e in answer.json()["entry"]]
                assert all(s.startswith("405") for s in statuses), statuses
        found = system.get("/AuditEvent", params={"_count": 1000}).json()
    assert PLANTED not in orjson.dumps(found).decode()
    assert log.verify() == []


def test_a_privacy_officer_searches_the_trail_by_patient_agent_date_and_outcome(
    server: RunningServer, watched: str
) -> None:
    started = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with server.client() as system:
        assert system.get(f"/Patient/{watched}").status_code == 200
    with client_as(server, "clinician", organisation="Z99999") as stranger:
        assert stranger.get(f"/Patient/{watched}").status_code == 403
    with client_as(server, "privacy-officer") as officer:
        about = officer.get("/AuditEvent", params={"patient": watched, "date": f"ge{started}"})
        assert about.status_code == 200, about.text
        events = [e["resource"] for e in about.json()["entry"]]
        users = [a["who"].get("display") for ev in events for a in ev["agent"] if a["requestor"]]
        assert "test-system" in users and "clinician-user" in users
        refused = officer.get(
            "/AuditEvent", params={"patient": f"Patient/{watched}", "outcome": "4"}
        ).json()
        assert {ev["resource"]["outcome"] for ev in refused["entry"]} == {"4"}
        by_agent = officer.get(
            "/AuditEvent", params={"agent": "clinician-user", "subtype": "read"}
        ).json()
        assert by_agent["entry"] and all(
            "clinician-user" in orjson.dumps(e["resource"]).decode() for e in by_agent["entry"]
        )
        future = officer.get("/AuditEvent", params={"date": "gt2100-01-01"}).json()
        assert future.get("entry", []) == []
        first = officer.get("/AuditEvent", params={"patient": watched, "_count": 1}).json()
        assert len(first["entry"]) == 1
        following = [link["url"] for link in first["link"] if link["relation"] == "next"]
        second = officer.get(following[0]).json()
        assert second["entry"][0]["resource"]["id"] != first["entry"][0]["resource"]["id"]
        one = first["entry"][0]["resource"]
        read = officer.get(f"/AuditEvent/{one['id']}")
        assert read.status_code == 200 and read.json() == one
        assert officer.get("/AuditEvent", params={"nonsense": "1"}).status_code == 400


@pytest.mark.parametrize(
    ("role", "claims"),
    [
        ("clinician", {"organisation": "A81001"}),
        ("nurse", {"organisation": "A81001"}),
        ("receptionist", {"organisation": "A81001"}),
        ("analyst", {}),
        ("patient", {"patient_id": "watched-a"}),
    ],
)
def test_only_privacy_officers_and_system_accounts_see_the_trail(
    server: RunningServer, watched: str, role: str, claims: dict[str, str]
) -> None:
    with client_as(server, role, **claims) as someone:
        assert someone.get("/AuditEvent").status_code == 403
        assert someone.get("/AuditEvent", params={"patient": watched}).status_code == 403
        assert someone.get("/AuditEvent/1").status_code == 403


def test_a_patients_access_log_lists_searches_batches_and_system_reads(
    server: RunningServer, watched: str
) -> None:
    with server.client() as system:
        # None of these names the patient in its URL.
        assert system.get("/Observation/watched-obs").status_code == 200
        assert system.get("/Observation", params={"code": "8867-4"}).status_code == 200
        batch = system.post(
            "/",
            json={
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": "Observation/watched-obs"}}],
            },
            headers=FHIR_JSON,
        )
        assert batch.status_code == 200, batch.text
        searched = system.post(
            "/Observation/_search",
            content=b"code=8867-4",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert searched.status_code == 200
    with client_as(server, "privacy-officer") as officer:
        log = officer.get(f"/Patient/{watched}/$audit", params={"_count": 50}).json()
    subtypes = [e["resource"]["subtype"][0]["code"] for e in log["entry"]]
    assert subtypes[:4] == ["search-type", "transaction", "search-type", "read"]
    with client_as(server, "patient", patient_id=watched) as patient:
        own = patient.get(f"/Patient/{watched}/$audit", params={"_count": 50}).json()
    shown = orjson.dumps(own).decode()
    assert "watched-b" not in shown  # the search also touched a bystander: not named to them
    assert len(own["entry"]) >= 4
