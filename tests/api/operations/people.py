"""A small record for the operations' tests: two practices, a patient related to the
users' practice, one who is not, one whose record is restricted; and tokens by role."""

from __future__ import annotations

from typing import Any

import httpx

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.people import RESTRICTED

LOINC = "http://loinc.org"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


ROLES: dict[str, dict[str, str]] = {
    "system": {"role": "system"},
    "clinician": {"role": "clinician", "organisation": "A81001"},
    "nurse": {"role": "nurse", "organisation": "A81001"},
    "receptionist": {"role": "receptionist", "organisation": "A81001"},
    "analyst": {"role": "analyst", "organisation": "A81001"},
    "patient": {"role": "patient", "patient_id": "related"},
}


def observation(
    id: str,
    patient: str,
    code: str,
    when: str,
    value: float,
    *,
    category: str = "vital-signs",
    restricted: bool = False,
) -> dict[str, Any]:
    """Return an Observation of a LOINC code for a patient at a time."""
    found: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "1"},
    }
    if restricted:
        found["meta"] = RESTRICTED
    return found


def put_all(fhir: httpx.Client, resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        response = fhir.put(
            f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
        )
        assert response.status_code in (200, 201), response.text


def client_for(server: RunningServer, role: str) -> httpx.Client:
    """Return a client holding a token for one of ROLES."""
    claims = ROLES[role]
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-user",
        claims["role"],
        organisation=claims.get("organisation"),
        patient_id=claims.get("patient_id"),
    )
    return server.client(token)
