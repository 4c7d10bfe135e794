"""Old versions are judged like the current one: each version by the patients it names,
all of them under the current version's sensitivity labels, and a deleted id is never
brought back as another patient's record (which would hand it the old history)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
RESTRICTED = {
    "security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    ]
}

PEOPLE: list[dict[str, Any]] = [
    {
        "resourceType": "Organization",
        "id": "ov-practice",
        "identifier": [{"system": ODS, "value": "F86006"}],
    },
    {
        "resourceType": "Patient",
        "id": "ov-related",
        "generalPractitioner": [{"reference": "Organization/ov-practice"}],
    },
    {"resourceType": "Patient", "id": "ov-unrelated"},
]


def observation(id: str, patient: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for resource in PEOPLE:
            put(fhir, resource)
        # Recorded plainly, then marked restricted.
        put(fhir, observation("ov-now-restricted", "ov-related", "sexual health screen"))
        put(
            fhir,
            observation("ov-now-restricted", "ov-related", "sexual health screen", meta=RESTRICTED),
        )
        # Filed against the wrong patient, refiled, then amended.
        put(fhir, observation("ov-refiled", "ov-unrelated", "cholesterol of the other patient"))
        put(fhir, observation("ov-refiled", "ov-related", "cholesterol"))
        put(fhir, observation("ov-refiled", "ov-related", "cholesterol (amended)"))
        # Another patient's record, deleted.
        put(fhir, observation("ov-deleted", "ov-unrelated", "psychiatric assessment"))
        assert fhir.delete("/Observation/ov-deleted").status_code == 204
    return server


def put(fhir: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    response = fhir.put(
        f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
    )
    assert response.status_code in (200, 201), response.text
    return response


def client_for(server: RunningServer, role: str) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-old-versions", role, organisation="F86006"
    )
    return server.client(token)


def test_a_nurse_cannot_vread_the_version_before_a_record_was_restricted(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "nurse") as fhir:
        assert fhir.get("/Observation/ov-now-restricted").status_code == 403
        response = fhir.get("/Observation/ov-now-restricted/_history/1")
    assert response.status_code == 403, response.text
    assert "sexual health" not in response.text


def test_a_clinician_may_still_vread_a_restricted_record_they_may_open(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        assert fhir.get("/Observation/ov-now-restricted/_history/1").status_code == 200


def test_history_leaves_out_the_versions_filed_against_another_patient(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        response = fhir.get("/Observation/ov-refiled/_history")
    assert response.status_code == 200, response.text
    bundle = response.json()
    versions = [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
    assert versions == ["3", "2"]
    assert bundle["total"] == 2
    assert "ov-unrelated" not in response.text and "other patient" not in response.text


def test_vread_of_the_version_filed_against_another_patient_is_refused(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        response = fhir.get("/Observation/ov-refiled/_history/1")
    assert response.status_code == 403
    assert "ov-unrelated" not in response.text


def test_a_deleted_id_cannot_be_taken_over_for_another_patient(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as fhir:
        response = fhir.put(
            "/Observation/ov-deleted",
            json=observation("ov-deleted", "ov-related", "blood pressure"),
            headers=FHIR_JSON,
        )
        assert response.status_code == 409, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == "conflict" and "new id" in issue["diagnostics"]
        assert "ov-unrelated" not in response.text
        assert fhir.get("/Observation/ov-deleted/_history/1").status_code == 403
    with loaded.client() as system:
        history = system.get("/Observation/ov-deleted/_history").json()
    assert history["total"] == 2  # nothing was written


def test_a_deleted_id_may_be_recreated_for_the_same_patient(loaded: RunningServer) -> None:
    with loaded.client() as system:
        put(system, observation("ov-same", "ov-related", "weight"))
        assert system.delete("/Observation/ov-same").status_code == 204
    with client_for(loaded, "clinician") as fhir:
        response = fhir.put(
            "/Observation/ov-same",
            json=observation("ov-same", "ov-related", "weight (re-entered)"),
            headers=FHIR_JSON,
        )
    assert response.status_code == 201, response.text


def test_a_batch_cannot_vread_the_version_before_a_record_was_restricted(
    loaded: RunningServer,
) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation/ov-now-restricted/_history/1"}}
        ],
    }
    with client_for(loaded, "nurse") as fhir:
        response = fhir.post("/", json=batch, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"].startswith("403")
    assert "sexual health" not in response.text
