"""The 14 Synthea patients load as transaction Bundles through POST /fhir, with every
conditional reference resolved, and the stored counts match a plain scan of the files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import orjson

from tests.conftest import SHARED

SYNTHEA = SHARED / "data" / "synthea-small"


def bundle_files() -> list[Path]:
    seeds = sorted(SYNTHEA.glob("hospitalInformation*.json")) + sorted(
        SYNTHEA.glob("practitionerInformation*.json")
    )
    patients = sorted(p for p in SYNTHEA.glob("*.json") if p not in seeds)
    return seeds + patients


def expected_counts(files: list[Path]) -> Counter[str]:
    """Count resources as a plain scan would: entries with ifNoneExist count once per
    distinct condition (the server keeps one)."""
    counts: Counter[str] = Counter()
    seen_conditions: set[tuple[str, str]] = set()
    for path in files:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            resource_type = entry["resource"]["resourceType"]
            condition = entry["request"].get("ifNoneExist")
            if condition:
                if (resource_type, condition) in seen_conditions:
                    continue
                seen_conditions.add((resource_type, condition))
            counts[resource_type] += 1
    return counts


def test_synthea_patients_load_with_every_reference_resolved(fhir: httpx.Client) -> None:
    files = bundle_files()
    assert len(files) == 16
    for path in files:
        response = fhir.post(
            "", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"}
        )
        assert response.status_code == 200, f"{path.name}: {response.text[:500]}"
        statuses = Counter(e["response"]["status"].split()[0] for e in response.json()["entry"])
        assert set(statuses) <= {"200", "201"}, f"{path.name}: {statuses}"

    expected = expected_counts(files)
    for resource_type, count in expected.items():
        found = fhir.get(f"/{resource_type}", params={"_count": 0}).json()["total"]
        assert found == count, f"{resource_type}: stored {found}, the bundles hold {count}"

    # No reference is left pointing at a urn:uuid or a search: all resolved to Type/id.
    page = fhir.get("/Encounter", params={"_count": 200}).json()
    for entry in page["entry"]:
        text = orjson.dumps(entry["resource"]).decode()
        assert "urn:uuid:" not in text
        assert "?identifier=" not in text
        participant = entry["resource"]["participant"][0]["individual"]["reference"]
        practitioner = fhir.get(f"/{participant}")
        assert practitioner.status_code == 200

    # Each patient's Observations are found by the patient's reference.
    patients = fhir.get("/Patient", params={"_count": 50}).json()["entry"]
    assert len(patients) == 14
    observations_by_scan = 0
    for path in files[2:]:
        observations_by_scan += sum(
            1
            for e in orjson.loads(path.read_bytes())["entry"]
            if e["resource"]["resourceType"] == "Observation"
        )
    by_patient = sum(
        fhir.get("/Observation", params={"patient": p["resource"]["id"], "_count": 0}).json()[
            "total"
        ]
        for p in patients
    )
    assert by_patient == observations_by_scan
