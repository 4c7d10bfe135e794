"""Who may do what in the diary: patients book, amend and cancel only their own
appointments in slots open to them; receptionists book for their own practice's
patients; everything else is refused and changes nothing."""

from __future__ import annotations

from tests.conftest import RunningServer
from tests.scheduling.diaries import (
    FHIR_JSON,
    appointment,
    create,
    moment,
    put_all,
    read,
    slot,
    token,
)


def test_a_patient_books_and_cancels_their_own_appointment(diary: RunningServer) -> None:
    free = slot("own-1", moment(1, 9))
    with diary.client() as fhir:
        put_all(fhir, [free])
    with diary.client(token(diary, "patient", patient_id="related")) as fhir:
        booked = create(fhir, appointment(free, "related"))
        assert booked.status_code == 201, booked.text
        mine = booked.json()
        amended = fhir.put(
            f"/Appointment/{mine['id']}",
            json={**mine, "comment": "I may be a few minutes late"},
            headers={**FHIR_JSON, "If-Match": 'W/"1"'},
        )
        assert amended.status_code == 200, amended.text
        cancelled = fhir.put(
            f"/Appointment/{mine['id']}",
            json={**amended.json(), "status": "cancelled", "cancelationReason": {"text": "Better"}},
            headers={**FHIR_JSON, "If-Match": 'W/"2"'},
        )
        assert cancelled.status_code == 200, cancelled.text
    with diary.client() as fhir:
        assert read(fhir, "Slot/own-1")["status"] == "free"


def test_a_patient_token_is_refused_on_someone_elses_appointment(diary: RunningServer) -> None:
    free, other = slot("own-2", moment(1, 10)), slot("own-3", moment(1, 11))
    with diary.client() as fhir:
        put_all(fhir, [free, other])
        theirs = create(fhir, appointment(free, "unrelated")).json()
    with diary.client(token(diary, "patient", patient_id="related")) as fhir:
        assert fhir.get(f"/Appointment/{theirs['id']}").status_code == 403
        cancelled = fhir.put(
            f"/Appointment/{theirs['id']}",
            json={**theirs, "status": "cancelled"},
            headers=FHIR_JSON,
        )
        assert cancelled.status_code == 403, cancelled.text
        for_someone_else = create(fhir, appointment(other, "unrelated"))
        assert for_someone_else.status_code == 403, for_someone_else.text
        found = fhir.get("/Appointment", params={"slot": "Slot/own-2"}).json()
        assert found["total"] == 0
    with diary.client() as fhir:
        assert read(fhir, f"Appointment/{theirs['id']}")["status"] == "booked"
        assert read(fhir, "Slot/own-3")["status"] == "free"


def test_a_patient_cannot_book_a_slot_the_practice_books(diary: RunningServer) -> None:
    practice_only = slot("own-4", moment(1, 12), bookable=False)
    with diary.client() as fhir:
        put_all(fhir, [practice_only])
    with diary.client(token(diary, "patient", patient_id="related")) as fhir:
        refused = create(fhir, appointment(practice_only, "related"))
        assert refused.status_code == 403, refused.text
        assert refused.json()["issue"][0]["expression"] == ["Appointment.slot[0]"]
    with diary.client() as fhir:
        assert read(fhir, "Slot/own-4")["status"] == "free"
    receptionist = token(diary, "receptionist", organisation="A81001")
    with diary.client(receptionist) as fhir:
        assert create(fhir, appointment(practice_only, "related")).status_code == 201


def test_a_patient_cannot_cancel_an_appointment_in_the_past(diary: RunningServer) -> None:
    yesterday = slot("own-5", moment(-1, 9))
    with diary.client() as fhir:
        put_all(fhir, [yesterday])
        booked = create(fhir, appointment(yesterday, "related")).json()
    with diary.client(token(diary, "patient", patient_id="related")) as fhir:
        refused = fhir.put(
            f"/Appointment/{booked['id']}",
            json={**booked, "status": "cancelled"},
            headers=FHIR_JSON,
        )
        assert refused.status_code == 403, refused.text
        assert "contact the practice" in refused.json()["issue"][0]["diagnostics"]
        no_show = fhir.put(
            f"/Appointment/{booked['id']}",
            json={**booked, "status": "fulfilled"},
            headers=FHIR_JSON,
        )
        assert no_show.status_code == 403, no_show.text
    with diary.client() as fhir:
        assert read(fhir, f"Appointment/{booked['id']}")["status"] == "booked"
        attended = fhir.put(
            f"/Appointment/{booked['id']}",
            json={**booked, "status": "fulfilled"},
            headers=FHIR_JSON,
        )
        assert attended.status_code == 200, attended.text


def test_a_receptionist_books_for_their_practices_patients_only(diary: RunningServer) -> None:
    free = slot("own-6", moment(2, 9))
    with diary.client() as fhir:
        put_all(fhir, [free])
    other_practice = token(diary, "receptionist", organisation="B82002")
    with diary.client(other_practice) as fhir:
        refused = create(fhir, appointment(free, "related"))
        assert refused.status_code == 403, refused.text
    with diary.client() as fhir:
        assert read(fhir, "Slot/own-6")["status"] == "free"
    own_practice = token(diary, "receptionist", organisation="A81001")
    with diary.client(own_practice) as fhir:
        booked = create(fhir, appointment(free, "related"))
        assert booked.status_code == 201, booked.text
    with diary.client(other_practice) as fhir:
        assert fhir.get(f"/Appointment/{booked.json()['id']}").status_code == 403
        seen = fhir.get("/Appointment", params={"slot": "Slot/own-6"}).json()
        assert seen["total"] == 0


def test_a_clinician_sees_their_practices_diary_and_not_anothers_patients(
    diary: RunningServer,
) -> None:
    with diary.client() as fhir:
        ours, theirs = slot("own-7", moment(3, 9)), slot("own-8", moment(3, 9), schedule="diary-b")
        put_all(fhir, [ours, theirs])
        create(fhir, appointment(ours, "related"))
        create(fhir, appointment(theirs, "unrelated", clinic="clinic-b"))
    clinician = token(diary, "clinician", organisation="A81001")
    with diary.client(clinician) as fhir:
        found = fhir.get(
            "/Appointment", params={"date": f"ge{moment(3, 0).date()}", "_count": "50"}
        )
        patients = {
            p["actor"]["reference"]
            for e in found.json().get("entry", [])
            for p in e["resource"]["participant"]
            if p["actor"]["reference"].startswith("Patient/")
        }
        assert patients == {"Patient/related"}


def test_every_booking_is_audited(diary: RunningServer) -> None:
    free = slot("own-9", moment(4, 9))
    with diary.client() as fhir:
        put_all(fhir, [free])
    with diary.client(token(diary, "patient", patient_id="related")) as fhir:
        booked = create(fhir, appointment(free, "related")).json()
        trail = fhir.get("/Patient/related/$audit", params={"_count": "100"})
        assert trail.status_code == 200, trail.text
        assert f"Appointment/{booked['id']}" in trail.text
