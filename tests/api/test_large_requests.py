"""No one request holds up everyone: bodies are bounded by who sends them, large writes
keep out of the group commit that small ones share, and history pages are bounded by
the size of what they hold as well as by their count."""

from __future__ import annotations

import pytest

from bevan.config import DEFAULT_MAX_PATIENT_BODY
from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient_of_size(size: int, id: str | None = None) -> dict:
    """A Patient whose body is about size bytes, most of it one long name."""
    resource: dict = {"resourceType": "Patient", "name": [{"text": "x" * size}]}
    if id is not None:
        resource["id"] = id
    return resource


def observation_of_size(size: int, patient_id: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "a long note"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueString": "x" * size,
    }


@pytest.fixture(scope="module")
def patient_id(server: RunningServer) -> str:
    with server.client() as fhir:
        created = fhir.post("/Patient", json=patient_of_size(10), headers=FHIR_JSON)
        assert created.status_code == 201
        return str(created.json()["id"])


@pytest.mark.parametrize("role", ["patient", "device"])
def test_a_patients_or_devices_megabyte_body_is_refused_with_413(
    server: RunningServer, patient_id: str, role: str
) -> None:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-1", role, patient_id=patient_id, device_id="meter-1" if role == "device" else None
    )
    with server.client(token) as caller:
        for size in (1024 * 1024, DEFAULT_MAX_PATIENT_BODY + 1024):
            response = caller.post(
                "/Observation", json=observation_of_size(size, patient_id), headers=FHIR_JSON
            )
            assert response.status_code == 413, response.text[:300]
            issue = response.json()["issue"][0]
            assert issue["code"] == "too-costly"
            assert "256 KB" in issue["diagnostics"]
        small = caller.post(
            "/Observation", json=observation_of_size(1000, patient_id), headers=FHIR_JSON
        )
        assert small.status_code != 413, small.text[:300]


def test_staff_may_send_a_megabyte_body(server: RunningServer, patient_id: str) -> None:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "clinician-1", "clinician", organisation="A81001"
    )
    with server.client(token) as clinician:
        response = clinician.post(
            "/Observation", json=observation_of_size(1024 * 1024, patient_id), headers=FHIR_JSON
        )
        assert response.status_code != 413, response.text[:300]
    with server.client() as system:
        response = system.post("/Patient", json=patient_of_size(1024 * 1024), headers=FHIR_JSON)
        assert response.status_code == 201, response.text[:300]


def test_a_large_write_keeps_out_of_the_group_commit_and_a_small_one_joins_it(
    server: RunningServer,
) -> None:
    writer = server.app.state.services.writer
    with server.client() as fhir:
        before = writer.written
        large = fhir.post("/Patient", json=patient_of_size(300 * 1024), headers=FHIR_JSON)
        assert large.status_code == 201, large.text[:300]
        assert writer.written == before
        stored = fhir.get(f"/Patient/{large.json()['id']}").json()
        assert len(stored["name"][0]["text"]) == 300 * 1024

        updated = fhir.put(
            f"/Patient/{large.json()['id']}",
            json=patient_of_size(400 * 1024, large.json()["id"]),
            headers=FHIR_JSON,
        )
        assert updated.status_code == 200, updated.text[:300]
        assert writer.written == before

        small = fhir.post("/Patient", json=patient_of_size(100), headers=FHIR_JSON)
        assert small.status_code == 201
        assert writer.written == before + 1


def test_a_large_write_that_is_invalid_is_refused_and_stores_nothing(
    server: RunningServer,
) -> None:
    with server.client() as fhir:
        before = fhir.get("/Patient", params={"_summary": "count"}).json()["total"]
        body = patient_of_size(300 * 1024)
        body["gender"] = "sometimes"
        response = fhir.post("/Patient", json=body, headers=FHIR_JSON)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["issue"][0]["expression"] == ["Patient.gender"]
        assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == before


def test_a_history_page_stops_at_its_byte_budget_and_links_to_the_rest(
    server: RunningServer,
) -> None:
    with server.client() as fhir:
        created = fhir.post("/Patient", json=patient_of_size(400 * 1024), headers=FHIR_JSON)
        id = created.json()["id"]
        for _ in range(3):
            response = fhir.put(
                f"/Patient/{id}", json=patient_of_size(400 * 1024, id), headers=FHIR_JSON
            )
            assert response.status_code == 200, response.text[:300]

        first = fhir.get(f"/Patient/{id}/_history", params={"_count": 10}).json()
        # 400 KB a version: the third passes the 1 MB budget, and the page stops there.
        assert [e["resource"]["meta"]["versionId"] for e in first["entry"]] == ["4", "3", "2"]
        assert first["total"] == 4
        following = {link["relation"]: link["url"] for link in first["link"]}["next"]
        assert "_count=10" in following

        rest = fhir.get(following).json()
        assert [e["resource"]["meta"]["versionId"] for e in rest["entry"]] == ["1"]
        assert "next" not in {link["relation"] for link in rest["link"]}


def test_a_history_page_of_small_versions_is_bounded_by_its_count(server: RunningServer) -> None:
    with server.client() as fhir:
        id = fhir.post("/Patient", json=patient_of_size(10), headers=FHIR_JSON).json()["id"]
        for _ in range(3):
            fhir.put(f"/Patient/{id}", json=patient_of_size(10, id), headers=FHIR_JSON)
        page = fhir.get(f"/Patient/{id}/_history", params={"_count": 3}).json()
        assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == ["4", "3", "2"]
        following = {link["relation"]: link["url"] for link in page["link"]}["next"]
        assert len(fhir.get(following).json()["entry"]) == 1
