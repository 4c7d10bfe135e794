"""The booking rule: a slot is taken by exactly one appointment, freed when it is
cancelled, and offered to the waiting list whenever it becomes free.

Attached to writes of Appointment, Slot and Task (records/write_rules.py), so it holds
for a booking made alone, in a Bundle or by the loader. Inside the writing transaction
the slot is locked (session.lock: PostgreSQL's advisory lock; on SQLite the write
transaction is already the only writer, in every process), read, and only then marked
busy: of any number of racing bookings exactly one finds it free, and the others are
refused with 409 Conflict, their writes undone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bevan.fhir.dates import now_instant
from bevan.fhir.errors import BusinessRuleViolation, Conflict, Issue
from bevan.records.write_rules import Written
from bevan.scheduling.diary import (
    ENDED_OFFER,
    OPEN_OFFER,
    held_slots,
    instant,
    is_offer,
    reference_id,
    slot_ids,
)
from bevan.scheduling.waiting_list import content, lock_slot, offer_slot, offers
from bevan.store.writing import WriteSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService

DEFAULT_OFFER_WINDOW = timedelta(hours=2)


class BookingRule:
    """Keeps slots and appointments in step (see the module's docstring)."""

    resource_types = frozenset({"Appointment", "Slot", "Task"})

    def __init__(self, offer_window: timedelta = DEFAULT_OFFER_WINDOW) -> None:
        self.offer_window = offer_window

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        """Date a waiting-list entry when it joins (its place in the queue)."""
        if (
            resource_type == "Appointment"
            and resource.get("status") == "waitlist"
            and not resource.get("created")
        ):
            resource["created"] = now_instant()

    def written(self, service: RecordService, written: Written) -> None:
        if written.resource_type == "Appointment":
            self._appointment_written(service, written)
        elif written.resource_type == "Slot":
            self._slot_written(service, written)
        elif written.resource_type == "Task":
            self._task_written(service, written)

    # --- appointments -----------------------------------------------------------------

    def _appointment_written(self, service: RecordService, written: Written) -> None:
        before = None if written.created else written.previous()
        after = written.resource
        held_before = held_slots(before)
        held_after = held_slots(after)
        session = written.session
        for slot_id in held_after:
            if slot_id not in held_before:
                assert after is not None
                self._take(service, session, slot_id, after)
        for slot_id in held_before:
            if slot_id not in held_after:
                self._release(service, session, slot_id)
        if (
            before is not None
            and before.get("status") == "waitlist"
            and (after is None or after.get("status") != "waitlist")
        ):
            self._withdraw_offers(service, session, written.id, keep=held_after)

    def _take(
        self,
        service: RecordService,
        session: WriteSession,
        slot_id: str,
        appointment: dict[str, Any],
    ) -> None:
        """Mark the slot busy for appointment, or refuse (409) if it is not free for it."""
        where = f"Appointment.slot[{slot_ids(appointment).index(slot_id)}]"
        lock_slot(session, slot_id)
        slot = content(session, "Slot", slot_id)
        if slot is None:
            raise BusinessRuleViolation(
                Issue(f"Slot/{slot_id} does not exist", code="not-found", expression=(where,))
            )
        status = slot.get("status")
        offer = None
        if status == "busy-tentative":
            offer = self._open_offer(service, session, slot_id, appointment["id"])
        if status != "free" and offer is None:
            raise Conflict(
                Issue(
                    f"Slot/{slot_id} is not free (it is {status}): someone else has booked "
                    "it, or it changed since you read it. Nothing was booked; search for "
                    "free slots again.",
                    code="conflict",
                    expression=(where,),
                )
            )
        self._check_times(appointment, slot, where)
        service.update_in(session, "Slot", slot_id, {**slot, "status": "busy"})
        if offer is not None:
            service.update_in(session, "Task", offer["id"], {**offer, "status": "completed"})

    @staticmethod
    def _check_times(appointment: dict[str, Any], slot: dict[str, Any], where: str) -> None:
        """Refuse (422) a booking whose start and end are not its slot's."""
        for element in ("start", "end"):
            if instant(appointment.get(element)) != instant(slot.get(element)):
                raise BusinessRuleViolation(
                    Issue(
                        f"the appointment's {element} ({appointment.get(element)}) must be "
                        f"its slot's ({slot.get(element)}); {where} is "
                        f"{slot.get('start')} to {slot.get('end')}",
                        expression=(f"Appointment.{element}",),
                    )
                )

    @staticmethod
    def _open_offer(
        service: RecordService, session: WriteSession, slot_id: str, appointment_id: str
    ) -> dict[str, Any] | None:
        """Return the open offer of slot to the waiting-list entry appointment_id."""
        found = offers(
            service,
            session,
            [
                ("focus", f"Slot/{slot_id}"),
                ("based-on", f"Appointment/{appointment_id}"),
                ("status", ",".join(sorted(OPEN_OFFER))),
            ],
        )
        return found[0] if found else None

    def _release(self, service: RecordService, session: WriteSession, slot_id: str) -> None:
        """Free a slot an appointment no longer holds (its Slot write offers it on)."""
        lock_slot(session, slot_id)
        slot = content(session, "Slot", slot_id)
        if slot is not None and slot.get("status") == "busy":
            service.update_in(session, "Slot", slot_id, {**slot, "status": "free"})

    def _withdraw_offers(
        self, service: RecordService, session: WriteSession, appointment_id: str, keep: list[str]
    ) -> None:
        """End the open offers to a waiting-list entry that has left the list (booked
        elsewhere, or cancelled), so their slots go to the next person."""
        for task in offers(
            service,
            session,
            [
                ("based-on", f"Appointment/{appointment_id}"),
                ("status", ",".join(sorted(OPEN_OFFER))),
            ],
        ):
            if reference_id(task.get("focus"), "Slot") in keep:
                continue
            ended = {**task, "status": "cancelled", "statusReason": {"text": "no longer waiting"}}
            service.update_in(session, "Task", task["id"], ended)

    # --- slots ------------------------------------------------------------------------

    def _slot_written(self, service: RecordService, written: Written) -> None:
        """Offer a slot that has just become free (created free, or freed) to the waiting
        list."""
        slot = written.resource
        if slot is None or slot.get("status") != "free":
            return
        before = None if written.created else written.previous()
        if before is not None and before.get("status") == "free":
            return
        lock_slot(written.session, written.id)
        offer_slot(service, written.session, slot, self.offer_window)

    # --- offers -----------------------------------------------------------------------

    def _task_written(self, service: RecordService, written: Written) -> None:
        task = written.resource
        if not is_offer(task) or written.created:
            return
        assert task is not None
        before = written.previous()
        was = (before or {}).get("status")
        now = task.get("status")
        if was == now:
            return
        session = written.session
        slot_id = reference_id(task.get("focus"), "Slot")
        if slot_id is None:
            return
        if now == "accepted" and was == "requested":
            self._book_offer(service, session, task, slot_id)
        elif now in ENDED_OFFER and was in OPEN_OFFER:
            lock_slot(session, slot_id)
            slot = content(session, "Slot", slot_id)
            if slot is not None and slot.get("status") == "busy-tentative":
                service.update_in(session, "Slot", slot_id, {**slot, "status": "free"})

    @staticmethod
    def _book_offer(
        service: RecordService, session: WriteSession, task: dict[str, Any], slot_id: str
    ) -> None:
        """Book the slot an accepted offer holds: its waiting-list entry becomes the
        booked Appointment (whose write completes the offer)."""
        entry_id = next(
            (
                found
                for found in (reference_id(r, "Appointment") for r in task.get("basedOn") or ())
                if found
            ),
            None,
        )
        entry = content(session, "Appointment", entry_id) if entry_id else None
        slot = content(session, "Slot", slot_id)
        if entry is None or slot is None or entry.get("status") != "waitlist":
            raise Conflict(
                Issue(
                    "this offer can no longer be accepted: the waiting-list entry it was "
                    "made for has left the list",
                    code="conflict",
                    expression=("Task.basedOn[0]",),
                )
            )
        booked = {
            **entry,
            "status": "booked",
            "slot": [{"reference": f"Slot/{slot_id}"}],
            "start": slot["start"],
            "end": slot["end"],
        }
        service.update_in(session, "Appointment", entry["id"], booked)
