"""References to this server must resolve: a write naming a resource that does not exist
is refused (422), a resource others still reference is not deleted (409) unless a system
account cascades, and an operator can switch the rule off for partial data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bevan.config import Settings
from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer, database_url, start_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def observation(subject: str, **more: object) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": subject},
        **more,
    }


def new_patient(fhir: httpx.Client, **more: object) -> str:
    response = fhir.post("/Patient", json={"resourceType": "Patient", **more}, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_creating_an_observation_for_a_patient_that_does_not_exist_is_refused(
    fhir: httpx.Client,
) -> None:
    response = fhir.post("/Observation", json=observation("Patient/nobody"), headers=FHIR_JSON)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Observation.subject.reference"]
    assert "'Patient/nobody'" in issue["diagnostics"]
    assert issue["code"] == "not-found"


def test_every_missing_reference_is_named_in_one_answer(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    body = observation(
        f"Patient/{patient}",
        performer=[{"reference": "Practitioner/gone"}, {"reference": "Organization/absent"}],
        encounter={"reference": "Encounter/never"},
    )
    response = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 422
    expressions = sorted(i["expression"][0] for i in response.json()["issue"])
    assert expressions == [
        "Observation.encounter.reference",
        "Observation.performer[0].reference",
        "Observation.performer[1].reference",
    ]


def test_references_that_resolve_or_are_not_ours_are_accepted(
    fhir: httpx.Client, server: RunningServer
) -> None:
    patient = new_patient(fhir)
    body = observation(
        f"{server.base_url}/Patient/{patient}",
        performer=[
            {"reference": "https://other.example.org/fhir/Practitioner/elsewhere"},
            {"reference": "#device-1"},
            {"identifier": {"system": ODS, "value": "A81001"}},
        ],
        contained=[{"resourceType": "Device", "id": "device-1"}],
        derivedFrom=[{"reference": f"Patient/{patient}/_history/1"}],
    )
    response = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text


def test_an_absolute_reference_under_this_server_must_resolve(
    fhir: httpx.Client, server: RunningServer
) -> None:
    body = observation(f"{server.base_url}/Patient/not-here")
    response = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 422


def test_a_reference_to_a_deleted_resource_is_refused(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    assert fhir.delete(f"/Patient/{patient}").status_code in (200, 204)
    response = fhir.post("/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON)
    assert response.status_code == 422


def test_update_and_patch_are_checked_too(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    created = fhir.post(
        "/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON
    ).json()
    moved = {**created, "subject": {"reference": "Patient/missing"}}
    assert fhir.put(f"/Observation/{created['id']}", json=moved, headers=FHIR_JSON).status_code == (
        422
    )
    patched = fhir.patch(
        f"/Observation/{created['id']}",
        json=[{"op": "replace", "path": "/subject/reference", "value": "Patient/missing"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 422
    current = fhir.get(f"/Observation/{created['id']}").json()
    assert current["subject"]["reference"] == f"Patient/{patient}"


def test_a_transaction_may_refer_to_an_entry_written_after_it(fhir: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8f7f3f4e-0000-4000-8000-000000000002",
                "resource": observation("urn:uuid:8f7f3f4e-0000-4000-8000-000000000001"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:8f7f3f4e-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text


def test_a_transaction_with_a_dangling_reference_is_refused_whole(fhir: httpx.Client) -> None:
    before = fhir.get("/Patient", params={"_summary": "count"}).json()["total"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": observation("Patient/nowhere"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [
        "Bundle.entry[1].resource.subject.reference"
    ]
    assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == before


def test_deleting_a_patient_others_refer_to_is_refused_saying_how_many(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    for _ in range(2):
        fhir.post("/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON)
    response = fhir.delete(f"/Patient/{patient}")
    assert response.status_code == 409
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "2 other resources refer to it" in diagnostics
    assert "Observation/" not in diagnostics
    assert fhir.get(f"/Patient/{patient}").status_code == 200


def test_a_transaction_may_delete_a_patient_with_what_refers_to_it(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    obs = fhir.post(
        "/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON
    ).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": f"Patient/{patient}"}},
            {"request": {"method": "DELETE", "url": f"Observation/{obs['id']}"}},
        ],
    }
    assert fhir.post("/", json=bundle, headers=FHIR_JSON).status_code == 200
    assert fhir.get(f"/Patient/{patient}").status_code == 410


def test_a_system_account_may_cascade_a_delete_to_everything_referring(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    obs = fhir.post(
        "/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON
    ).json()
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "panel"},
        "result": [{"reference": f"Observation/{obs['id']}"}],
    }
    made = fhir.post("/DiagnosticReport", json=report, headers=FHIR_JSON).json()
    assert fhir.delete(f"/Patient/{patient}", params={"_cascade": "delete"}).status_code == 204
    assert fhir.get(f"/Patient/{patient}").status_code == 410
    assert fhir.get(f"/Observation/{obs['id']}").status_code == 410
    assert fhir.get(f"/DiagnosticReport/{made['id']}").status_code == 410


def test_only_a_system_account_may_cascade(server: RunningServer, fhir: httpx.Client) -> None:
    organisation = {
        "resourceType": "Organization",
        "id": "ri-practice",
        "identifier": [{"system": ODS, "value": "A81001"}],
    }
    fhir.put("/Organization/ri-practice", json=organisation, headers=FHIR_JSON)
    patient = new_patient(fhir, generalPractitioner=[{"reference": "Organization/ri-practice"}])
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "clinician-user", "clinician", organisation="A81001"
    )
    with server.client(token) as clinician:
        response = clinician.delete(f"/Patient/{patient}", params={"_cascade": "delete"})
    assert response.status_code == 403
    assert fhir.get(f"/Patient/{patient}").status_code == 200


@pytest.fixture
def lenient(backend: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """A server whose operator switched referential integrity off."""
    for server in start_server(
        database_url(backend, tmp_path), tmp_path, referential_integrity=False
    ):
        with server.client() as client:
            yield client


def test_an_operator_can_switch_the_rule_off_for_partial_data(lenient: httpx.Client) -> None:
    response = lenient.post("/Observation", json=observation("Patient/later"), headers=FHIR_JSON)
    assert response.status_code == 201
    patient = lenient.post("/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()[
        "id"
    ]
    lenient.post("/Observation", json=observation(f"Patient/{patient}"), headers=FHIR_JSON)
    assert lenient.delete(f"/Patient/{patient}").status_code == 204


def test_the_switch_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEVAN_REFERENTIAL_INTEGRITY", "off")
    assert Settings.from_environment().referential_integrity is False
    monkeypatch.setenv("BEVAN_REFERENTIAL_INTEGRITY", "on")
    assert Settings.from_environment().referential_integrity is True
    monkeypatch.delenv("BEVAN_REFERENTIAL_INTEGRITY")
    assert Settings.from_environment().referential_integrity is True
