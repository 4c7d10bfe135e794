"""The record most access tests start from: two practices, a patient registered at the
users' practice (A81001), one at another (B82002), and one at the users' practice whose
record is restricted (R)."""

from __future__ import annotations

from typing import Any

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
RESTRICTED = {
    "security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    ]
}

PEOPLE: list[dict[str, Any]] = [
    {
        "resourceType": "Organization",
        "id": "practice-a",
        "identifier": [{"system": ODS, "value": "A81001"}],
        "name": "Tredegar Surgery",
    },
    {
        "resourceType": "Organization",
        "id": "practice-b",
        "identifier": [{"system": ODS, "value": "B82002"}],
        "name": "Other Surgery",
    },
    {
        "resourceType": "Patient",
        "id": "related",
        "generalPractitioner": [{"reference": "Organization/practice-a"}],
        "name": [{"family": "Related"}],
    },
    {
        "resourceType": "Patient",
        "id": "unrelated",
        "generalPractitioner": [{"reference": "Organization/practice-b"}],
        "name": [{"family": "Unrelated"}],
    },
    {
        "resourceType": "Patient",
        "id": "sensitive",
        "meta": RESTRICTED,
        "generalPractitioner": [{"reference": "Organization/practice-a"}],
        "name": [{"family": "Sensitive"}],
    },
]
