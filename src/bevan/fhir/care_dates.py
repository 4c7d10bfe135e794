"""When care happened, as $everything's start and end read it: by resource type, the
search parameter that holds the date of care."""

from __future__ import annotations

from functools import cache
from typing import Any

from bevan.fhir.search_parameters import index_rows, search_parameters

# Where the date of care is not the type's `date` parameter (or the type has none). A
# type with no entry here and no `date` parameter (Patient, Medication, Organization)
# has no date of care: start and end never leave it out.
CARE_DATE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Basic": ("created",),
    "Claim": ("created",),
    "Communication": ("sent", "received"),
    "CommunicationRequest": ("occurrence", "authored"),
    "Condition": ("onset-date", "recorded-date"),
    "DeviceRequest": ("event-date", "authored-on"),
    "DocumentManifest": ("created",),
    "ExplanationOfBenefit": ("created",),
    "Goal": ("start-date",),
    "ImagingStudy": ("started",),
    "Media": ("created",),
    "MedicationAdministration": ("effective-time",),
    "MedicationDispense": ("whenhandedover", "whenprepared"),
    "MedicationRequest": ("authoredon",),
    "MedicationStatement": ("effective",),
    "NutritionOrder": ("datetime",),
    "Patient": (),
    "Person": (),
    "Provenance": ("recorded",),
    "QuestionnaireResponse": ("authored",),
    "RelatedPerson": (),
    "RequestGroup": ("authored",),
    "ServiceRequest": ("occurrence", "authored"),
    "Specimen": ("collected",),
    "VisionPrescription": ("datewritten",),
}


@cache
def care_date_parameters(resource_type: str) -> tuple[str, ...]:
    """Return the date parameters that hold when care happened for a resource type."""
    if resource_type in CARE_DATE_PARAMETERS:
        return CARE_DATE_PARAMETERS[resource_type]
    return ("date",) if "date" in search_parameters(resource_type) else ()


def within_care_dates(resource: dict[str, Any], low: str | None, high: str | None) -> bool:
    """Return True if the resource's care overlaps [low, high) (instants), or it records
    no date of care to judge by."""
    params = care_date_parameters(resource["resourceType"])
    if not params:
        return True
    spans = [(row[1], row[2]) for row in index_rows(resource).date if row[0] in params]
    if not spans:
        return True
    return any(
        (low is None or span_high > low) and (high is None or span_low < high)
        for span_low, span_high in spans
    )
