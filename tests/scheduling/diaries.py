"""A practice diary for the scheduling tests: a clinic Location at each practice of
tests/people.py, a Schedule for each, and slots from tomorrow on; appointments and
waiting-list entries as a patient app or a receptionist would send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bevan.fhir.dates import format_instant
from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SERVICE = "http://snomed.info/sct"
GP = {"coding": [{"system": SERVICE, "code": "394814009", "display": "General practice"}]}
NURSE = {"coding": [{"system": SERVICE, "code": "310024002", "display": "Nurse clinic"}]}
PATIENT_BOOKABLE = {
    "system": "https://bevan.nhs.uk/fhir/CodeSystem/booking-channel",
    "code": "patient",
}

CLINICS: list[dict[str, Any]] = [
    {
        "resourceType": "Location",
        "id": "clinic-a",
        "name": "Tredegar Surgery consulting rooms",
        "managingOrganization": {"reference": "Organization/practice-a"},
    },
    {
        "resourceType": "Location",
        "id": "clinic-b",
        "name": "Other Surgery consulting rooms",
        "managingOrganization": {"reference": "Organization/practice-b"},
    },
    {
        "resourceType": "Schedule",
        "id": "diary-a",
        "active": True,
        "serviceType": [GP],
        "actor": [{"reference": "Location/clinic-a"}],
    },
    {
        "resourceType": "Schedule",
        "id": "diary-b",
        "active": True,
        "serviceType": [GP],
        "actor": [{"reference": "Location/clinic-b"}],
    },
]


def token(server: RunningServer, role: str, **claims: str) -> str:
    """Return a token for role (organisation=..., patient_id=...)."""
    return TokenAuthority.in_directory(server.data_dir).issue(f"test-{role}", role, **claims)


def put_all(fhir: httpx.Client, resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        response = fhir.put(
            f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
        )
        assert response.status_code in (200, 201), response.text


def moment(days: float, hour: int = 9, minute: int = 0) -> datetime:
    """Return a UTC moment days from today at hour:minute (negative days: the past)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour, minutes=minute)


def slot(
    id: str,
    start: datetime,
    *,
    schedule: str = "diary-a",
    service: dict[str, Any] = GP,
    bookable: bool = True,
    status: str = "free",
    minutes: int = 15,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Slot",
        "id": id,
        "schedule": {"reference": f"Schedule/{schedule}"},
        "serviceType": [service],
        "status": status,
        "start": format_instant(start),
        "end": format_instant(start + timedelta(minutes=minutes)),
    }
    if bookable:
        found["meta"] = {"tag": [PATIENT_BOOKABLE]}
    return found


def appointment(
    the_slot: dict[str, Any], patient: str, *, clinic: str = "clinic-a"
) -> dict[str, Any]:
    """Return a booking of the_slot for patient (status booked)."""
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceType": the_slot["serviceType"],
        "slot": [{"reference": f"Slot/{the_slot['id']}"}],
        "start": the_slot["start"],
        "end": the_slot["end"],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{clinic}"}, "status": "accepted"},
        ],
    }


def waiting(
    patient: str,
    *,
    priority: int | None = None,
    within: tuple[datetime, datetime] | None = None,
    service: dict[str, Any] = GP,
    clinic: str = "clinic-a",
) -> dict[str, Any]:
    """Return a waiting-list entry for patient."""
    entry: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "serviceType": [service],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "needs-action"},
            {"actor": {"reference": f"Location/{clinic}"}, "status": "needs-action"},
        ],
    }
    if priority is not None:
        entry["priority"] = priority
    if within is not None:
        entry["requestedPeriod"] = [
            {"start": format_instant(within[0]), "end": format_instant(within[1])}
        ]
    return entry


def read(fhir: httpx.Client, reference: str) -> dict[str, Any]:
    response = fhir.get(f"/{reference}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def create(fhir: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return fhir.post(f"/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
