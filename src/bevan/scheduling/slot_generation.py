"""A diary's slots made in bulk from a template (a week of 15-minute slots, say), for
the $generate-slots operation and `bevan slots generate` alike.

Slots are ordinary Slot resources written in one transaction: every one is made, or
none. A time that already has a slot in the schedule is left alone, so running a
template twice over the same week makes nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, time
from typing import TYPE_CHECKING, Any

from bevan.fhir.errors import BusinessRuleViolation, InvalidRequest, Issue, NotFound
from bevan.scheduling.diary import WEEKDAYS, SlotTemplate, instant, new_slot
from bevan.scheduling.waiting_list import content, search_all
from bevan.store.versions import StoredVersion

if TYPE_CHECKING:
    from bevan.records.service import RecordService, WriteGuard

# The longest stretch one request may fill, and the most slots it may make.
MAX_DAYS = 31
MAX_SLOTS = 5000
TEMPLATE_PARAMETERS = ("start", "days", "session", "minutes", "weekdays", "patientBookable")
_SESSION = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


def template_from(pairs: Iterable[tuple[str, Any]], where: str = "") -> SlotTemplate:
    """Return the template the parameters describe; InvalidRequest naming a bad one.

    start (a date, required), days (1-31, default 7), session (HH:MM-HH:MM, repeatable;
    default 09:00-12:00 and 14:00-17:00, Europe/London clock), minutes (5-240, default
    15), weekdays (mon,tue,...; default mon-fri), patientBookable (true or false,
    default true).
    """
    given: dict[str, list[Any]] = {}
    for name, value in pairs:
        given.setdefault(name, []).append(value)

    def one(name: str) -> str | None:
        values = given.get(name, [])
        if len(values) > 1:
            raise _bad(name, where, f"{name} may be given only once")
        if values and not isinstance(values[0], str):
            raise _bad(name, where, f"{name} must be a simple value")
        return values[0] if values else None

    start_text = one("start")
    if start_text is None:
        raise _bad("start", where, "start (the first day, YYYY-MM-DD) is required")
    try:
        first_day = date.fromisoformat(start_text)
    except ValueError:
        raise _bad(
            "start", where, f"start must be a date (YYYY-MM-DD), not {start_text!r}"
        ) from None
    days = _whole(one("days"), "days", 1, MAX_DAYS, 7, where)
    minutes = _whole(one("minutes"), "minutes", 5, 240, 15, where)
    sessions = []
    for value in given.get("session", []):
        match = _SESSION.fullmatch(value) if isinstance(value, str) else None
        try:
            opens = time(int(match[1]), int(match[2])) if match else None
            closes = time(int(match[3]), int(match[4])) if match else None
        except ValueError:
            opens = closes = None
        if opens is None or closes is None or closes <= opens:
            raise _bad(
                "session",
                where,
                f"a session is HH:MM-HH:MM, opening before it closes, not {value!r}",
            )
        sessions.append((opens, closes))
    weekdays_text = one("weekdays")
    weekdays = frozenset(range(5))
    if weekdays_text is not None:
        names = [n.strip().lower()[:3] for n in weekdays_text.split(",") if n.strip()]
        if not names or any(n not in WEEKDAYS for n in names):
            raise _bad(
                "weekdays",
                where,
                f"weekdays are mon,tue,wed,thu,fri,sat,sun, not {weekdays_text!r}",
            )
        weekdays = frozenset(WEEKDAYS.index(n) for n in names)
    bookable = one("patientBookable")
    if bookable not in (None, "true", "false"):
        raise _bad("patientBookable", where, f"patientBookable is true or false, not {bookable!r}")
    return SlotTemplate(
        first_day,
        days,
        tuple(sessions) or SlotTemplate.sessions,
        minutes=minutes,
        weekdays=weekdays,
        patient_bookable=bookable != "false",
    )


def generate_slots(
    service: RecordService,
    schedule_id: str,
    template: SlotTemplate,
    guard: WriteGuard | None = None,
) -> list[StoredVersion]:
    """Return the free Slots made in schedule_id from template (none where the schedule
    already has a slot that overlaps), all written in one transaction."""
    times = list(template.times())
    if len(times) > MAX_SLOTS:
        raise InvalidRequest(
            Issue(
                f"the template makes {len(times)} slots; at most {MAX_SLOTS} at a time",
                code="too-costly",
            )
        )
    made: list[StoredVersion] = []
    with service.writing() as session:
        schedule = content(session, "Schedule", schedule_id)
        if schedule is None:
            raise NotFound(f"Schedule/{schedule_id} is not known")
        if schedule.get("active") is False:
            raise BusinessRuleViolation(
                Issue(f"Schedule/{schedule_id} is not active", expression=("Schedule.active",))
            )
        if not times:
            return made
        existing = search_all(
            service,
            session,
            "Slot",
            [
                ("schedule", f"Schedule/{schedule_id}"),
                ("start", f"ge{(times[0][0]).isoformat()}"),
                ("start", f"lt{(times[-1][1]).isoformat()}"),
            ],
        )
        taken = [(instant(s.get("start")), instant(s.get("end"))) for s in existing]
        for start, end in times:
            if any(a is not None and b is not None and a < end and start < b for a, b in taken):
                continue
            slot = new_slot(schedule, start, end, patient_bookable=template.patient_bookable)
            stored = service.create_in(session, "Slot", slot, guard=guard).stored
            if stored is not None:
                made.append(stored)
    return made


def _whole(text: str | None, name: str, low: int, high: int, default: int, where: str) -> int:
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise _bad(name, where, f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _bad(name: str, where: str, text: str) -> InvalidRequest:
    return InvalidRequest(Issue(text, expression=(f"{where}{name}",)))
