"""The patients whose record a stored resource is part of: every patient it names
(fhir/patient_references.py), with NHS numbers looked up in the record and a Binary's
securityContext followed to the resource it protects. One answer for read, search,
includes, $everything, history and vread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bevan.fhir import json_text
from bevan.fhir.errors import Gone, NotFound
from bevan.fhir.patient_references import NHS_NUMBER, patients_named
from bevan.fhir.search import parse_search

# A securityContext may point at a resource whose own securityContext points on; a
# short chain is followed, and one longer than this is treated as naming an unknown.
MAX_CONTEXT_DEPTH = 3


@dataclass(frozen=True)
class RecordPatients:
    """The record's patients named by a resource; unknown when it names someone the
    record cannot place (an NHS number no Patient carries, a missing securityContext)."""

    ids: frozenset[str]
    unknown: bool = False


def record_patients(records: Any, resource: dict[str, Any], depth: int = 0) -> RecordPatients:
    """Return the ids of every patient resource names, resolved through the record."""
    named = patients_named(resource, records.base_url)
    ids = set(named.ids)
    unknown = False
    for number in sorted(named.nhs_numbers):
        found = patients_with_nhs_number(records, number)
        ids |= found
        unknown = unknown or not found
    for resource_type, id in sorted(named.contexts):
        if depth >= MAX_CONTEXT_DEPTH:
            unknown = True
            break
        try:
            stored = records.read(resource_type, id)
        except (NotFound, Gone):
            unknown = True
            continue
        if stored.content is None:
            unknown = True
            continue
        behind = record_patients(records, json_text.loads(stored.content), depth + 1)
        ids |= behind.ids
        unknown = unknown or behind.unknown
    return RecordPatients(frozenset(ids), unknown)


def patients_with_nhs_number(records: Any, number: str) -> frozenset[str]:
    """Return the ids of the Patients carrying this NHS number."""
    query = parse_search(
        "Patient", [("identifier", f"{NHS_NUMBER}|{number}"), ("_count", "50"), ("_total", "none")]
    )
    return frozenset(v.id for v in records.search(query).matches)
