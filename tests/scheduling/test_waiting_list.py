"""Waiting lists: a slot that becomes free goes to the first-ranked person waiting whose
wish it fits, held for them while they decide; accepting books it, declining or letting
the offer lapse hands it to the next, and it is never offered to two at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bevan.cli import main
from tests.conftest import RunningServer, database_url, start_server
from tests.people import PEOPLE
from tests.scheduling.diaries import (
    CLINICS,
    FHIR_JSON,
    NURSE,
    SERVICE,
    appointment,
    create,
    moment,
    put_all,
    read,
    slot,
    token,
    waiting,
)

MINOR_SURGERY = {"coding": [{"system": SERVICE, "code": "20664005", "display": "Minor surgery"}]}
PHYSIO = {"coding": [{"system": SERVICE, "code": "722138006", "display": "Physiotherapy"}]}
WAITERS = [
    {
        "resourceType": "Patient",
        "id": f"waiter-{n}",
        "generalPractitioner": [{"reference": "Organization/practice-a"}],
        "name": [{"family": f"Waiter{n}"}],
    }
    for n in range(1, 7)
]


@pytest.fixture(scope="module")
def diary(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose offers lapse at once, so the expiry round has work to do."""
    tmp = tmp_path_factory.mktemp(f"waiting-{backend}")
    for server in start_server(database_url(backend, tmp), tmp, offer_window_minutes=0):
        with server.client() as fhir:
            put_all(fhir, PEOPLE + CLINICS + WAITERS)
        yield server


@pytest.fixture(scope="module")
def patient_diary(server: RunningServer) -> RunningServer:
    """A server with the default offer window (two hours)."""
    with server.client() as fhir:
        put_all(fhir, PEOPLE + CLINICS + WAITERS)
    return server


def offers_to(fhir: httpx.Client, patient: str) -> list[dict[str, Any]]:
    found = fhir.get("/Task", params={"patient": f"Patient/{patient}", "status": "requested"})
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]


def cancel(fhir: httpx.Client, booked: dict[str, Any]) -> None:
    cancelled = {**booked, "status": "cancelled", "cancelationReason": {"text": "Cannot come"}}
    answer = fhir.put(f"/Appointment/{booked['id']}", json=cancelled, headers=FHIR_JSON)
    assert answer.status_code == 200, answer.text


def join(fhir: httpx.Client, entry: dict[str, Any]) -> str:
    answer = create(fhir, entry)
    assert answer.status_code == 201, answer.text
    assert answer.json()["created"]  # the queue's clock starts when they join
    return str(answer.json()["id"])


def answer_offer(fhir: httpx.Client, offer: dict[str, Any], status: str) -> httpx.Response:
    return fhir.put(f"/Task/{offer['id']}", json={**offer, "status": status}, headers=FHIR_JSON)


def test_cancel_then_offer_then_accept(patient_diary: RunningServer) -> None:
    server = patient_diary
    wanted = slot("wait-1", moment(2, 9), bookable=False)
    with server.client() as fhir:
        put_all(fhir, [wanted])
        booked = create(fhir, appointment(wanted, "related")).json()
        later = (moment(10), moment(20))
        join(fhir, waiting("waiter-1", priority=2))
        join(fhir, waiting("waiter-2", priority=1, within=later))  # not then
        first = join(fhir, waiting("waiter-3", priority=1))
        join(fhir, waiting("waiter-4", priority=1))  # joined after waiter-3
        cancel(fhir, booked)
        assert read(fhir, "Slot/wait-1")["status"] == "busy-tentative"
    patient = token(server, "patient", patient_id="waiter-3")
    with server.client(patient) as fhir:
        [offer] = offers_to(fhir, "waiter-3")
        assert offer["focus"] == {"reference": "Slot/wait-1"}
        assert offer["basedOn"] == [{"reference": f"Appointment/{first}"}]
        accepted = answer_offer(fhir, offer, "accepted")
        assert accepted.status_code == 200, accepted.text
        entry = read(fhir, f"Appointment/{first}")
    assert entry["status"] == "booked"
    assert entry["slot"] == [{"reference": "Slot/wait-1"}]
    assert entry["start"] == wanted["start"]
    with server.client() as fhir:
        assert read(fhir, "Slot/wait-1")["status"] == "busy"
        assert read(fhir, f"Task/{offer['id']}")["status"] == "completed"
        for other in ("waiter-1", "waiter-2", "waiter-4"):
            assert offers_to(fhir, other) == []


