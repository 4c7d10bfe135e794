"""Breaking the glass, attacked: one emergency reason opens one patient, every patient a
request touches is named in its audit entry, and a grant never becomes a standing
relationship on its own."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
UNRELATED = [f"stranger-{n}" for n in range(6)]
RELATED = [f"registered-{n}" for n in range(3)]
REASON = {"X-Bevan-Break-Glass": "Unconscious in A&E, no other record available"}


def _patient(id: str, practice: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
        "name": [{"family": id.title()}],
    }


DATA = [
    {
        "resourceType": "Organization",
        "id": "bg-practice-a",
        "identifier": [{"system": ODS, "value": "C81001"}],
    },
    {
        "resourceType": "Organization",
        "id": "bg-practice-b",
        "identifier": [{"system": ODS, "value": "D82002"}],
    },
    *(_patient(p, "bg-practice-b") for p in UNRELATED),
    *(_patient(p, "bg-practice-a") for p in RELATED),
    *(
        {
            "resourceType": "Observation",
            "id": f"pulse-{p}",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{p}"},
        }
        for p in RELATED
    ),
]


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for resource in DATA:
            response = fhir.put(
                f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
            )
            assert response.status_code in (200, 201), response.text
    return server


def clinician(server: RunningServer, subject: str, organisation: str = "C81001") -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        subject, "clinician", organisation=organisation
    )
    return server.client(token)


def batch_reading(*references: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": r}} for r in references],
    }


def last_audited_patients(server: RunningServer, user_id: str) -> set[str]:
    entry = AuditLog(server.store.engine).find(user_id=user_id, limit=1)[0]
    event = orjson.loads(entry.content)
    return {
        e["what"]["reference"].removeprefix("Patient/")
        for e in event["entity"]
        if e.get("role", {}).get("code") == "1"
    }


def test_one_break_glass_request_cannot_open_many_patients(loaded: RunningServer) -> None:
    with clinician(loaded, "sweeper") as fhir:
        bundle = batch_reading(*(f"Patient/{p}" for p in UNRELATED))
        answer = fhir.post("", json=bundle, headers={**FHIR_JSON, **REASON}).json()
        statuses = [e["response"]["status"][:3] for e in answer["entry"]]
        assert statuses == ["200"] + ["403"] * (len(UNRELATED) - 1)
        refusal = answer["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
        assert "one patient" in refusal
        # The first grant stands; the others were never opened.
        assert fhir.get(f"/Patient/{UNRELATED[0]}").status_code == 200
        assert fhir.get(f"/Patient/{UNRELATED[1]}").status_code == 403
    assert {g.patient_id for g in loaded_grants(loaded, "sweeper")} == {UNRELATED[0]}


def loaded_grants(server: RunningServer, user_id: str) -> list[Any]:
    from bevan.store.access import BreakGlassLedger

    return [g for g in BreakGlassLedger(server.store).queue() if g.user_id == user_id]


def test_the_audit_entry_of_a_batch_names_every_patient_it_read(loaded: RunningServer) -> None:
    with clinician(loaded, "batch-reader") as fhir:
        bundle = batch_reading(*(f"Patient/{p}" for p in RELATED))
        answer = fhir.post("", json=bundle, headers=FHIR_JSON).json()
        assert [e["response"]["status"][:3] for e in answer["entry"]] == ["200"] * len(RELATED)
    assert last_audited_patients(loaded, "batch-reader") == set(RELATED)


def test_the_audit_entry_of_a_search_names_every_patient_in_its_results(
    loaded: RunningServer,
) -> None:
    with clinician(loaded, "searcher") as fhir:
        found = fhir.get("/Observation", params={"code:text": "pulse", "_count": 50}).json()
        assert {e["resource"]["id"] for e in found["entry"]} == {f"pulse-{p}" for p in RELATED}
    assert last_audited_patients(loaded, "searcher") == set(RELATED)
