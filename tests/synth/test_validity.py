from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from bevan.fhir.validation import validate_resource
from bevan.synth import write_population
from bevan.synth.bundles import patient_bundle, shared_bundle
from bevan.synth.organisations import service_directory
from bevan.synth.record import patient_record

ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
EXPECTED_TYPES = {
    "Patient",
    "Condition",
    "MedicationRequest",
    "Encounter",
    "AllergyIntolerance",
    "Immunization",
    "Observation",
    "EpisodeOfCare",
    "CarePlan",
    "Consent",
    "Goal",
}


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def test_every_generated_resource_passes_validation(population, shared) -> None:
    seen: set[str] = set()
    for resource in shared:
        validate_resource(resource)
    for record in population[:300]:
        for resource in record:
            seen.add(validate_resource(resource))
    assert seen >= EXPECTED_TYPES - {"Goal"}


def test_the_rarest_resources_pass_validation_too(population) -> None:
    goals = [r for record in population for r in record if r["resourceType"] == "Goal"]
    assert goals
    for goal in goals:
        validate_resource(goal)


def test_transaction_bundles_pass_validation() -> None:
    directory = service_directory(1)
    validate_resource(shared_bundle(1))
    for index in range(40):
        validate_resource(patient_bundle(patient_record(1, index, directory, transaction=True)))


def test_ids_are_valid_and_references_resolve(population, shared) -> None:
    shared_ids = {f"{r['resourceType']}/{r['id']}" for r in shared}
    for record in population[:300]:
        own = {f"{r['resourceType']}/{r['id']}" for r in record}
        assert all(ID.fullmatch(r["id"]) for r in record)
        for reference in _references(record):
            assert reference in own or reference in shared_ids, reference


def test_bundle_references_point_at_fullurls_or_shared_resources(tmp_path: Path) -> None:
    write_population(30, 5, tmp_path)
    shared = orjson.loads((tmp_path / "shared.json").read_bytes())
    assert {e["request"]["method"] for e in shared["entry"]} == {"PUT"}
    shared_urls = {e["request"]["url"] for e in shared["entry"]}
    for path in sorted(tmp_path.glob("patient-*.json")):
        bundle = orjson.loads(path.read_bytes())
        assert bundle["type"] == "transaction"
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        assert all(url.startswith("urn:uuid:") for url in full_urls)
        assert all(e["request"]["method"] == "POST" for e in bundle["entry"])
        for reference in _references([e["resource"] for e in bundle["entry"]]):
            assert reference in full_urls or reference in shared_urls, reference


def test_ndjson_references_resolve_within_the_export(tmp_path: Path) -> None:
    write_population(60, 5, tmp_path, ndjson=True)
    resources = [
        orjson.loads(line)
        for path in sorted(tmp_path.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]
    ids = {f"{r['resourceType']}/{r['id']}" for r in resources}
    assert len(ids) == len(resources)
    assert all(reference in ids for reference in _references(resources))