def test_a_new_slot_goes_to_the_person_waiting_and_they_may_book_it_themselves(
    patient_diary: RunningServer,
) -> None:
    server = patient_diary
    with server.client() as fhir:
        entry = join(fhir, waiting("waiter-5", service=NURSE))
        nurse = {
            "resourceType": "Schedule",
            "id": "nurse-a",
            "active": True,
            "serviceType": [NURSE],
            "actor": [{"reference": "Location/clinic-a"}],
        }
        new = slot("wait-2", moment(3, 9), schedule="nurse-a", service=NURSE, bookable=False)
        put_all(fhir, [nurse, new])
        assert read(fhir, "Slot/wait-2")["status"] == "busy-tentative"
        elsewhere = slot("wait-3", moment(3, 10), schedule="nurse-a", service=NURSE)
        put_all(fhir, [elsewhere])  # nobody else waits: it stays free
        assert read(fhir, "Slot/wait-3")["status"] == "free"
    # Someone not offered it cannot book the held slot.
    with server.client(token(server, "patient", patient_id="related")) as fhir:
        taken = create(fhir, appointment(new, "related"))
        assert taken.status_code == 409, taken.text
    # The one offered it books it by turning their entry into the booking.
    with server.client(token(server, "patient", patient_id="waiter-5")) as fhir:
        mine = read(fhir, f"Appointment/{entry}")
        booked = {
            **mine,
            "status": "booked",
            "slot": [{"reference": "Slot/wait-2"}],
            "start": new["start"],
            "end": new["end"],
        }
        answer = fhir.put(f"/Appointment/{entry}", json=booked, headers=FHIR_JSON)
        assert answer.status_code == 200, answer.text
    with server.client() as fhir:
        assert read(fhir, "Slot/wait-2")["status"] == "busy"
        done = fhir.get("/Task", params={"focus": "Slot/wait-2"}).json()
        assert [e["resource"]["status"] for e in done["entry"]] == ["completed"]


def test_a_patient_answers_only_their_own_offer(patient_diary: RunningServer) -> None:
    server = patient_diary
    wanted = slot("wait-4", moment(4, 9), service=MINOR_SURGERY)
    with server.client() as fhir:
        put_all(fhir, [wanted])
        booked = create(fhir, appointment(wanted, "related")).json()
        join(fhir, waiting("waiter-6", priority=0, service=MINOR_SURGERY))
        cancel(fhir, booked)
        [offer] = offers_to(fhir, "waiter-6")
    with server.client(token(server, "patient", patient_id="related")) as fhir:
        assert fhir.get(f"/Task/{offer['id']}").status_code == 403
        assert answer_offer(fhir, offer, "accepted").status_code == 403
    with server.client(token(server, "patient", patient_id="waiter-6")) as fhir:
        changed = fhir.put(
            f"/Task/{offer['id']}",
            json={**offer, "status": "accepted", "focus": {"reference": "Slot/wait-1"}},
            headers=FHIR_JSON,
        )
        assert changed.status_code == 403, changed.text
        declined = answer_offer(fhir, offer, "rejected")
        assert declined.status_code == 200, declined.text
    with server.client() as fhir:
        # Nobody else waits for it now: it is free again.
        assert read(fhir, "Slot/wait-4")["status"] == "free"


def test_leaving_the_list_hands_an_open_offer_to_the_next(patient_diary: RunningServer) -> None:
    server = patient_diary
    wanted = slot("wait-5", moment(5, 9), service=PHYSIO)
    with server.client() as fhir:
        put_all(fhir, [wanted])
        booked = create(fhir, appointment(wanted, "related")).json()
        first = join(fhir, waiting("waiter-1", priority=1, service=PHYSIO))
        join(fhir, waiting("waiter-2", priority=2, service=PHYSIO))
        cancel(fhir, booked)
        [offer] = offers_to(fhir, "waiter-1")
        entry = read(fhir, f"Appointment/{first}")
        cancel(fhir, entry)  # waiter-1 no longer needs it
        assert read(fhir, f"Task/{offer['id']}")["status"] == "cancelled"
        [then] = offers_to(fhir, "waiter-2")
        assert then["focus"] == {"reference": "Slot/wait-5"}
        assert read(fhir, "Slot/wait-5")["status"] == "busy-tentative"


