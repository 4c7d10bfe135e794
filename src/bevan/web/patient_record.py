"""A patient's record as the pages show it, read through the API's own checks.

Every read here is one the FHIR API would make for the same user: the Patient read
(`allow` and `allow_stored`, which judge the relationship, break-glass and
sensitivity), then compartment searches (`Patient/{id}/Condition?...`) with the
caller's restrictions ANDed on and every match filtered by `may_see`. A section the
user's role may not read at all refuses the whole page (403), as the API would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from bevan.api.context import FhirRequest
from bevan.fhir.search import parse_search
from bevan.web import presentation as shown

# Allergy status in the banner, in fixed wording.
ALLERGIES_RECORDED = "Allergies recorded"
NO_KNOWN_ALLERGIES = "No known allergies"
ALLERGIES_NOT_KNOWN = "Allergies not known"
# SNOMED CT concepts that say "no known allergy" rather than name one.
NO_KNOWN_ALLERGY_CODES = frozenset({"716186003", "409137002", "428607008", "429625007"})


@dataclass(frozen=True)
class Banner:
    """The patient banner, each field already in CUI wording."""

    id: str
    name: str
    born: str
    gender: str
    nhs_number: str
    deceased: bool
    died: str | None
    address: str


@dataclass
class PatientRecord:
    """What the summary page shows of one patient."""

    patient: dict[str, Any]
    banner: Banner
    problems: list[dict[str, Any]] = field(default_factory=list)
    medicines: list[dict[str, Any]] = field(default_factory=list)
    allergies: list[dict[str, Any]] = field(default_factory=list)
    allergy_status: str = ALLERGIES_NOT_KNOWN
    vital_signs: list[dict[str, Any]] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)


def banner_of(patient: dict[str, Any]) -> Banner:
    deceased = shown.is_deceased(patient)
    died = patient.get("deceasedDateTime")
    return Banner(
        id=str(patient.get("id")),
        name=shown.banner_name(patient),
        born=shown.born(patient),
        gender=shown.gender(patient),
        nhs_number=shown.spaced_nhs_number(shown.nhs_number(patient)),
        deceased=deceased,
        died=shown.day(died) if isinstance(died, str) else None,
        address=shown.address_line(patient),
    )


def read_patient(fhir: FhirRequest, patient_id: str) -> dict[str, Any]:
    """Return the Patient, refusing (403) one the caller may not open, as the API's read."""
    fhir.allow("Patient", "read")
    stored = fhir.records.read("Patient", patient_id)
    fhir.allow_stored(stored)
    fhir.saw([stored])
    patient: dict[str, Any] = orjson.loads(stored.content or b"{}")
    return patient


def compartment_search(
    fhir: FhirRequest, patient_id: str, resource_type: str, pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Return what `GET Patient/{id}/{resource_type}?pairs` would answer this caller."""
    fhir.allow(resource_type, "search-type")
    criterion = fhir.records.compartment_criterion("Patient", patient_id, resource_type)
    query = parse_search(resource_type, pairs).with_criteria(criterion)
    page = fhir.records.search(fhir.visible(query), visible=fhir.may_see)
    fhir.saw(page.matches)
    return [orjson.loads(v.content) for v in page.matches if v.content is not None]


def patient_record(fhir: FhirRequest, patient_id: str) -> PatientRecord:
    """Return the summary of one patient's record as the caller may see it."""
    patient = read_patient(fhir, patient_id)
    record = PatientRecord(patient, banner_of(patient))
    record.allergies = compartment_search(
        fhir, patient_id, "AllergyIntolerance", [("_count", "50")]
    )
    record.allergy_status = allergy_status(record.allergies)
    record.allergies = [a for a in record.allergies if not _no_known_allergy(a)]
    record.problems = [
        c
        for c in compartment_search(
            fhir, patient_id, "Condition", [("_sort", "-onset-date"), ("_count", "100")]
        )
        if _status(c, "clinicalStatus") in ("active", "recurrence", "relapse", None)
    ]
    record.medicines = compartment_search(
        fhir,
        patient_id,
        "MedicationRequest",
        [("status", "active"), ("_sort", "-authoredon"), ("_count", "50")],
    )
    record.vital_signs = compartment_search(
        fhir,
        patient_id,
        "Observation",
        [("category", "vital-signs"), ("_sort", "-date"), ("_count", "200")],
    )
    record.encounters = compartment_search(
        fhir, patient_id, "Encounter", [("_sort", "-date"), ("_count", "5")]
    )
    record.documents = compartment_search(
        fhir, patient_id, "DocumentReference", [("_sort", "-date"), ("_count", "5")]
    )
    return record


def allergy_status(allergies: list[dict[str, Any]]) -> str:
    """Return the banner's allergy status: recorded, none known, or not known."""
    current = [a for a in allergies if _status(a, "clinicalStatus") in ("active", None)]
    if any(not _no_known_allergy(a) for a in current):
        return ALLERGIES_RECORDED
    if current:
        return NO_KNOWN_ALLERGIES
    return ALLERGIES_NOT_KNOWN


def _no_known_allergy(allergy: dict[str, Any]) -> bool:
    codings = (allergy.get("code") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") in NO_KNOWN_ALLERGY_CODES for c in codings)


def _status(resource: dict[str, Any], element: str) -> str | None:
    concept = resource.get(element)
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None
