"""`bevan serve --workers 2`: racing bookings reaching both processes leave exactly one
winner per slot, and the server's own round ends lapsed offers and hands each slot on,
never to two people at once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bevan.security.tokens import TokenAuthority
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from tests.conftest import RunningServer, database_url, free_port, serve_command
from tests.people import PEOPLE
from tests.scheduling.diaries import (
    CLINICS,
    FHIR_JSON,
    appointment,
    create,
    moment,
    put_all,
    read,
    slot,
    waiting,
)
from tests.test_workers import wait_until_answering

CLIENTS = 60
SLOTS = 5


@pytest.fixture(scope="module")
def two_workers(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Two worker processes on one database, whose offers lapse at once and whose round
    of ending lapsed offers runs every half second."""
    data_dir = tmp_path_factory.mktemp(f"workers-{backend}")
    url = database_url(backend, data_dir)
    store = RecordStore.from_url(url)
    upgrade(store.engine)
    port = free_port()
    command = serve_command(data_dir, port, "--workers", "2", "--database", url)
    environment = {
        **os.environ,
        "BEVAN_OFFER_WINDOW_MINUTES": "0",
        "BEVAN_OFFER_CHECK_SECONDS": "0.5",
        "BEVAN_REQUEST_LOG": "off",
    }
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment
    )
    try:
        wait_until_answering(port, process)
        token = TokenAuthority.in_directory(data_dir).issue("test-system", "system")
        server = RunningServer(f"http://127.0.0.1:{port}/fhir", token, store, data_dir)
        with server.client() as fhir:
            put_all(fhir, PEOPLE + CLINICS)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)
        store.close()


def test_racing_bookings_on_two_workers_leave_exactly_one_winner_per_slot(
    two_workers: RunningServer,
) -> None:
    contested = [slot(f"workers-{n}", moment(6, 9, 15 * n)) for n in range(SLOTS)]
    with two_workers.client() as fhir:
        put_all(fhir, contested)

    def book(n: int) -> int:
        # A connection of its own each: the two workers take them in turn.
        with two_workers.client() as client:
            return create(client, appointment(contested[n % SLOTS], "related")).status_code

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(book, range(CLIENTS)))
    assert sorted(answers) == [201] * SLOTS + [409] * (CLIENTS - SLOTS)
    with two_workers.client() as fhir:
        booked = fhir.get("/Appointment", params={"status": "booked", "_count": "100"}).json()
        assert sorted(e["resource"]["slot"][0]["reference"] for e in booked["entry"]) == sorted(
            f"Slot/{s['id']}" for s in contested
        )
        for the_slot in contested:
            assert read(fhir, f"Slot/{the_slot['id']}")["status"] == "busy"


def test_the_servers_round_hands_a_lapsed_offer_to_the_next_person(
    two_workers: RunningServer,
) -> None:
    wanted = slot("workers-offer", moment(7, 9))
    with two_workers.client() as fhir:
        put_all(fhir, [wanted])
        booked = create(fhir, appointment(wanted, "related")).json()
        for patient, priority in (("related", 1), ("unrelated", 2)):
            entry = waiting(patient, priority=priority)
            if patient == "unrelated":  # waits at the other practice's clinic: never fits
                entry = waiting(patient, priority=priority, clinic="clinic-b")
            assert create(fhir, entry).status_code == 201
        assert create(fhir, waiting("sensitive", priority=3)).status_code == 201
        cancelled = {**booked, "status": "cancelled", "cancelationReason": {"text": "Away"}}
        answer = fhir.put(f"/Appointment/{booked['id']}", json=cancelled, headers=FHIR_JSON)
        assert answer.status_code == 200, answer.text
        # related is offered it first; the round ends that offer and asks sensitive;
        # then that lapses too, and with nobody left the slot is free again.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            offers = fhir.get("/Task", params={"focus": "Slot/workers-offer", "_count": "50"})
            tasks = [e["resource"] for e in offers.json().get("entry", [])]
            if len(tasks) == 2 and all(t["status"] == "cancelled" for t in tasks):
                break
            open_now = [t for t in tasks if t["status"] in ("requested", "accepted")]
            assert len(open_now) <= 1, "a slot was offered to two people at once"
            time.sleep(0.2)
        else:
            raise AssertionError(f"the offers did not lapse in turn: {tasks}")
        assert sorted(t["for"]["reference"] for t in tasks) == [
            "Patient/related",
            "Patient/sensitive",
        ]
        assert {t["statusReason"]["text"] for t in tasks} == {"the offer window passed"}
        assert read(fhir, "Slot/workers-offer")["status"] == "free"
