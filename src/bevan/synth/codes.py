"""Code systems and the handful of codes the synthetic record uses, in one place.

Clinical codes are SNOMED CT (UK edition where the concept is UK-only), LOINC for
laboratory tests and the FHIR vital-signs profile codes, dm+d for medicines, and UCUM for
units. Shared by every synth module so the same concept is never spelled twice.
"""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DMD = "https://dmd.nhs.uk"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

NHS_NUMBER_VERIFICATION_URL = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
NHS_NUMBER_VERIFICATION_SYSTEM = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)
ETHNIC_CATEGORY_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"

# The policy a national data opt-out Consent points at; analytics looks for this uri.
NATIONAL_DATA_OPT_OUT_POLICY = "https://digital.nhs.uk/services/national-data-opt-out"

RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}

# NEWS2 air-or-oxygen reading: the CareConnect NEWS2 guidance codes the answer and names
# the question in CodeableConcept.text.
AIR_OR_OXYGEN_TEXT = "Air or oxygen"
ROOM_AIR = {"system": SNOMED, "code": "722742002", "display": "Breathing room air"}
ON_OXYGEN = {"system": SNOMED, "code": "371825009", "display": "Patient on oxygen"}

ACVPU_CODE = {
    "system": SNOMED,
    "code": "1104441000000107",
    "display": "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score",
}
ACVPU_VALUES = {
    "A": {"system": SNOMED, "code": "248234008", "display": "Mentally alert"},
    "C": {"system": SNOMED, "code": "130987000", "display": "Acute confusion"},
    "V": {"system": SNOMED, "code": "300202002", "display": "Responds to voice"},
    "P": {"system": SNOMED, "code": "450847001", "display": "Responds to pain"},
    "U": {"system": SNOMED, "code": "422768004", "display": "Unresponsive"},
}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """Return a CodeableConcept with one coding (and text if given)."""
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out


def quantity(value: float | int, unit: str, code: str | None = None) -> dict[str, Any]:
    """Return a UCUM Quantity."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


VITAL_SIGNS_CATEGORY = [
    concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs"),
]
LABORATORY_CATEGORY = [
    concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory"),
]
