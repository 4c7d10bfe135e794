"""What the patient app and home devices may claim, attacked: a patient forging a
laboratory result, writing narrative or labels, a device posing as another device."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for resource in (
            {"resourceType": "Patient", "id": "at-home", "name": [{"family": "Home"}]},
            {"resourceType": "Patient", "id": "next-door", "name": [{"family": "Door"}]},
            {"resourceType": "Practitioner", "id": "dr-real", "name": [{"family": "Real"}]},
            {"resourceType": "Device", "id": "cuff-1", "patient": {"reference": "Patient/at-home"}},
            {"resourceType": "Device", "id": "cuff-2"},
        ):
            response = fhir.put(
                f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
            )
            assert response.status_code in (200, 201), response.text
    return server


def as_patient(server: RunningServer) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "patient-at-home", "patient", patient_id="at-home"
    )
    return server.client(token)


def as_device(server: RunningServer) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "cuff-1-account", "device", patient_id="at-home", device_id="cuff-1"
    )
    return server.client(token)


def reading(category: str = "vital-signs", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"text": "blood pressure"},
        "subject": {"reference": "Patient/at-home"},
        **extra,
    }


def refused_at(response: httpx.Response) -> list[str]:
    assert response.status_code in (403, 422), response.text
    return [e for i in response.json()["issue"] for e in i.get("expression", [])]


def test_a_patient_records_a_home_reading_performed_by_themselves(loaded: RunningServer) -> None:
    body = reading(performer=[{"reference": "Patient/at-home"}])
    with as_patient(loaded) as fhir:
        assert fhir.post("/Observation", json=body, headers=FHIR_JSON).status_code == 201


def test_a_patient_cannot_post_a_laboratory_result(loaded: RunningServer) -> None:
    body = reading("laboratory", code={"text": "HbA1c"}, valueString="normal")
    with as_patient(loaded) as fhir:
        answer = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert answer.status_code == 422
    assert refused_at(answer) == ["Observation.category[0].coding[0]"]


def test_a_patient_cannot_name_a_practitioner_as_performer(loaded: RunningServer) -> None:
    body = reading(performer=[{"reference": "Practitioner/dr-real"}])
    with as_patient(loaded) as fhir:
        answer = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert answer.status_code == 422
    assert refused_at(answer) == ["Observation.performer[0]"]


@pytest.mark.parametrize(
    ("extra", "place"),
    [
        (
            {
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                    '<a href="javascript:alert(1)">Your results</a></div>',
                }
            },
            "Observation.text",
        ),
        ({"meta": {"tag": [{"system": "urn:x", "code": "reviewed"}]}}, "Observation.meta.tag"),
        (
            {
                "meta": {
                    "security": [
                        {
                            "system": "https://fhir.bevan.nhs.uk/CodeSystem/access",
                            "code": "break-glass-unconfirmed",
                        }
                    ]
                }
            },
            "Observation.meta.security",
        ),
    ],
)
def test_a_patient_cannot_write_narrative_or_labels(
    loaded: RunningServer, extra: dict[str, Any], place: str
) -> None:
    with as_patient(loaded) as fhir:
        answer = fhir.post("/Observation", json=reading(**extra), headers=FHIR_JSON)
    assert answer.status_code == 422
    assert refused_at(answer) == [place]


def test_a_patient_cannot_rewrite_the_narrative_of_their_record(loaded: RunningServer) -> None:
    with as_patient(loaded) as fhir:
        current = fhir.get("/Patient/at-home").json()
        narrated = {
            **current,
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">Allergies: none</div>',
            },
        }
        answer = fhir.put("/Patient/at-home", json=narrated, headers=FHIR_JSON)
    assert answer.status_code == 422
    assert refused_at(answer) == ["Patient.text"]


def test_a_device_signs_its_readings_with_its_own_identity(loaded: RunningServer) -> None:
    with as_device(loaded) as fhir:
        answer = fhir.post("/Observation", json=reading(), headers=FHIR_JSON)
        assert answer.status_code == 201, answer.text
    assert answer.json()["device"] == {"reference": "Device/cuff-1"}


def test_a_device_cannot_claim_to_be_another_device(loaded: RunningServer) -> None:
    body = reading(device={"reference": "Device/cuff-2"})
    with as_device(loaded) as fhir:
        answer = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert answer.status_code == 403
    assert refused_at(answer) == ["Observation.device"]


def test_a_device_reading_must_be_about_its_own_patient(loaded: RunningServer) -> None:
    body = reading(performer=[{"reference": "Patient/at-home"}])
    del body["subject"]
    with as_device(loaded) as fhir:
        answer = fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert answer.status_code == 403
    assert refused_at(answer) == ["Observation.subject"]
