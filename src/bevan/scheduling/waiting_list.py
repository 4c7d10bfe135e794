"""Waiting lists: a freed slot offered to the first person waiting whose wish it fits,
offers that end (declined, or their window passed) handed on to the next, and the
statistics of who waits how long.

A waiting-list entry is an Appointment with status waitlist, the serviceType wanted,
requestedPeriod (when they could come) and priority (lower is more urgent). An offer is
a Task for the patient (code slot-offer, focus the Slot, basedOn the entry, status
requested, restriction.period.end the end of the offer window) while the Slot is held
busy-tentative. Everything here runs inside the writing transaction of the write that
freed the slot or ended the offer, so a slot is never offered to two people at once.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bevan.fhir import json_text
from bevan.fhir.dates import format_instant
from bevan.fhir.errors import Conflict
from bevan.fhir.search import parse_search
from bevan.scheduling.diary import (
    ENDED_OFFER,
    OPEN_OFFER,
    SCHEDULING,
    SLOT_OFFER,
    instant,
    is_offer,
    patient_of,
    period_covers,
    reference_id,
    service_codes,
    waiting_rank,
)
from bevan.store.reading import ReadSession
from bevan.store.versions import StoreConflict
from bevan.store.writing import WriteSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService

# Resources read a page at a time.
PAGE = 1000
OFFER_ENDED_REASON = "the offer window passed"


def content(session: ReadSession, resource_type: str, id: str) -> dict[str, Any] | None:
    """Return the current content of a resource in session, or None if it has none."""
    stored = session.current(resource_type, id)
    if stored is None or stored.content is None:
        return None
    loaded: dict[str, Any] = json_text.loads(stored.content)
    return loaded


def lock_slot(session: WriteSession, slot_id: str) -> None:
    """Hold Slot/slot_id against every other booking, cancellation and offer until the
    transaction ends (PostgreSQL; SQLite's write transaction is already alone)."""
    try:
        session.lock(f"Slot/{slot_id}")
    except StoreConflict:
        raise Conflict(
            f"Slot/{slot_id} is being booked by someone else at this moment; "
            "search for free slots again"
        ) from None


def search_all(
    service: RecordService, session: ReadSession, resource_type: str, pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Return the content of every current resource matching pairs, page by page."""
    query = parse_search(resource_type, [*pairs, ("_count", str(PAGE))])
    found: list[dict[str, Any]] = []
    while True:
        page = service.search(query, session)
        found.extend(json_text.loads(v.content) for v in page.matches if v.content is not None)
        if page.next_cursor is None:
            return found
        query = replace(query, cursor=page.next_cursor)


def offers(
    service: RecordService, session: ReadSession, pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Return the slot-offer Tasks matching pairs."""
    return search_all(service, session, "Task", [("code", f"{SCHEDULING}|slot-offer"), *pairs])


def offer_slot(
    service: RecordService, session: WriteSession, slot: dict[str, Any], window: timedelta
) -> dict[str, Any] | None:
    """Offer a free slot to the first-ranked person waiting whose wish it fits: hold it
    busy-tentative and write their offer Task; return the Task, or None if nobody waits
    for it (the slot stays free). The caller holds the slot's lock."""
    start, end = instant(slot.get("start")), instant(slot.get("end"))
    now = datetime.now(UTC)
    if start is None or end is None or start <= now or slot.get("status") != "free":
        return None
    codes = service_codes(slot)
    if not codes:
        return None
    wanted = ",".join(
        f"{system}|{code}" if system else code for system, code in sorted(codes, key=str)
    )
    waiting = search_all(
        service, session, "Appointment", [("status", "waitlist"), ("service-type", wanted)]
    )
    if not waiting:
        return None
    # Anyone holding an open offer is asked one thing at a time; anyone who has let
    # this slot go is not asked about it again.
    busy = {
        reference_id(ref, "Appointment")
        for task in offers(service, session, [("status", ",".join(sorted(OPEN_OFFER)))])
        for ref in task.get("basedOn") or ()
    }
    passed = {
        reference_id(ref, "Appointment")
        for task in offers(
            service,
            session,
            [("focus", f"Slot/{slot['id']}"), ("status", ",".join(sorted(ENDED_OFFER)))],
        )
        for ref in task.get("basedOn") or ()
    }
    schedule_id = reference_id(slot.get("schedule"), "Schedule")
    schedule = content(session, "Schedule", schedule_id) if schedule_id else None
    actors = {
        (a.get("reference") or "")
        for a in (schedule or {}).get("actor") or ()
        if isinstance(a, dict)
    }
    for entry in sorted(waiting, key=waiting_rank):
        if entry["id"] in busy or entry["id"] in passed:
            continue
        if not fits(entry, start, end, actors):
            continue
        patient = patient_of(entry)
        if patient is None:
            continue
        held = {**slot, "status": "busy-tentative"}
        service.update_in(session, "Slot", slot["id"], held)
        task = offer_task(slot, entry, patient, now, window)
        service.create_in(session, "Task", task)
        return task
    return None


def fits(entry: dict[str, Any], start: datetime, end: datetime, actors: set[str]) -> bool:
    """Return True if a slot [start, end) in a diary of actors is what the entry waits
    for: within a requested period (any, if none given), and with each clinician or
    place the entry names among the diary's actors."""
    periods = entry.get("requestedPeriod") or ()
    if periods and not any(period_covers(p, start, end) for p in periods):
        return False
    for participant in entry.get("participant") or ():
        reference = (participant.get("actor") or {}).get("reference") or ""
        if reference and not reference.startswith("Patient/") and reference not in actors:
            return False
    return True


def offer_task(
    slot: dict[str, Any], entry: dict[str, Any], patient: str, now: datetime, window: timedelta
) -> dict[str, Any]:
    """Return the Task offering slot to the patient waiting in entry until now + window."""
    until = format_instant(now + window)
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "proposal",
        "priority": "asap",
        "code": {"coding": [SLOT_OFFER]},
        "description": (
            f"An appointment from {slot['start']} to {slot['end']} is offered to you. "
            f"Accept it (status accepted) or decline it (status rejected) by {until}."
        ),
        "focus": {"reference": f"Slot/{slot['id']}"},
        "for": {"reference": f"Patient/{patient}"},
        "basedOn": [{"reference": f"Appointment/{entry['id']}"}],
        "authoredOn": format_instant(now),
        "restriction": {"period": {"start": format_instant(now), "end": until}},
    }


def offer_window_end(task: dict[str, Any]) -> datetime | None:
    """Return when an offer lapses."""
    return instant(((task.get("restriction") or {}).get("period") or {}).get("end"))


def expire_offers(service: RecordService, now: datetime | None = None) -> list[dict[str, Any]]:
    """End every offer whose window has passed (status cancelled), each in a transaction
    of its own, so its slot is offered to the next person; return the Tasks ended."""
    now = now or datetime.now(UTC)
    with service.reading() as session:
        open_offers = offers(service, session, [("status", "requested")])
    ended: list[dict[str, Any]] = []
    for task in open_offers:
        lapses = offer_window_end(task)
        if lapses is None or lapses > now:
            continue
        with service.writing() as session:
            slot_id = reference_id(task.get("focus"), "Slot")
            if slot_id:
                lock_slot(session, slot_id)
            current = content(session, "Task", task["id"])
            if current is None or current.get("status") != "requested":
                continue  # answered, or ended by another process, meanwhile
            current["status"] = "cancelled"
            current["statusReason"] = {"text": OFFER_ENDED_REASON}
            service.update_in(session, "Task", task["id"], current)
            ended.append(current)
    return ended


@dataclass(frozen=True)
class ServiceWaits:
    """A service's waiting list at one moment."""

    service: str  # system|code
    waiting: int  # people on the list
    median_wait_days: float | None  # how long they have waited so far
    offers_open: int  # slots held for someone now
    slots_wasted: int  # slots whose time passed while free


def waiting_list_statistics(
    service: RecordService,
    now: datetime | None = None,
) -> list[ServiceWaits]:
    """Return each service's waiting list: people waiting, their median wait so far,
    offers open and slots wasted (past and never booked), by service type."""
    now = now or datetime.now(UTC)
    waits: dict[str, list[float]] = {}
    with service.reading() as session:
        for entry in search_all(service, session, "Appointment", [("status", "waitlist")]):
            created = instant(entry.get("created")) or instant(
                (entry.get("meta") or {}).get("lastUpdated")
            )
            days = (now - created).total_seconds() / 86400 if created else 0.0
            for system, code in service_codes(entry):
                waits.setdefault(_token(system, code), []).append(days)
        open_by_service: dict[str, int] = {}
        for task in offers(service, session, [("status", "requested,accepted")]):
            slot_id = reference_id(task.get("focus"), "Slot")
            slot = content(session, "Slot", slot_id) if slot_id else None
            for system, code in service_codes(slot or {}):
                token = _token(system, code)
                open_by_service[token] = open_by_service.get(token, 0) + 1
        found = []
        for token in sorted(set(waits) | set(open_by_service)):
            waited = waits.get(token, [])
            wasted = _count(
                service,
                session,
                "Slot",
                [
                    ("status", "free"),
                    ("service-type", token),
                    ("start", f"lt{format_instant(now)}"),
                ],
            )
            found.append(
                ServiceWaits(
                    token,
                    len(waited),
                    round(statistics.median(waited), 1) if waited else None,
                    open_by_service.get(token, 0),
                    wasted,
                )
            )
    return found


def _token(system: str | None, code: str) -> str:
    return f"{system}|{code}" if system else code


def _count(
    service: RecordService, session: ReadSession, resource_type: str, pairs: list[tuple[str, str]]
) -> int:
    query = parse_search(resource_type, [*pairs, ("_summary", "count")])
    return int(service.search(query, session).total or 0)


__all__ = [
    "ServiceWaits",
    "expire_offers",
    "is_offer",
    "offer_slot",
    "waiting_list_statistics",
]
