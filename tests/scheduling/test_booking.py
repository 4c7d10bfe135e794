"""Booking: a slot is taken once, a taken slot answers 409 and changes nothing, a
cancellation frees the slot in the same write, and racing bookings leave one winner."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import RunningServer
from tests.scheduling.diaries import (
    FHIR_JSON,
    appointment,
    create,
    moment,
    put_all,
    read,
    slot,
)


def test_booking_a_free_slot_makes_it_busy(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-1", moment(1, 9))
        put_all(fhir, [free])
        booked = create(fhir, appointment(free, "related"))
        assert booked.status_code == 201, booked.text
        assert read(fhir, "Slot/book-1")["status"] == "busy"


def test_booking_a_taken_slot_returns_409_and_changes_nothing(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-2", moment(1, 10))
        put_all(fhir, [free])
        assert create(fhir, appointment(free, "related")).status_code == 201
        before = fhir.get("/Appointment", params={"slot": "Slot/book-2"}).json()["total"]
        second = create(fhir, appointment(free, "unrelated", clinic="clinic-a"))
        assert second.status_code == 409, second.text
        outcome = second.json()
        assert outcome["resourceType"] == "OperationOutcome"
        issue = outcome["issue"][0]
        assert issue["code"] == "conflict"
        assert issue["expression"] == ["Appointment.slot[0]"]
        assert "not free" in issue["diagnostics"]
        after = fhir.get("/Appointment", params={"slot": "Slot/book-2"}).json()["total"]
        assert after == before == 1


def test_an_appointment_whose_times_are_not_its_slots_is_refused(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-3", moment(1, 11))
        put_all(fhir, [free])
        wrong = {**appointment(free, "related"), "start": "2030-01-01T09:00:00Z"}
        answer = create(fhir, wrong)
        assert answer.status_code == 422, answer.text
        assert answer.json()["issue"][0]["expression"] == ["Appointment.start"]
        assert read(fhir, "Slot/book-3")["status"] == "free"


def test_cancelling_frees_the_slot_and_it_can_be_booked_again(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-4", moment(2, 9))
        put_all(fhir, [free])
        booked = create(fhir, appointment(free, "related")).json()
        cancelled = {
            **booked,
            "status": "cancelled",
            "cancelationReason": {"text": "Feeling better"},
        }
        answer = fhir.put(
            f"/Appointment/{booked['id']}",
            json=cancelled,
            headers={**FHIR_JSON, "If-Match": 'W/"1"'},
        )
        assert answer.status_code == 200, answer.text
        assert read(fhir, "Slot/book-4")["status"] == "free"
        assert create(fhir, appointment(free, "unrelated")).status_code == 201
        assert read(fhir, "Slot/book-4")["status"] == "busy"


def test_deleting_a_booking_frees_its_slot(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-9", moment(2, 11))
        put_all(fhir, [free])
        booked = create(fhir, appointment(free, "related")).json()
        assert fhir.delete(f"/Appointment/{booked['id']}").status_code in (200, 204)
        assert read(fhir, "Slot/book-9")["status"] == "free"


def test_amending_with_a_stale_if_match_is_refused(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-5", moment(2, 10))
        put_all(fhir, [free])
        booked = create(fhir, appointment(free, "related")).json()
        amended = {**booked, "comment": "Wheelchair access, please"}
        first = fhir.put(
            f"/Appointment/{booked['id']}", json=amended, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
        )
        assert first.status_code == 200, first.text
        stale = fhir.put(
            f"/Appointment/{booked['id']}",
            json={**amended, "comment": "Interpreter"},
            headers={**FHIR_JSON, "If-Match": 'W/"1"'},
        )
        assert stale.status_code == 412, stale.text
        assert read(fhir, f"Appointment/{booked['id']}")["comment"] == "Wheelchair access, please"
        assert read(fhir, "Slot/book-5")["status"] == "busy"


def test_attended_and_did_not_attend_are_recorded_and_keep_the_slot(diary: RunningServer) -> None:
    with diary.client() as fhir:
        slots = [slot("book-6", moment(3, 9)), slot("book-7", moment(3, 10))]
        put_all(fhir, slots)
        for the_slot, outcome in zip(slots, ("fulfilled", "noshow"), strict=True):
            booked = create(fhir, appointment(the_slot, "related")).json()
            answer = fhir.put(
                f"/Appointment/{booked['id']}",
                json={**booked, "status": outcome},
                headers=FHIR_JSON,
            )
            assert answer.status_code == 200, answer.text
            assert read(fhir, f"Appointment/{booked['id']}")["status"] == outcome
            assert read(fhir, f"Slot/{the_slot['id']}")["status"] == "busy"
        missed = fhir.get("/Appointment", params={"status": "noshow", "patient": "related"})
        assert missed.json()["total"] == 1


def test_a_booking_in_a_transaction_bundle_takes_the_slot_too(diary: RunningServer) -> None:
    with diary.client() as fhir:
        free = slot("book-8", moment(4, 9))
        put_all(fhir, [free])
        entry = {
            "resource": appointment(free, "related"),
            "request": {"method": "POST", "url": "Appointment"},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
        twice = fhir.post("", json=bundle, headers=FHIR_JSON)
        assert twice.status_code == 409, twice.text
        assert read(fhir, "Slot/book-8")["status"] == "free"
        once = fhir.post("", json={**bundle, "entry": [entry]}, headers=FHIR_JSON)
        assert once.status_code == 200, once.text
        assert read(fhir, "Slot/book-8")["status"] == "busy"


RACERS = 40


def test_of_many_racing_bookings_exactly_one_wins(diary: RunningServer) -> None:
    with diary.client() as fhir:
        contested = [slot(f"race-{n}", moment(5, 9, 15 * n)) for n in range(4)]
        put_all(fhir, contested)

    def book(n: int) -> int:
        with httpx.Client(
            base_url=diary.base_url,
            headers={"Authorization": f"Bearer {diary.token}"},
            timeout=120,
        ) as client:
            return create(client, appointment(contested[n % 4], "related")).status_code

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        answers = list(pool.map(book, range(RACERS)))
    assert sorted(answers) == [201] * 4 + [409] * (RACERS - 4)
    with diary.client() as fhir:
        for the_slot in contested:
            found = fhir.get("/Appointment", params={"slot": f"Slot/{the_slot['id']}"}).json()
            assert found["total"] == 1
            assert read(fhir, f"Slot/{the_slot['id']}")["status"] == "busy"
