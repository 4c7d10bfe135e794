"""One active Patient per NHS number: a second is refused with 409, naming the holder only
to a caller who may read it; the rule holds when two writers race."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.nhs_numbers import fresh_nhs_number

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(number: str, **more: object) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": number}],
        "name": [{"family": "Jones"}],
        **more,
    }


@pytest.fixture(scope="module")
def practices(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for id, ods in (("nhs-practice-a", "A81001"), ("nhs-practice-b", "B82002")):
            organisation = {
                "resourceType": "Organization",
                "id": id,
                "identifier": [{"system": ODS, "value": ods}],
            }
            assert fhir.put(f"/Organization/{id}", json=organisation).status_code in (200, 201)
    return server


@pytest.fixture
def clinician(practices: RunningServer) -> Iterator[httpx.Client]:
    token = TokenAuthority.in_directory(practices.data_dir).issue(
        "clinician-user", "clinician", organisation="A81001"
    )
    with practices.client(token) as client:
        yield client


def test_a_second_patient_with_the_same_nhs_number_is_refused(fhir: httpx.Client) -> None:
    number = fresh_nhs_number()
    first = fhir.post("/Patient", json=patient(number), headers=FHIR_JSON)
    assert first.status_code == 201
    second = fhir.post("/Patient", json=patient(number), headers=FHIR_JSON)
    assert second.status_code == 409
    issue = second.json()["issue"][0]
    assert issue["expression"] == ["Patient.identifier[0].value"]
    assert "another record holds this NHS number" in issue["diagnostics"]
    assert f"Patient/{first.json()['id']}" in issue["diagnostics"]  # a system account may read it
    found = fhir.get("/Patient", params={"identifier": f"{NHS}|{number}"}).json()
    assert found["total"] == 1


def test_updating_a_patient_to_take_anothers_number_is_refused_and_changes_nothing(
    fhir: httpx.Client,
) -> None:
    taken, own = fresh_nhs_number(), fresh_nhs_number()
    assert fhir.post("/Patient", json=patient(taken), headers=FHIR_JSON).status_code == 201
    mine = fhir.post("/Patient", json=patient(own), headers=FHIR_JSON).json()
    changed = {**mine, "identifier": [{"system": NHS, "value": taken}]}
    assert fhir.put(f"/Patient/{mine['id']}", json=changed, headers=FHIR_JSON).status_code == 409
    assert fhir.get(f"/Patient/{mine['id']}").json()["identifier"][0]["value"] == own
    # keeping its own number is of course fine
    renamed = {**mine, "name": [{"family": "Evans"}]}
    assert fhir.put(f"/Patient/{mine['id']}", json=renamed, headers=FHIR_JSON).status_code == 200


def test_a_patch_that_takes_anothers_number_is_refused(fhir: httpx.Client) -> None:
    taken, own = fresh_nhs_number(), fresh_nhs_number()
    assert fhir.post("/Patient", json=patient(taken), headers=FHIR_JSON).status_code == 201
    mine = fhir.post("/Patient", json=patient(own), headers=FHIR_JSON).json()
    response = fhir.patch(
        f"/Patient/{mine['id']}",
        json=[{"op": "replace", "path": "/identifier/0/value", "value": taken}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 409


def test_a_deleted_or_inactive_patient_frees_its_number(fhir: httpx.Client) -> None:
    number = fresh_nhs_number()
    old = fhir.post("/Patient", json=patient(number), headers=FHIR_JSON).json()
    assert fhir.delete(f"/Patient/{old['id']}").status_code in (200, 204)
    again = fhir.post("/Patient", json=patient(number), headers=FHIR_JSON).json()
    retired = {**again, "active": False}
    assert fhir.put(f"/Patient/{again['id']}", json=retired, headers=FHIR_JSON).status_code == 200
    assert fhir.post("/Patient", json=patient(number), headers=FHIR_JSON).status_code == 201
    # the retired record cannot come back while the new one holds the number
    revived = {**again, "active": True}
    assert fhir.put(f"/Patient/{again['id']}", json=revived, headers=FHIR_JSON).status_code == 409


def test_two_patients_with_one_number_in_a_transaction_are_refused_whole(
    fhir: httpx.Client,
) -> None:
    number = fresh_nhs_number()
    entry = {"resource": patient(number), "request": {"method": "POST", "url": "Patient"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    response = fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 409
    assert "Bundle.entry[1]" in response.json()["issue"][0]["expression"][0]
    found = fhir.get("/Patient", params={"identifier": f"{NHS}|{number}"}).json()
    assert found["total"] == 0


def test_of_two_concurrent_creates_with_one_number_exactly_one_wins(
    server: RunningServer,
) -> None:
    for _ in range(5):
        number = fresh_nhs_number()
        statuses: list[int] = []
        start = threading.Barrier(2)

        def create(
            number: str = number, statuses: list[int] = statuses, start: threading.Barrier = start
        ) -> None:
            with server.client() as client:
                start.wait()
                response = client.post("/Patient", json=patient(number), headers=FHIR_JSON)
                statuses.append(response.status_code)

        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [201, 409]
        with server.client() as client:
            found = client.get("/Patient", params={"identifier": f"{NHS}|{number}"}).json()
        assert found["total"] == 1


def test_a_clinician_learns_the_holder_only_of_a_patient_they_may_read(
    fhir: httpx.Client, clinician: httpx.Client
) -> None:
    ours, theirs = fresh_nhs_number(), fresh_nhs_number()
    at_a = {"generalPractitioner": [{"reference": "Organization/nhs-practice-a"}]}
    at_b = {"generalPractitioner": [{"reference": "Organization/nhs-practice-b"}]}
    related = fhir.post("/Patient", json=patient(ours, **at_a), headers=FHIR_JSON).json()
    unrelated = fhir.post("/Patient", json=patient(theirs, **at_b), headers=FHIR_JSON).json()

    known = clinician.post("/Patient", json=patient(ours, **at_a), headers=FHIR_JSON)
    assert known.status_code == 409
    assert f"Patient/{related['id']}" in known.json()["issue"][0]["diagnostics"]

    hidden = clinician.post("/Patient", json=patient(theirs, **at_a), headers=FHIR_JSON)
    # Access control may refuse first (the number names a patient they may not see);
    # either way the holder is not named.
    assert hidden.status_code in (403, 409), hidden.text
    assert unrelated["id"] not in hidden.text
