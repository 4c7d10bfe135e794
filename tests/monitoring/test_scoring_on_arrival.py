"""Home readings scored with NEWS2 as they arrive, over real HTTP on both engines."""

from __future__ import annotations

import httpx
import pytest

from tests.monitoring.readings import (
    HIGH,
    MEDIUM,
    at,
    load_people,
    new_patient,
    reading_set,
    scores,
    tasks,
    transaction,
)


@pytest.fixture(scope="module", autouse=True)
def people(server) -> None:
    with server.client() as fhir:
        load_people(fhir)


def test_the_reading_that_completes_a_set_makes_its_score_searchable_at_once(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(30))
    ids = set()
    for n, reading in enumerate(readings):
        assert scores(fhir, patient) == [], f"scored after {n} of 7 readings"
        response = fhir.post("/Observation", json=reading)
        assert response.status_code == 201, response.text
        ids.add(f"Observation/{response.json()['id']}")
    (score,) = scores(fhir, patient)
    assert score["status"] == "final"
    assert score["category"][0]["coding"][0]["code"] == "survey"
    assert score["valueQuantity"] == {
        "value": 0, "unit": "score", "system": "http://unitsofmeasure.org", "code": "{ScoreOf}",
    }  # fmt: skip
    assert score["interpretation"][0]["coding"][0]["code"] == "zero"
    assert score["effectiveDateTime"].startswith(readings[0]["effectiveDateTime"][:16])
    assert len(score["component"]) == 7
    assert {d["reference"] for d in score["derivedFrom"]} == ids
    assert tasks(fhir, patient) == []


def test_a_high_score_raises_a_stat_task_for_the_practice_and_a_second_updates_it(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    response = fhir.post("/", json=transaction(reading_set(patient, at(90), HIGH)))
    assert response.status_code == 200, response.text
    (score,) = scores(fhir, patient)
    assert score["valueQuantity"]["value"] == 13
    assert score["interpretation"][0]["coding"][0]["code"] == "high"
    (task,) = tasks(fhir, patient)
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "stat")
    assert task["focus"]["reference"] == f"Observation/{score['id']}"
    assert task["owner"]["reference"] == "Organization/practice-a"
    assert "emergency" in task["description"].lower()
    fhir.post("/", json=transaction(reading_set(patient, at(20), HIGH))).raise_for_status()
    newest, _ = scores(fhir, patient)
    (task,) = tasks(fhir, patient)
    assert task["focus"]["reference"] == f"Observation/{newest['id']}"


def test_a_medium_score_is_asap_and_a_late_set_raises_no_task(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    fhir.post("/", json=transaction(reading_set(patient, at(10)))).raise_for_status()
    late = reading_set(patient, at(6 * 60), MEDIUM)
    fhir.post("/", json=transaction(late)).raise_for_status()
    newest, older = scores(fhir, patient)
    assert older["valueQuantity"]["value"] == 5
    assert older["interpretation"][0]["coding"][0]["code"] == "medium"
    lag = older["extension"][0]["valueDuration"]
    assert lag["code"] == "s" and lag["value"] >= 6 * 3600 - 60
    assert tasks(fhir, patient) == []
    fhir.post("/", json=transaction(reading_set(patient, at(2), MEDIUM))).raise_for_status()
    (task,) = tasks(fhir, patient)
    assert task["priority"] == "asap"


def test_an_impossible_reading_is_refused_naming_its_limit_and_nothing_is_stored(
    fhir: httpx.Client,
) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(5), {"spo2": 101})
    response = fhir.post("/", json=transaction(readings))
    assert response.status_code == 422, response.text
    (issue,) = response.json()["issue"]
    assert "100" in issue["diagnostics"] and "SpO2" in issue["diagnostics"]
    assert "valueQuantity" in issue["expression"][0]
    found = fhir.get("/Observation", params={"subject": f"Patient/{patient}"}).json()
    assert found.get("entry", []) == []


def test_a_temperature_in_fahrenheit_is_scored_in_celsius(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(5), {"temp": 102.2, "temp_unit": "[degF]"})  # 39 C
    fhir.post("/", json=transaction(readings)).raise_for_status()
    (score,) = scores(fhir, patient)
    temperature = score["component"][-1]
    assert temperature["code"]["coding"][0]["code"] == "1104371000000107"
    assert temperature["valueQuantity"]["value"] == 1


def test_an_implausible_reading_is_stored_marked_and_never_scored(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(5), {"hr": 255})  # a typed extra digit
    fhir.post("/", json=transaction(readings)).raise_for_status()
    assert scores(fhir, patient) == []
    marked = fhir.get(
        "/Observation",
        params={
            "subject": f"Patient/{patient}",
            "_tag": "https://bevan.nhs.uk/fhir/CodeSystem/reading-quality|implausible",
        },
    ).json()
    (entry,) = marked["entry"]
    assert entry["resource"]["valueQuantity"]["value"] == 255


def test_a_corrected_reading_supersedes_the_old_score(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    readings = reading_set(patient, at(5))
    fhir.post("/", json=transaction(readings)).raise_for_status()
    (old,) = scores(fhir, patient)
    pulse = next(r for r in readings if r["code"]["coding"][0]["code"] == "8867-4")
    pulse["valueQuantity"]["value"] = 135
    pulse["status"] = "amended"
    fhir.put(f"/Observation/{pulse['id']}", json=pulse).raise_for_status()
    (current,) = scores(fhir, patient, status="final")
    assert current["id"] != old["id"] and current["valueQuantity"]["value"] == 3
    superseded = fhir.get(f"/Observation/{old['id']}").json()
    assert superseded["status"] == "entered-in-error"


def test_a_patient_with_an_88_to_92_target_is_scored_on_scale_2(fhir: httpx.Client) -> None:
    patient = new_patient(fhir)
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "SpO2 88-92%"},
        "subject": {"reference": f"Patient/{patient}"},
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
                "detailRange": {
                    "low": {"value": 88, "unit": "%"},
                    "high": {"value": 92, "unit": "%"},
                },
            }
        ],
    }
    fhir.post("/Goal", json=goal).raise_for_status()
    fhir.post("/", json=transaction(reading_set(patient, at(5), {"spo2": 89}))).raise_for_status()
    (score,) = scores(fhir, patient)
    assert score["valueQuantity"]["value"] == 0
    assert score["component"][1]["code"]["coding"][0]["code"] == "1104321000000108"
