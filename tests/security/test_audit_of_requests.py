"""Every request that reaches the FHIR API, allowed or refused, leaves exactly one audit
entry; the chain verifies; a patient can see who opened their record."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
from sqlalchemy import update

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from bevan.store.schema import audit_event
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def token(server: RunningServer, role: str, **claims: str) -> str:
    return TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-{claims.get('patient_id', 'x')}", role, **claims
    )  # type: ignore[arg-type]


def test_a_scripted_session_leaves_one_entry_per_request_and_the_chain_verifies(
    server: RunningServer,
) -> None:
    log = AuditLog(server.store.engine)
    before = log.count()
    system = {"Authorization": f"Bearer {server.token}", **FHIR_JSON}
    requests = 0
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        http.put(
            "/Organization/audit-practice",
            headers=system,
            json={
                "resourceType": "Organization",
                "id": "audit-practice",
                "identifier": [{"system": ODS, "value": "A99999"}],
            },
        )
        http.put(
            "/Patient/audited",
            headers=system,
            json={
                "resourceType": "Patient",
                "id": "audited",
                "generalPractitioner": [{"reference": "Organization/audit-practice"}],
            },
        )
        requests += 2
        for n in range(10):
            http.get("/Patient/audited", headers=system)
            http.get("/Observation", params={"patient": "audited", "_count": n + 1}, headers=system)
            requests += 2
        http.get("/Patient/audited")  # no token: refused, still audited
        http.get("/Patient/audited", headers={"Authorization": "Bearer forged"})
        requests += 2
        stranger = {"Authorization": f"Bearer {token(server, 'clinician', organisation='Z00000')}"}
        assert http.get("/Patient/audited", headers=stranger).status_code == 403
        assert (
            http.get(
                "/Patient/audited",
                headers={**stranger, "X-Bevan-Break-Glass": "Found collapsed, no records"},
            ).status_code
            == 200
        )
        requests += 2
        http.get("/metadata")  # public, and audited like everything else
        requests += 1
    assert log.count() - before == requests
    assert log.verify() == []
    entries = log.find(limit=requests)
    outcomes = [orjson.loads(e.content)["outcome"] for e in entries]
    assert outcomes.count("4") == 3  # two 401s and one 403
    glass = [e for e in entries if e.break_glass]
    assert len(glass) == 1 and glass[0].patient_id == "audited"
    event = orjson.loads(glass[0].content)
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"


def test_a_patient_sees_who_opened_their_record_and_others_cannot(server: RunningServer) -> None:
    system = {"Authorization": f"Bearer {server.token}", **FHIR_JSON}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        http.put(
            "/Patient/watched", headers=system, json={"resourceType": "Patient", "id": "watched"}
        )
        http.get("/Patient/watched", headers=system)
        own = {"Authorization": f"Bearer {token(server, 'patient', patient_id='watched')}"}
        listing = http.get("/Patient/watched/$audit", headers=own)
        assert listing.status_code == 200
        events = [e["resource"] for e in listing.json()["entry"]]
        assert all(ev["resourceType"] == "AuditEvent" for ev in events)
        readers = {a.get("who", {}).get("display") for ev in events for a in ev["agent"]}
        assert "test-system" in str(readers) or any(
            "test-system" in orjson.dumps(ev).decode() for ev in events
        )
        someone_else = {"Authorization": f"Bearer {token(server, 'patient', patient_id='another')}"}
        assert http.get("/Patient/watched/$audit", headers=someone_else).status_code == 403
        officer = {
            "Authorization": f"Bearer {token(server, 'privacy-officer', organisation='A99999')}"
        }
        assert http.get("/Patient/watched/$audit", headers=officer).status_code == 200


def test_bevan_audit_verify_names_an_altered_entry(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        http.get("/Patient/anyone", headers={"Authorization": f"Bearer {server.token}"})
    url = str(server.store.engine.url.render_as_string(hide_password=False))
    command = [
        sys.executable,
        "-m",
        "bevan.cli",
        "audit",
        "verify",
        "--data-dir",
        str(server.data_dir),
        "--database",
        url,
    ]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    log = AuditLog(server.store.engine)
    victim = log.find(limit=1)[0].seq
    with server.store.engine.begin() as connection:
        connection.execute(
            update(audit_event)
            .where(audit_event.c.seq == victim)
            .values(content='{"resourceType":"AuditEvent"}')
        )
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert str(victim) in result.stdout + result.stderr
