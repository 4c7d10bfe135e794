"""Patient/$everything's parameters: start and end (dates of care), _since, _type and
_count, by GET or by POST with a Parameters body; unknown ones reported as search does."""

from __future__ import annotations

import httpx
import pytest

from tests.api.operations.people import FHIR_JSON, client_for, observation, put_all
from tests.conftest import RunningServer
from tests.people import PEOPLE

READINGS = [
    observation("jan", "related", "8867-4", "2026-01-10T09:00:00Z", 70),
    observation("feb", "related", "8867-4", "2026-02-10T09:00:00Z", 72),
    observation("mar", "related", "8867-4", "2026-03-10T09:00:00Z", 74),
]
CONDITION = {
    "resourceType": "Condition",
    "id": "asthma",
    "subject": {"reference": "Patient/related"},
    "code": {"text": "asthma"},
    "onsetDateTime": "2026-02-01",
}


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, [*PEOPLE, *READINGS, CONDITION])
    return server


def found(bundle: dict) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    }


def everything(fhir: httpx.Client, **params: str) -> dict:
    response = fhir.get("/Patient/related/$everything", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_start_and_end_keep_care_in_that_period(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = everything(fhir, start="2026-02-01", end="2026-02-28")
    assert found(bundle) >= {"Patient/related", "Observation/feb", "Condition/asthma"}
    assert not found(bundle) & {"Observation/jan", "Observation/mar"}


def test_start_alone_keeps_what_came_after(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = everything(fhir, start="2026-03")
    assert "Observation/mar" in found(bundle)
    assert not found(bundle) & {"Observation/jan", "Observation/feb", "Condition/asthma"}


def test_a_bad_start_is_refused_saying_which(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        response = fhir.get("/Patient/related/$everything", params={"end": "soon"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["end"]


def test_type_and_count_page_the_record(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        first = everything(fhir, _type="Observation", _count="2")
        assert len(first["entry"]) == 2 and first["total"] == 3
        assert {r.split("/")[0] for r in found(first)} == {"Observation"}
        following = next(link["url"] for link in first["link"] if link["relation"] == "next")
        second = fhir.get(following).json()
    assert len(found(first) | found(second)) == 3


def test_since_keeps_what_changed_since(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        assert found(everything(fhir, _since="2999-01-01")) == set()


def test_post_takes_the_parameters_in_a_parameters_body(loaded: RunningServer) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation,Condition"},
            {"name": "start", "valueDate": "2026-02-01"},
            {"name": "end", "valueDate": "2026-02-28"},
        ],
    }
    with loaded.client() as fhir:
        response = fhir.post("/Patient/related/$everything", json=body, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert found(response.json()) == {"Observation/feb", "Condition/asthma"}


def test_unknown_parameters_are_reported_as_search_reports_them(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = everything(fhir, colour="red")
        strict = fhir.get(
            "/Patient/related/$everything",
            params={"colour": "red"},
            headers={"Prefer": "handling=strict"},
        )
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    assert outcomes[0]["resource"]["issue"][0]["severity"] == "warning"
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["code"] == "not-supported"


def test_a_nurse_posting_for_an_unrelated_patient_learns_nothing(loaded: RunningServer) -> None:
    with client_for(loaded, "nurse") as nurse:
        response = nurse.post(
            "/Patient/unrelated/$everything",
            json={"resourceType": "Parameters", "parameter": []},
            headers=FHIR_JSON,
        )
    assert response.status_code == 403
    assert "Unrelated" not in response.text