def run_expiry(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> str:
    url = server.store.engine.url.render_as_string(hide_password=False)
    command = ["waitlist", "expire-offers", "--data-dir", str(server.data_dir), "--database", url]
    assert main(command) == 0
    return capsys.readouterr().out


def test_cancel_then_offer_then_expire_then_next(
    diary: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = slot("lapse-1", moment(2, 11))
    with diary.client() as fhir:
        put_all(fhir, [wanted])
        booked = create(fhir, appointment(wanted, "related")).json()
        first = join(fhir, waiting("waiter-1", priority=1))
        second = join(fhir, waiting("waiter-2", priority=2))
        third = join(fhir, waiting("waiter-3", priority=3))
        cancel(fhir, booked)
        [offer] = offers_to(fhir, "waiter-1")
        assert offer_to_nobody_else(fhir, "waiter-1")
    assert "Ended 1 lapsed offers" in run_expiry(diary, capsys)
    with diary.client() as fhir:
        ended = read(fhir, f"Task/{offer['id']}")
        assert ended["status"] == "cancelled"
        assert ended["statusReason"]["text"] == "the offer window passed"
        [then] = offers_to(fhir, "waiter-2")
        assert then["basedOn"] == [{"reference": f"Appointment/{second}"}]
        assert offer_to_nobody_else(fhir, "waiter-2")
        assert read(fhir, "Slot/lapse-1")["status"] == "busy-tentative"
    # The second declines: the third is asked, and the first is not asked again.
    with diary.client(token(diary, "patient", patient_id="waiter-2")) as fhir:
        assert answer_offer(fhir, then, "rejected").status_code == 200
    with diary.client() as fhir:
        [last] = offers_to(fhir, "waiter-3")
        assert last["basedOn"] == [{"reference": f"Appointment/{third}"}]
        assert offer_to_nobody_else(fhir, "waiter-3")
    assert "Ended 1 lapsed offers" in run_expiry(diary, capsys)
    with diary.client() as fhir:
        # Everyone has let it go: the slot is free, and everyone is still waiting.
        assert read(fhir, "Slot/lapse-1")["status"] == "free"
        for entry in (first, second, third):
            assert read(fhir, f"Appointment/{entry}")["status"] == "waitlist"
    assert "Ended 0 lapsed offers" in run_expiry(diary, capsys)


def offer_to_nobody_else(fhir: httpx.Client, patient: str) -> bool:
    found = fhir.get("/Task", params={"status": "requested,accepted", "_count": "100"}).json()
    return [e["resource"]["for"]["reference"] for e in found.get("entry", [])] == [
        f"Patient/{patient}"
    ]


def test_waiting_list_statistics_count_each_service(
    diary: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with diary.client() as fhir:
        put_all(fhir, [slot("lapse-past", moment(-2, 9))])  # its time passed unbooked
        answer = fhir.get("/Appointment/$waitlist-statistics")
        assert answer.status_code == 200, answer.text
        services = {
            parts["serviceType"]: parts
            for each in answer.json()["parameter"]
            for parts in [
                {p["name"]: next(v for k, v in p.items() if k != "name") for p in each["part"]}
            ]
        }
    gp = services[f"{SERVICE}|394814009"]
    # waiter-1, -2 and -3 wait still; each joined moments ago.
    assert gp["waiting"] == 3
    assert gp["medianWaitDays"] == 0
    assert gp["offersOpen"] == 0
    assert gp["slotsWasted"] == 1
    with diary.client(token(diary, "patient", patient_id="waiter-1")) as fhir:
        refused = fhir.get("/Appointment/$waitlist-statistics")
        assert refused.status_code == 403, refused.text
    url = diary.store.engine.url.render_as_string(hide_password=False)
    assert main(["waitlist", "stats", "--data-dir", str(diary.data_dir), "--database", url]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {
        "service": f"{SERVICE}|394814009",
        "waiting": 3,
        "median_wait_days": 0.0,
        "offers_open": 0,
        "slots_wasted": 1,
    } in printed
