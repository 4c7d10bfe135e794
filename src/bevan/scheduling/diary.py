"""The diary's vocabulary: what a slot and an appointment say about each other, which
slots patients may book themselves, and slots made in bulk from a weekly template.

Pure functions over FHIR JSON; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bevan.fhir.dates import date_range, format_instant
from bevan.fhir.references import parse_reference

# A slot patients may book themselves carries this tag (Slot.meta.tag); any other slot
# is booked by the practice. Searchable: Slot?_tag=<system>|patient.
BOOKING_CHANNEL = "https://bevan.nhs.uk/fhir/CodeSystem/booking-channel"
PATIENT_BOOKABLE = {"system": BOOKING_CHANNEL, "code": "patient", "display": "Patients may book"}

# The Task that offers a freed slot to someone on the waiting list.
SCHEDULING = "https://bevan.nhs.uk/fhir/CodeSystem/scheduling"
SLOT_OFFER = {"system": SCHEDULING, "code": "slot-offer", "display": "A slot offered"}

# Appointment statuses that hold their slots (busy); the others leave them free.
HOLDING = frozenset({"pending", "booked", "arrived", "fulfilled", "checked-in", "noshow"})
# Offer Tasks still open: the slot is held busy-tentative for the patient.
OPEN_OFFER = frozenset({"requested", "accepted"})
# Offer Tasks that ended without a booking: the slot goes to the next person.
ENDED_OFFER = frozenset({"rejected", "cancelled", "failed"})
# A waiting-list entry with no priority ranks after every one that has one.
NO_PRIORITY = 1_000_000

LONDON = ZoneInfo("Europe/London")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def slot_ids(appointment: dict[str, Any] | None) -> list[str]:
    """Return the ids of the local Slots an appointment names, in order."""
    if not appointment:
        return []
    found: list[str] = []
    for reference in appointment.get("slot") or ():
        target = (
            parse_reference(reference.get("reference") or "")
            if isinstance(reference, dict)
            else None
        )
        if target is not None and target.resource_type == "Slot" and target.id not in found:
            found.append(target.id)
    return found


def held_slots(appointment: dict[str, Any] | None) -> list[str]:
    """Return the slots an appointment holds busy (none unless booked or after)."""
    if not appointment or appointment.get("status") not in HOLDING:
        return []
    return slot_ids(appointment)


def patient_of(resource: dict[str, Any]) -> str | None:
    """Return the id of the Patient taking part in an Appointment (or a Task is for)."""
    if resource.get("resourceType") == "Task":
        target = parse_reference((resource.get("for") or {}).get("reference") or "")
        return target.id if target and target.resource_type == "Patient" else None
    for participant in resource.get("participant") or ():
        target = parse_reference((participant.get("actor") or {}).get("reference") or "")
        if target is not None and target.resource_type == "Patient":
            return target.id
    return None


def is_patient_bookable(slot: dict[str, Any]) -> bool:
    """Return True if patients may book this slot themselves."""
    tags = (slot.get("meta") or {}).get("tag") or ()
    return any(
        tag.get("system") == BOOKING_CHANNEL and tag.get("code") == "patient" for tag in tags
    )


def is_offer(task: dict[str, Any] | None) -> bool:
    """Return True if the Task is a slot offered from a waiting list."""
    if not task:
        return False
    codings = (task.get("code") or {}).get("coding") or ()
    return any(c.get("system") == SCHEDULING and c.get("code") == "slot-offer" for c in codings)


def reference_id(value: Any, resource_type: str) -> str | None:
    """Return the id of a local reference to resource_type ({"reference": ...}), else None."""
    if not isinstance(value, dict):
        return None
    target = parse_reference(value.get("reference") or "")
    return target.id if target is not None and target.resource_type == resource_type else None


def service_codes(resource: dict[str, Any]) -> set[tuple[str | None, str]]:
    """Return the (system, code) pairs of a Slot's or Appointment's serviceType."""
    return {
        (coding.get("system"), coding["code"])
        for concept in resource.get("serviceType") or ()
        for coding in concept.get("coding") or ()
        if coding.get("code")
    }


def instant(text: str | None) -> datetime | None:
    """Return the first moment of a FHIR dateTime, or None if absent or not one."""
    if not text:
        return None
    try:
        return date_range(text)[0]
    except ValueError:
        return None


def period_covers(period: dict[str, Any], start: datetime, end: datetime) -> bool:
    """Return True if a FHIR Period (open ends allowed) holds [start, end)."""
    low = instant(period.get("start"))
    high_text = period.get("end")
    high = date_range(high_text)[1] if high_text and instant(high_text) else None
    return (low is None or low <= start) and (high is None or end <= high)


def waiting_rank(entry: dict[str, Any]) -> tuple[int, str, str]:
    """Return the key that ranks waiting-list entries: clinical priority (lower is more
    urgent), then who has waited longest, then the id (so ties always break alike)."""
    priority = entry.get("priority")
    rank = priority if isinstance(priority, int) else NO_PRIORITY
    return rank, entry.get("created") or "9999", entry.get("id") or ""


@dataclass(frozen=True)
class SlotTemplate:
    """A week (or more) of a diary: sessions on chosen weekdays, cut into equal slots."""

    first_day: date
    days: int = 7
    sessions: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(14), time(17)))
    minutes: int = 15
    weekdays: frozenset[int] = frozenset(range(5))  # Monday 0 .. Sunday 6
    patient_bookable: bool = True
    timezone: ZoneInfo = LONDON

    def times(self) -> Iterator[tuple[datetime, datetime]]:
        """Yield each slot's [start, end) in UTC, in order (local clock times, so a
        9 o'clock session stays at 9 across the change to and from summer time)."""
        step = timedelta(minutes=self.minutes)
        for offset in range(self.days):
            day = self.first_day + timedelta(days=offset)
            if day.weekday() not in self.weekdays:
                continue
            for opens, closes in self.sessions:
                start = datetime.combine(day, opens, self.timezone)
                last = datetime.combine(day, closes, self.timezone)
                while start + step <= last:
                    yield start.astimezone(UTC), (start + step).astimezone(UTC)
                    start += step


def new_slot(
    schedule: dict[str, Any], start: datetime, end: datetime, *, patient_bookable: bool
) -> dict[str, Any]:
    """Return a free Slot of schedule from start to end, with the schedule's services."""
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "schedule": {"reference": f"Schedule/{schedule['id']}"},
        "status": "free",
        "start": format_instant(start),
        "end": format_instant(end),
    }
    for element in ("serviceCategory", "serviceType", "specialty"):
        if schedule.get(element):
            slot[element] = schedule[element]
    if patient_bookable:
        slot["meta"] = {"tag": [PATIENT_BOOKABLE]}
    return slot
