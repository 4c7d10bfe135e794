"""Over HTTP, a resource missing required elements or holding malformed values is refused
with one OperationOutcome listing every problem, each with its FHIRPath."""

from __future__ import annotations

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def issues(response: httpx.Response) -> dict[str, dict]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return {issue["expression"][0]: issue for issue in body["issue"]}


def test_an_observation_without_status_or_code_is_refused_naming_both(fhir: httpx.Client) -> None:
    found = issues(
        fhir.post("/Observation", json={"resourceType": "Observation"}, headers=FHIR_JSON)
    )
    assert set(found) == {"Observation.status", "Observation.code"}
    assert {i["code"] for i in found.values()} == {"required"}
    assert {i["severity"] for i in found.values()} == {"error"}


def test_an_update_missing_a_required_element_is_refused_and_nothing_changes(
    fhir: httpx.Client,
) -> None:
    good = {
        "resourceType": "MedicationRequest",
        "id": "mr-required",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p-required"},
        "medicationCodeableConcept": {"text": "amoxicillin"},
    }
    patient = {"resourceType": "Patient", "id": "p-required"}
    assert fhir.put("/Patient/p-required", json=patient, headers=FHIR_JSON).status_code in (
        200,
        201,
    )
    assert fhir.put("/MedicationRequest/mr-required", json=good, headers=FHIR_JSON).status_code in (
        200,
        201,
    )
    bad = {k: v for k, v in good.items() if k not in ("intent", "medicationCodeableConcept")}
    found = issues(fhir.put("/MedicationRequest/mr-required", json=bad, headers=FHIR_JSON))
    assert set(found) == {"MedicationRequest.intent", "MedicationRequest.medication"}
    assert fhir.get("/MedicationRequest/mr-required").json()["intent"] == "order"


def test_a_bad_date_is_told_in_words_with_everything_else_wrong(fhir: httpx.Client) -> None:
    found = issues(
        fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "birthDate": "1990-13-01", "gender": "m"},
            headers=FHIR_JSON,
        )
    )
    assert found["Patient.birthDate"]["diagnostics"] == (
        "Patient.birthDate '1990-13-01' is not a valid date: expected YYYY, YYYY-MM or YYYY-MM-DD"
    )
    assert "male, female, other, unknown" in found["Patient.gender"]["diagnostics"]


def test_a_transaction_entry_missing_a_required_element_is_named_by_its_entry(
    fhir: httpx.Client,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Observation", "code": {"text": "pulse"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    found = issues(fhir.post("/", json=bundle, headers=FHIR_JSON))
    assert set(found) == {"Bundle.entry[1].resource.status"}
