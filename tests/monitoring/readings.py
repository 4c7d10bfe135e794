"""Sets of home readings as a device sends them (the contract in clinical/vital_signs.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.people import PEOPLE

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NEWS2 = f"{SNOMED}|1104051000000101"
VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }
        ]
    }
]
ACVPU = {"A": "248234008", "C": "130987000", "V": "300202002", "P": "450847001", "U": "422768004"}
NORMAL = {"rr": 16, "spo2": 97, "o2": False, "sbp": 120, "hr": 70, "acvpu": "A", "temp": 37.0}
HIGH = {"rr": 26, "spo2": 90, "o2": True, "sbp": 95, "hr": 125, "acvpu": "A", "temp": 38.5}
MEDIUM = {**NORMAL, "rr": 22, "spo2": 93, "hr": 95}  # 2 + 2 + 1 = 5


def at(minutes_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _observation(patient: str, when: str, code: dict[str, Any], **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex,
        "status": "final",
        "category": VITAL_SIGNS,
        "code": code,
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        **value,
    }


def _loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def reading_set(patient: str, when: str, values: dict[str, Any] | None = None) -> list[dict]:
    """Return the seven Observations of one set (values: NORMAL's keys, overriding)."""
    v = {**NORMAL, **(values or {})}
    return [
        _observation(patient, when, _loinc("9279-1"), valueQuantity=_quantity(v["rr"], "/min")),
        _observation(patient, when, _loinc("59408-5"), valueQuantity=_quantity(v["spo2"], "%")),
        _observation(
            patient,
            when,
            {"coding": [{"system": SNOMED, "code": "371825009" if v["o2"] else "722742002"}]},
        ),
        _observation(
            patient,
            when,
            _loinc("85354-9"),
            component=[
                {"code": _loinc("8480-6"), "valueQuantity": _quantity(v["sbp"], "mm[Hg]")},
                {"code": _loinc("8462-4"), "valueQuantity": _quantity(v.get("dbp", 75), "mm[Hg]")},
            ],
        ),
        _observation(patient, when, _loinc("8867-4"), valueQuantity=_quantity(v["hr"], "/min")),
        _observation(
            patient,
            when,
            {"coding": [{"system": SNOMED, "code": "1104441000000107"}]},
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": ACVPU[v["acvpu"]]}]},
        ),
        _observation(
            patient,
            when,
            _loinc("8310-5"),
            valueQuantity=_quantity(v["temp"], v.get("temp_unit", "Cel")),
        ),
    ]


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def load_people(fhir: httpx.Client) -> None:
    for resource in PEOPLE:
        response = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text


def new_patient(fhir: httpx.Client, practice: str = "practice-a") -> str:
    patient = {
        "resourceType": "Patient",
        "id": uuid.uuid4().hex,
        "name": [{"family": "Ward"}],
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
    }
    response = fhir.put(f"/Patient/{patient['id']}", json=patient)
    assert response.status_code == 201, response.text
    return str(patient["id"])


def scores(fhir: httpx.Client, patient: str, **more: str) -> list[dict[str, Any]]:
    response = fhir.get(
        "/Observation",
        params={"subject": f"Patient/{patient}", "code": NEWS2, "_sort": "-date", **more},
    )
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def tasks(fhir: httpx.Client, patient: str, **more: str) -> list[dict[str, Any]]:
    response = fhir.get("/Task", params={"subject": f"Patient/{patient}", **more})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]
