"""Observation/$ingest: readings in bulk, each line on its own, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.monitoring.readings import at, load_people, new_patient, reading_set, scores

NDJSON = {"Content-Type": "application/fhir+ndjson"}


@pytest.fixture(scope="module", autouse=True)
def people(server) -> None:
    with server.client() as fhir:
        load_people(fhir)


def ndjson(resources: list[dict]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in resources) + b"\n"


def test_each_line_is_stored_and_scored_and_each_refused_line_is_named(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(10))
    for r in readings:
        del r["id"]
    impossible = reading_set(patient, at(10), {"hr": 400})[4]
    del impossible["id"]
    lines = [*readings[:3], impossible, *readings[3:]]
    body = ndjson(lines) + b"not json\n" + json.dumps({"resourceType": "Patient"}).encode()
    response = fhir.post("/Observation/$ingest", content=body, headers=NDJSON)
    assert response.status_code == 200, response.text
    issues = response.json()["issue"]
    assert issues[0]["diagnostics"] == "7 of 10 lines stored"
    refused = [i["diagnostics"] for i in issues[1:]]
    assert refused[0].startswith("line 4 refused (422)") and "300" in refused[0]
    assert refused[1].startswith("line 9 refused") and "not JSON" in refused[1]
    assert refused[2].startswith("line 10 refused")
    (score,) = scores(fhir, patient)
    assert score["valueQuantity"]["value"] == 0


def test_ingest_takes_only_ndjson(fhir: httpx.Client) -> None:
    response = fhir.post("/Observation/$ingest", json={"resourceType": "Observation"})
    assert response.status_code == 415
    assert "ndjson" in response.json()["issue"][0]["diagnostics"]


def test_a_device_may_send_readings_for_its_own_patient_only(
    server: RunningServer, fhir: httpx.Client
) -> None:
    own, other = new_patient(fhir), new_patient(fhir)
    device = {
        "resourceType": "Device",
        "id": f"oximeter-{own}",
        "patient": {"reference": f"Patient/{own}"},
    }
    fhir.put(f"/Device/{device['id']}", json=device).raise_for_status()
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "oximeter", "device", patient_id=own, device_id=device["id"]
    )
    mine, theirs = reading_set(own, at(5)), reading_set(other, at(5))
    for r in [*mine, *theirs]:
        del r["id"]
    with server.client(token) as as_device:
        response = as_device.post("/Observation/$ingest", content=ndjson(theirs), headers=NDJSON)
        assert response.status_code == 422, response.text
        assert all("refused (403)" in i["diagnostics"] for i in response.json()["issue"][1:])
        response = as_device.post("/Observation/$ingest", content=ndjson(mine), headers=NDJSON)
        assert response.status_code == 200, response.text
        assert response.json()["issue"][0]["diagnostics"] == "7 of 7 lines stored"
    assert scores(fhir, other) == []
    assert len(scores(fhir, own)) == 1
    found = fhir.get("/Observation", params={"subject": f"Patient/{other}"}).json()
    assert found.get("entry", []) == []
