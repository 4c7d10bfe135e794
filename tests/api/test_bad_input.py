"""Every bad input gets a 4xx OperationOutcome saying what, where and why; nothing is lost."""

from __future__ import annotations

import httpx
import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def outcome(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body


def patient_count(fhir: httpx.Client) -> int:
    return int(fhir.get("/Patient", params={"_summary": "count", "_count": 0}).json()["total"])


def test_malformed_json_names_line_and_column(fhir: httpx.Client) -> None:
    before = patient_count(fhir)
    body = outcome(
        fhir.post(
            "/Patient", content=b'{"resourceType": "Patient",\n "name": [}', headers=FHIR_JSON
        ),
        400,
    )
    assert "line 2" in body["issue"][0]["diagnostics"]
    assert patient_count(fhir) == before


def test_missing_resource_type(fhir: httpx.Client) -> None:
    body = outcome(fhir.post("/Patient", json={"name": [{"family": "X"}]}, headers=FHIR_JSON), 400)
    assert body["issue"][0]["expression"] == ["resourceType"]


def test_resource_type_that_differs_from_the_url(fhir: httpx.Client) -> None:
    body = outcome(
        fhir.post("/Patient", json={"resourceType": "Observation"}, headers=FHIR_JSON), 400
    )
    assert "does not match" in body["issue"][0]["diagnostics"]


def test_unknown_resource_type_in_the_url(fhir: httpx.Client) -> None:
    outcome(fhir.post("/Spaceship", json={"resourceType": "Spaceship"}, headers=FHIR_JSON), 404)
    outcome(fhir.get("/Spaceship/1"), 404)


def test_unknown_resource_type_in_the_body(fhir: httpx.Client) -> None:
    body = outcome(
        fhir.put("/Patient/x1", json={"resourceType": "Spaceship", "id": "x1"}, headers=FHIR_JSON),
        400,
    )
    assert body["issue"][0]["expression"] == ["resourceType"]


def test_body_id_that_differs_from_the_url(fhir: httpx.Client) -> None:
    body = outcome(
        fhir.put("/Patient/abc", json={"resourceType": "Patient", "id": "xyz"}, headers=FHIR_JSON),
        400,
    )
    assert body["issue"][0]["expression"] == ["Patient.id"]
    assert fhir.get("/Patient/abc").status_code == 404


def test_update_without_a_body_id(fhir: httpx.Client) -> None:
    outcome(fhir.put("/Patient/abc", json={"resourceType": "Patient"}, headers=FHIR_JSON), 400)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("9434765918", "check digit"),  # wrong check digit
        ("123456789", "10 digits"),  # too short
        ("943 476 5919", "10 digits"),  # spaces
        ("9999999990", "check digit"),
        ("1000000010", "check digit of 10"),  # first nine give check digit 10: never valid
    ],
)
def test_invalid_nhs_number_is_refused_with_its_place(
    fhir: httpx.Client, value: str, why: str
) -> None:
    before = patient_count(fhir)
    response = fhir.post(
        "/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": NHS, "value": value}]},
        headers=FHIR_JSON,
    )
    body = outcome(response, 422)
    assert why in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"] == ["Patient.identifier[0].value"]
    assert patient_count(fhir) == before


def test_schema_error_names_the_element(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient", json={"resourceType": "Patient", "birthDate": "05/07/1948"}, headers=FHIR_JSON
    )
    body = outcome(response, 400)
    assert body["issue"][0]["expression"] == ["Patient.birthDate"]


def test_unknown_element_is_refused(fhir: httpx.Client) -> None:
    body = outcome(
        fhir.post(
            "/Patient", json={"resourceType": "Patient", "nickname": "Nye"}, headers=FHIR_JSON
        ),
        400,
    )
    assert "nickname" in body["issue"][0]["diagnostics"]


def test_xml_body_is_unsupported_media_type(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient",
        content=b"<Patient xmlns='http://hl7.org/fhir'/>",
        headers={"Content-Type": "application/fhir+xml"},
    )
    outcome(response, 415)


def test_asking_for_xml_is_not_acceptable(fhir: httpx.Client) -> None:
    outcome(fhir.get("/Patient", headers={"Accept": "application/fhir+xml"}), 406)
    outcome(fhir.get("/Patient", params={"_format": "xml"}), 406)


def test_an_oversized_body_is_refused_with_413(fhir: httpx.Client) -> None:
    huge = (
        b'{"resourceType":"Patient","text":{"status":"generated","div":"'
        + b"x" * (60 * 1024 * 1024)
        + b'"}}'
    )
    outcome(fhir.post("/Patient", content=huge, headers=FHIR_JSON), 413)


def test_an_empty_body_is_refused(fhir: httpx.Client) -> None:
    outcome(fhir.post("/Patient", content=b"", headers=FHIR_JSON), 400)


def test_a_json_array_is_not_a_resource(fhir: httpx.Client) -> None:
    outcome(fhir.post("/Patient", json=[1, 2], headers=FHIR_JSON), 400)


def test_an_invalid_id_in_the_url(fhir: httpx.Client) -> None:
    outcome(fhir.get("/Patient/" + "x" * 65), 400)
    outcome(
        fhir.put(
            "/Patient/bad_id", json={"resourceType": "Patient", "id": "bad_id"}, headers=FHIR_JSON
        ),
        400,
    )


def test_bad_if_match_header(fhir: httpx.Client) -> None:
    outcome(
        fhir.put(
            "/Patient/p1",
            json={"resourceType": "Patient", "id": "p1"},
            headers={**FHIR_JSON, "If-Match": "yesterday"},
        ),
        400,
    )


def test_a_bad_search_value_is_400_and_strict_handling_refuses_unknown_parameters(
    fhir: httpx.Client,
) -> None:
    outcome(fhir.get("/Patient", params={"_lastUpdated": "gtyesterday"}), 400)
    outcome(fhir.get("/Patient", params={"_count": "many"}), 400)
    body = outcome(
        fhir.get("/Patient", params={"shoe-size": "9"}, headers={"Prefer": "handling=strict"}), 400
    )
    assert body["issue"][0]["expression"] == ["Patient?shoe-size"]


def test_unknown_parameters_are_ignored_and_reported_when_lenient(fhir: httpx.Client) -> None:
    response = fhir.get("/Patient", params={"shoe-size": "9", "_count": "1"})
    assert response.status_code == 200
    bundle = response.json()
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "shoe-size" not in self_link
    outcomes = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert "shoe-size" in outcomes[0]["resource"]["issue"][0]["diagnostics"]


def test_a_bad_patch_document(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()
    patch_json = {"Content-Type": "application/json-patch+json"}
    outcome(fhir.patch(f"/Patient/{created['id']}", json={"op": "add"}, headers=patch_json), 400)
    outcome(
        fhir.patch(
            f"/Patient/{created['id']}",
            json=[{"op": "remove", "path": "/nothing"}],
            headers=patch_json,
        ),
        400,
    )
    outcome(
        fhir.patch(
            f"/Patient/{created['id']}",
            json=[{"op": "replace", "path": "/id", "value": "other"}],
            headers=patch_json,
        ),
        400,
    )
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_unknown_route_and_wrong_method_are_outcomes(fhir: httpx.Client) -> None:
    outcome(fhir.get("/Patient/a/b/c/d/e"), 404)
    outcome(fhir.post("/Patient/abc", json={}, headers=FHIR_JSON), 405)
