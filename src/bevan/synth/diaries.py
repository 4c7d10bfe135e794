"""Practice diaries for the synthetic population: the busiest practices' GP and nurse
clinics, a week past and two to come, with realistic booked and free slots and a waiting
list for the nurse clinic, which is full.

Deterministic by (seed, population size, first day). The first day is the Monday the
diaries start on: `bevan synth` passes the coming Monday, so a demo's diaries lie ahead
of it; without one, the Monday of the week the records describe (record.AS_AT).

The slots are written free and the appointments book them as they load (the booking
rule marks each busy), so a load through the record leaves every diary consistent; the
waiting-list entries come last, so nobody is offered a slot as the diary loads.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM
from bevan.scheduling.diary import SlotTemplate, new_slot
from bevan.synth.organisations import ServiceDirectory
from bevan.synth.people import draw_person
from bevan.synth.record import AS_AT
from bevan.synth.references import instant
from bevan.synth.seeds import derived_seed, patient_random, stable_uuid

SNOMED = "http://snomed.info/sct"
GENERAL_PRACTICE = {
    "coding": [{"system": SNOMED, "code": "394814009", "display": "General practice"}]
}
NURSE_CLINIC = {"coding": [{"system": SNOMED, "code": "310024002", "display": "Nurse clinic"}]}

PRACTICES_WITH_DIARIES = 3
# Share of each week's slots booked: the week past, this week, next week.
GP_BOOKED = (0.92, 0.85, 0.45)
NURSE_BOOKED = (0.95, 1.0, 1.0)
# Of the past week's bookings: how they ended.
ATTENDED, DID_NOT_ATTEND = 0.90, 0.07  # the rest were cancelled (their slots wasted)
# Of a GP diary's slots, those the practice keeps for on-the-day need (not bookable online).
PRACTICE_ONLY_SHARE = 0.3
WAITING_SHARE = 0.03  # of a practice's patients, waiting for the nurse clinic
MAX_WAITING = 25


def default_first_day() -> date:
    """Return the Monday of the week the records describe."""
    day = AS_AT.date()
    return day - timedelta(days=day.weekday())


def diary_resources(
    seed: int,
    count: int,
    directory: ServiceDirectory,
    first_day: date | None = None,
    *,
    transaction: bool = False,
) -> list[dict[str, Any]]:
    """Return the diaries' Schedules, Slots, Appointments and waiting-list entries, in
    the order to load them. With transaction=True patients are named by NHS number
    (conditional references, for a transaction Bundle); otherwise as Patient/id."""
    first_day = first_day or default_first_day()
    patients: dict[str, list[tuple[int, str | None]]] = {}
    for index in range(count):
        person = draw_person(patient_random(seed, index), directory, seed, index, AS_AT.date())
        if transaction and person.nhs_number is None:
            continue
        patients.setdefault(person.practice.ods_code, []).append((index, person.nhs_number))
    busiest = Counter({code: len(listed) for code, listed in patients.items()})
    chosen = sorted(busiest.items(), key=lambda item: (-item[1], item[0]))
    schedules: list[dict[str, Any]] = []
    slots: list[dict[str, Any]] = []
    bookings: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for ods_code, _ in chosen[:PRACTICES_WITH_DIARIES]:
        rng = random.Random(derived_seed("diaries", seed, count, first_day.isoformat(), ods_code))
        listed = patients[ods_code]

        def patient(index: int, nhs_number: str | None) -> dict[str, str]:
            if transaction:
                return {"reference": f"Patient?identifier={NHS_NUMBER_SYSTEM}|{nhs_number}"}
            return {"reference": f"Patient/{stable_uuid(seed, index, 'Patient')}"}

        location = f"Location/{ods_code}-surgery"
        for kind, service, template, booked_shares in (
            ("gp", GENERAL_PRACTICE, SlotTemplate(first_day - timedelta(days=7), 21), GP_BOOKED),
            (
                "nurse",
                NURSE_CLINIC,
                SlotTemplate(first_day - timedelta(days=7), 21, ((time(9), time(12)),), minutes=20),
                NURSE_BOOKED,
            ),
        ):
            schedule = {
                "resourceType": "Schedule",
                "id": f"{ods_code}-{kind}-diary".lower(),
                "active": True,
                "serviceType": [service],
                "actor": [{"reference": location}],
                "comment": f"{'GP' if kind == 'gp' else 'Nurse'} clinic at {ods_code}",
            }
            schedules.append(schedule)
            for start, end in template.times():
                bookable = kind == "gp" and rng.random() >= PRACTICE_ONLY_SHARE
                slot = new_slot(schedule, start, end, patient_bookable=bookable)
                slot["id"] = f"{schedule['id']}-{start:%Y%m%d%H%M}"
                slots.append(slot)
                week = min(max((start.date() - first_day).days // 7 + 1, 0), 2)
                if rng.random() >= booked_shares[week]:
                    continue
                index, nhs_number = rng.choice(listed)
                status = "booked"
                if week == 0:
                    roll = rng.random()
                    status = (
                        "fulfilled"
                        if roll < ATTENDED
                        else ("noshow" if roll < ATTENDED + DID_NOT_ATTEND else "cancelled")
                    )
                appointment: dict[str, Any] = {
                    "resourceType": "Appointment",
                    "id": stable_uuid(seed, index, f"appointment/{slot['id']}"),
                    "status": status,
                    "serviceType": [service],
                    "slot": [{"reference": f"Slot/{slot['id']}"}],
                    "start": slot["start"],
                    "end": slot["end"],
                    "created": instant(start - timedelta(days=rng.randint(1, 14))),
                    "participant": [
                        {"actor": patient(index, nhs_number), "status": "accepted"},
                        {"actor": {"reference": location}, "status": "accepted"},
                    ],
                }
                if status == "cancelled":
                    appointment["cancelationReason"] = {"text": "Patient cancelled"}
                bookings.append(appointment)
        wanted = min(MAX_WAITING, max(2, int(len(listed) * WAITING_SHARE)))
        for index, nhs_number in rng.sample(listed, min(wanted, len(listed))):
            joined = datetime.combine(first_day, time(9)) - timedelta(days=rng.randint(1, 60))
            waiting.append(
                {
                    "resourceType": "Appointment",
                    "id": stable_uuid(seed, index, f"waitlist/{ods_code}-nurse"),
                    "status": "waitlist",
                    "serviceType": [NURSE_CLINIC],
                    "priority": rng.choice((1, 2, 2, 3, 3, 3)),
                    "created": joined.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "requestedPeriod": [
                        {
                            "start": first_day.isoformat(),
                            "end": (first_day + timedelta(days=27)).isoformat(),
                        }
                    ],
                    "participant": [
                        {"actor": patient(index, nhs_number), "status": "needs-action"},
                        {"actor": {"reference": location}, "status": "needs-action"},
                    ],
                }
            )
    return schedules + slots + bookings + waiting


def diary_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a transaction Bundle that PUTs the diaries' resources in order."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ],
    }
