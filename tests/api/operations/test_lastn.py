"""Observation/$lastn: the latest values of each code per patient, within exactly what
the caller may see."""

from __future__ import annotations

import httpx
import pytest
from fhirclient import client as fhirclient
from fhirpy import SyncFHIRClient

from tests.api.operations.people import client_for, observation, put_all
from tests.conftest import RunningServer
from tests.people import PEOPLE

HEART_RATE, SYSTOLIC, GLUCOSE = "8867-4", "8480-6", "2339-0"

READINGS = [
    observation("hr-1", "related", HEART_RATE, "2026-01-01T09:00:00Z", 70),
    observation("hr-2", "related", HEART_RATE, "2026-02-01T09:00:00Z", 80),
    observation("hr-3", "related", HEART_RATE, "2026-03-01T09:00:00Z", 90),
    observation("bp-1", "related", SYSTOLIC, "2026-01-15T09:00:00Z", 120),
    observation("bp-2", "related", SYSTOLIC, "2026-02-15T09:00:00Z", 130),
    observation(
        "glucose-1", "related", GLUCOSE, "2026-02-20T09:00:00Z", 5.5, category="laboratory"
    ),
    observation("hr-unrelated", "unrelated", HEART_RATE, "2026-03-02T09:00:00Z", 60),
    observation(
        "hr-sensitive", "sensitive", HEART_RATE, "2026-03-03T09:00:00Z", 65, restricted=True
    ),
]


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, PEOPLE + READINGS)
    return server


def ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def lastn(fhir: httpx.Client, **params: str) -> dict:
    response = fhir.get("/Observation/$lastn", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def test_the_latest_of_each_code_for_a_patient(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = lastn(fhir, patient="Patient/related")
    assert ids(bundle) == {"hr-3", "bp-2", "glucose-1"}
    assert bundle["total"] == 3


def test_max_keeps_that_many_of_each_code_newest_first(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = lastn(fhir, patient="related", max="2", category="vital-signs")
    found = [e["resource"]["id"] for e in bundle["entry"]]
    assert set(found) == {"hr-3", "hr-2", "bp-2", "bp-1"}
    assert found.index("hr-3") < found.index("hr-2")


def test_code_and_category_narrow_it(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        assert ids(lastn(fhir, subject="Patient/related", code=f"http://loinc.org|{SYSTOLIC}")) == {
            "bp-2"
        }
        assert ids(lastn(fhir, patient="related", category="laboratory")) == {"glucose-1"}


def test_without_a_patient_it_answers_for_each_patient(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = lastn(fhir, code=HEART_RATE)
    assert ids(bundle) == {"hr-3", "hr-unrelated", "hr-sensitive"}


def test_a_bad_max_is_refused(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        response = fhir.get("/Observation/$lastn", params={"max": "none"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["max"]


def test_unknown_parameters_are_reported_as_search_reports_them(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        bundle = lastn(fhir, patient="related", colour="red")
        strict = fhir.get(
            "/Observation/$lastn",
            params={"patient": "related", "colour": "red"},
            headers={"Prefer": "handling=strict"},
        )
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    assert strict.status_code == 400


@pytest.mark.parametrize(
    ("role", "seen"),
    [
        ("clinician", {"hr-3", "hr-sensitive"}),
        ("nurse", {"hr-3"}),
        ("patient", {"hr-3"}),
        ("system", {"hr-3", "hr-unrelated", "hr-sensitive"}),
    ],
)
def test_each_role_sees_through_lastn_only_what_its_search_shows(
    loaded: RunningServer, role: str, seen: set[str]
) -> None:
    with client_for(loaded, role) as fhir:
        bundle = lastn(fhir, code=HEART_RATE)
        searched = fhir.get("/Observation", params={"code": HEART_RATE, "_count": 100}).json()
    assert ids(bundle) == seen
    assert seen <= ids(searched)
    assert bundle["total"] == len(seen)


@pytest.mark.parametrize("role", ["receptionist", "analyst"])
def test_a_role_without_observations_learns_nothing_through_lastn(
    loaded: RunningServer, role: str
) -> None:
    with client_for(loaded, role) as fhir:
        response = fhir.get("/Observation/$lastn", params={"patient": "related"})
    assert response.status_code == 403
    assert "hr-" not in response.text


def test_a_patient_asking_for_someone_else_gets_nothing(loaded: RunningServer) -> None:
    with client_for(loaded, "patient") as fhir:
        bundle = lastn(fhir, patient="unrelated")
    assert ids(bundle) == set() and bundle["total"] == 0


def test_fhirpy_and_fhirclient_ask_for_vital_signs(loaded: RunningServer) -> None:
    py = SyncFHIRClient(loaded.base_url, authorization=f"Bearer {loaded.token}")
    answer = py.execute(
        "Observation/$lastn", method="get", params={"patient": "related", "category": "vital-signs"}
    )
    assert ids(answer) == {"hr-3", "bp-2"}
    smart = fhirclient.FHIRClient(settings={"app_id": "bevan-test", "api_base": loaded.base_url})
    smart.server.session.headers["Authorization"] = f"Bearer {loaded.token}"
    found = smart.server.request_json("Observation/$lastn?patient=related&category=vital-signs")
    assert ids(found) == {"hr-3", "bp-2"}
