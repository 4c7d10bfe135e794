"""What the patient app may do in the diary, beside what `access` decides for every
type: which slots a patient sees and books, what they may change in their appointments,
and how they answer an offer from a waiting list.

- A patient sees and books only slots open to patient booking: those tagged
  `booking-channel|patient` (scheduling.diary.PATIENT_BOOKABLE). Every other slot is
  booked by the practice; a slot offered to them from the waiting list they may accept.
- A patient searches slots at most MAX_PATIENT_SLOT_DAYS at a time (start=ge...&
  start=le...), so one request cannot walk a whole diary.
- A patient books (booked), asks (proposed, pending), joins the waiting list (waitlist)
  and cancels (cancelled, not for an appointment already begun or past); arrival,
  attendance and did-not-attend are the practice's to record.
- A patient answers an offer Task made for them (accepted or rejected) and changes
  nothing else in it.

Receptionists book only for patients of their organisation and clinicians see only
their own patients' appointments: that is the relationship `access` requires of every
write and read, through the Appointment's Patient participant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound
from bevan.fhir.search import Criterion, DateMatch, Restriction, SearchQuery, TokenMatch, TokenValue
from bevan.scheduling.diary import (
    BOOKING_CHANNEL,
    held_slots,
    instant,
    is_offer,
    is_patient_bookable,
)

MAX_PATIENT_SLOT_DAYS = 14
# What the patient app may set an appointment's status to.
PATIENT_STATUSES = frozenset({"proposed", "pending", "booked", "waitlist", "cancelled"})
# What a patient may answer an offer with.
OFFER_ANSWERS = frozenset({"accepted", "rejected"})


def patient_slot_restrictions() -> tuple[Criterion, ...]:
    """Return the criteria that keep a patient's slot search to patient-bookable slots."""
    return (Restriction(TokenMatch("_tag", (TokenValue("patient", BOOKING_CHANNEL),))),)


def check_patient_slot_window(query: SearchQuery) -> None:
    """Refuse (400) a patient's Slot search not bounded to MAX_PATIENT_SLOT_DAYS by
    start=ge... and start=le... (or gt, lt)."""
    lows: list[datetime] = []
    highs: list[datetime] = []
    for criterion in query.criteria:
        if not isinstance(criterion, DateMatch) or criterion.param != "start":
            continue
        if len(criterion.bounds) != 1:
            continue  # values ORed widen the search: they bound nothing
        bound = criterion.bounds[0]
        low, high = instant(bound.low), instant(bound.high)
        if bound.prefix in ("ge", "gt", "sa", "eq") and low is not None:
            lows.append(low)
        if bound.prefix in ("le", "lt", "eb", "eq") and high is not None:
            highs.append(high)
    span = (min(highs) - max(lows)) if lows and highs else None
    if span is None or span > timedelta(days=MAX_PATIENT_SLOT_DAYS):
        given = "" if span is None else f"; this search spans {span.days} days or more"
        raise InvalidRequest(
            Issue(
                f"the patient app searches slots at most {MAX_PATIENT_SLOT_DAYS} days at a time: "
                "give start=ge<first day>&start=le<last day>, no more than "
                f"{MAX_PATIENT_SLOT_DAYS} days apart{given}",
                code="too-costly",
                expression=("Slot?start",),
            )
        )


def check_patient_booking(
    records: Any, old: dict[str, Any] | None, new: dict[str, Any], now: datetime | None = None
) -> None:
    """Refuse what the patient app may not do to an Appointment or an offer Task."""
    if new.get("resourceType") == "Task":
        _check_offer_answer(old, new)
    elif new.get("resourceType") == "Appointment":
        _check_appointment(records, old, new, now or datetime.now(UTC))


def _check_appointment(
    records: Any, old: dict[str, Any] | None, new: dict[str, Any], now: datetime
) -> None:
    status = new.get("status")
    before = (old or {}).get("status")
    if status != before and status not in PATIENT_STATUSES:
        raise _refused(
            f"the patient app may not set an appointment's status to {status!r}: the "
            "practice records arrival, attendance and did-not-attend",
            "Appointment.status",
        )
    if old is not None and before in ("booked", "pending") and status == "cancelled":
        start = instant(old.get("start"))
        if start is not None and start <= now:
            raise _refused(
                "this appointment has already begun or passed, so the patient app cannot "
                "cancel it; please contact the practice",
                "Appointment.status",
            )
    already = set(held_slots(old))
    for index, slot_id in enumerate(held_slots(new)):
        if slot_id in already:
            continue
        try:
            stored = records.read("Slot", slot_id)
        except NotFound:
            continue  # the booking rule says the slot does not exist
        slot = _loads(stored.content)
        if slot.get("status") == "busy-tentative":
            continue  # offered to someone: the booking rule lets only its taker have it
        if not is_patient_bookable(slot):
            raise _refused(
                f"Slot/{slot_id} is not open to booking by patients; the practice books it",
                f"Appointment.slot[{index}]",
            )


def _check_offer_answer(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    if old is None or not is_offer(old):
        raise _refused(
            "the patient app answers slot offers made to the patient, nothing else", "Task"
        )
    if old.get("status") != "requested" or new.get("status") not in OFFER_ANSWERS:
        raise _refused(
            "an offer open to you is answered accepted or rejected "
            f"(this one is {old.get('status')!r})",
            "Task.status",
        )
    changed = {
        k for k in set(old) | set(new) if k not in ("status", "meta") and old.get(k) != new.get(k)
    }
    if changed:
        raise _refused(
            f"answering an offer changes only its status, not {', '.join(sorted(changed))}",
            f"Task.{sorted(changed)[0]}",
        )


def _loads(content: str | None) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(content) if content else {}
    return loaded


def _refused(text: str, expression: str) -> Forbidden:
    return Forbidden(Issue(text, code="forbidden", expression=(expression,)))


def check_waitlist_statistics(context: Any) -> None:
    """Refuse waiting-list statistics to patients and devices: they are the service's
    figures, for its staff, analysts and systems."""
    if context.role in ("patient", "device"):
        raise Forbidden(
            Issue(
                "waiting-list statistics are for the practice's staff, analysts and systems",
                code="forbidden",
            )
        )
