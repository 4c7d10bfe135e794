"""$validate: every problem in one OperationOutcome, nothing stored, and access only to
what the caller may read."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhirclient import client as fhirclient
from fhirpy import SyncFHIRClient

from tests.api.operations.people import FHIR_JSON, client_for, put_all
from tests.conftest import RunningServer
from tests.people import PEOPLE

NHS = "https://fhir.nhs.uk/Id/nhs-number"

BROKEN_OBSERVATION = {
    "resourceType": "Observation",
    "status": "finished",
    "code": {"text": "pulse"},
    "effectiveDateTime": "yesterday",
    "colour": "red",
}


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, PEOPLE)
    return server


def expressions(outcome: dict) -> set[str]:
    return {e for issue in outcome["issue"] for e in issue.get("expression", [])}


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def test_every_problem_is_listed_not_only_the_first(fhir: httpx.Client) -> None:
    response = fhir.post("/Observation/$validate", json=BROKEN_OBSERVATION, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(errors(outcome)) >= 3
    assert {"Observation.status", "Observation.effectiveDateTime"} <= expressions(outcome)
    assert any("colour" in issue["diagnostics"] for issue in errors(outcome))


def test_structure_and_nhs_number_problems_are_reported_together(fhir: httpx.Client) -> None:
    patient = {
        "resourceType": "Patient",
        "gender": "somewhere",
        "identifier": [{"system": NHS, "value": "9990000068"}],  # a wrong check digit
    }
    outcome = fhir.post("/Patient/$validate", json=patient, headers=FHIR_JSON).json()
    assert {"Patient.gender", "Patient.identifier[0].value"} <= expressions(outcome)


def test_a_valid_resource_passes_and_nothing_is_stored(fhir: httpx.Client) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:validate", "value": "never-stored"}],
        "name": [{"family": "Valid"}],
    }
    response = fhir.post("/Patient/$validate", json=patient, headers=FHIR_JSON)
    assert response.status_code == 200
    assert errors(response.json()) == []
    assert response.json()["issue"][0]["severity"] == "information"
    found = fhir.get("/Patient", params={"identifier": "urn:test:validate|never-stored"}).json()
    assert found["total"] == 0


def test_a_parameters_body_carries_the_resource_mode_and_profile(fhir: httpx.Client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": BROKEN_OBSERVATION},
            {"name": "mode", "valueCode": "create"},
            {"name": "profile", "valueUri": "https://example.org/StructureDefinition/Unknown"},
        ],
    }
    outcome = fhir.post("/Observation/$validate", json=body, headers=FHIR_JSON).json()
    assert "Observation.status" in expressions(outcome)
    warnings = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert warnings and "profile" in warnings[0]["diagnostics"]


def test_an_unknown_mode_is_refused(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient/$validate", params={"mode": "guess"}, json=PEOPLE[2], headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["mode"]


def test_get_on_an_instance_validates_the_stored_resource(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        response = fhir.get("/Patient/related/$validate")
    assert response.status_code == 200, response.text
    assert errors(response.json()) == []


def test_mode_update_checks_the_id_against_the_instance(loaded: RunningServer) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": "update"},
            {"name": "resource", "resource": {**PEOPLE[2], "id": "someone-else"}},
        ],
    }
    with loaded.client() as fhir:
        outcome = fhir.post("/Patient/related/$validate", json=body, headers=FHIR_JSON).json()
        assert "Patient.id" in expressions(outcome)
        assert errors(outcome)
        stored = fhir.get("/Patient/related").json()
    assert stored["meta"]["versionId"] == "1"  # validating an update stores nothing


def test_mode_delete_needs_a_resource_that_exists(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        assert fhir.get("/Patient/nobody/$validate", params={"mode": "delete"}).status_code == 404
        ok = fhir.get("/Patient/related/$validate", params={"mode": "delete"})
        assert ok.status_code == 200 and errors(ok.json()) == []
        assert fhir.get("/Patient/related").status_code == 200


@pytest.fixture
def nurse(loaded: RunningServer) -> Iterator[httpx.Client]:
    with client_for(loaded, "nurse") as fhir:
        yield fhir


@pytest.mark.parametrize("mode", ["update", "delete", None])
def test_a_nurse_learns_nothing_of_an_unrelated_patient_through_validate(
    nurse: httpx.Client, mode: str | None
) -> None:
    params = {"mode": mode} if mode else {}
    for target in ("unrelated", "sensitive"):
        response = nurse.get(f"/Patient/{target}/$validate", params=params)
        assert response.status_code == 403, response.text
        assert "Unrelated" not in response.text and "Sensitive" not in response.text


def test_validation_needs_no_write_access(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        response = analyst.post("/Patient/$validate", json=PEOPLE[2], headers=FHIR_JSON)
        assert response.status_code == 200 and errors(response.json()) == []
        assert analyst.get("/Patient/related/$validate").status_code == 403


def test_fhirpy_and_fhirclient_validate_through_the_operation(loaded: RunningServer) -> None:
    py = SyncFHIRClient(loaded.base_url, authorization=f"Bearer {loaded.token}")
    assert py.resource("Patient", name=[{"family": "Valid"}]).is_valid()
    assert not py.resource("Observation", **BROKEN_OBSERVATION).is_valid()
    smart = fhirclient.FHIRClient(settings={"app_id": "bevan-test", "api_base": loaded.base_url})
    smart.server.session.headers["Authorization"] = f"Bearer {loaded.token}"
    answer = smart.server.post_json("Observation/$validate", BROKEN_OBSERVATION).json()
    assert "Observation.status" in expressions(answer)
