"""Subscriptions tell their subscribers of new matches within moments, over real HTTP and
websockets, deliver only what the subscriber may read, and only to endpoints the
operator allowed; a failing endpoint never holds up a write."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bevan.security.tokens import TokenAuthority
from bevan.store.subscriptions import DeliveryLock
from tests.conftest import RunningServer, database_url, free_port, serve_command, start_server
from tests.monitoring.readings import HIGH, at, new_patient, reading_set, scores, transaction
from tests.people import PEOPLE, RESTRICTED

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HookReceiver:
    """A subscriber's web server: records every call; paths under /hooks/failing fail."""

    base: str
    calls: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, wanted: Callable[[Received], bool], timeout: float = 10.0) -> list[Received]:
        """Return the calls wanted picks, once there is at least one (or none, in time)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                found = [call for call in self.calls if wanted(call)]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self.arrived.wait(left)

    def to(self, path: str) -> list[Received]:
        with self.arrived:
            return [call for call in self.calls if call.path.startswith(path)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[HookReceiver]:
    hooks: HookReceiver

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            with hooks.arrived:
                hooks.calls.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                hooks.arrived.notify_all()
            self.send_response(500 if self.path.startswith("/hooks/failing") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hooks = HookReceiver(f"http://127.0.0.1:{http.server_address[1]}")
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield hooks
    http.shutdown()
    http.server_close()


@pytest.fixture(scope="module")
def server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, receiver: HookReceiver
) -> Iterator[RunningServer]:
    """A server allowed to deliver under the receiver's /hooks, quick to give up on a
    failing endpoint, with delivery running (as the app's startup runs it)."""
    tmp = tmp_path_factory.mktemp(f"bevan-subscriptions-{backend}")
    for running in start_server(
        database_url(backend, tmp),
        tmp,
        subscription_endpoints=(f"{receiver.base}/hooks",),
        subscription_retry_seconds=0.05,
        subscription_attempts=3,
    ):
        delivery = running.app.state.services.delivery
        delivery.start()
        with running.client() as fhir:
            for resource in PEOPLE:
                response = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
                assert response.status_code in (200, 201), response.text
        try:
            yield running
        finally:
            delivery.stop()


def client_as(server: RunningServer, name: str, role: str, **claims: Any) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(name, role, **claims)
    return server.client(token)


def token_for(server: RunningServer, name: str, role: str, **claims: Any) -> str:
    return TokenAuthority.in_directory(server.data_dir).issue(name, role, **claims)


def subscription(criteria: str, endpoint: str | None, **channel: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "escalations for the virtual ward",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }
    if endpoint is None:
        del made["channel"]["endpoint"]
    return made


def task(patient: str, priority: str = "stat", **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "for": {"reference": f"Patient/{patient}"},
        "description": "NEWS2 7: urgent assessment",
        **more,
    }


def subscribe(fhir: httpx.Client, made: dict[str, Any]) -> dict[str, Any]:
    response = fhir.post("/Subscription", json=made, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return dict(response.json())


def status_becomes(fhir: httpx.Client, id: str, status: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = fhir.get(f"/Subscription/{id}").json()
        if current["status"] == status or time.monotonic() > deadline:
            return dict(current)
        time.sleep(0.05)


def test_a_rest_hook_subscriber_receives_the_task_a_write_created(
    server: RunningServer, receiver: HookReceiver, fhir: httpx.Client
) -> None:
    endpoint = f"{receiver.base}/hooks/full-{server.store.dialect.name}"
    made = subscribe(
        fhir,
        subscription(
            "Task?status=requested&priority=stat", endpoint, payload="application/fhir+json"
        ),
    )
    assert made["status"] == "requested"
    handshakes = receiver.wait_for(
        lambda c: (
            c.path == endpoint.removeprefix(receiver.base)
            and c.headers.get("X-Bevan-Notification") == "handshake"
        )
    )
    assert handshakes and handshakes[0].headers["X-Bevan-Subscription"] == made["id"]
    assert status_becomes(fhir, made["id"], "active")["status"] == "active"

    routine = fhir.post("/Task", json=task("related", "routine"), headers=FHIR_JSON).json()
    stat = fhir.post("/Task", json=task("related"), headers=FHIR_JSON).json()
    path = f"{endpoint.removeprefix(receiver.base)}/Task/{stat['id']}"
    delivered = receiver.wait_for(lambda c: c.path == path)
    assert delivered, "the stat Task was not delivered"
    call = delivered[0]
    assert call.method == "PUT"
    assert call.headers["Content-Type"] == "application/fhir+json"
    assert call.headers["X-Bevan-Subscription"] == made["id"]
    assert orjson.loads(call.body) == stat
    assert not receiver.to(f"{endpoint.removeprefix(receiver.base)}/Task/{routine['id']}")


def test_an_id_only_subscription_names_the_resource_without_its_content(
    server: RunningServer, receiver: HookReceiver, fhir: httpx.Client
) -> None:
    endpoint = f"{receiver.base}/hooks/id-only-{server.store.dialect.name}"
    made = subscribe(fhir, subscription("Task?priority=asap", endpoint))
    status_becomes(fhir, made["id"], "active")
    written = fhir.post("/Task", json=task("related", "asap"), headers=FHIR_JSON).json()
    delivered = receiver.wait_for(
        lambda c: c.headers.get("X-Bevan-Resource") == f"Task/{written['id']}"
    )
    assert delivered
    assert delivered[0].method == "POST"
    assert delivered[0].path == endpoint.removeprefix(receiver.base)
    assert delivered[0].body == b""


def test_a_failing_endpoint_is_marked_error_while_writes_keep_succeeding(
    server: RunningServer, receiver: HookReceiver, fhir: httpx.Client
) -> None:
    endpoint = f"{receiver.base}/hooks/failing-{server.store.dialect.name}"
    made = subscribe(fhir, subscription("Task?status=requested", endpoint))
    started = time.monotonic()
    for _ in range(20):
        assert fhir.post("/Task", json=task("related"), headers=FHIR_JSON).status_code == 201
    assert time.monotonic() - started < 10
    failed = status_becomes(fhir, made["id"], "error")
    assert failed["status"] == "error"
    assert "HTTP 500" in failed["error"] and "3 times" in failed["error"]
    tries = len(receiver.to(endpoint.removeprefix(receiver.base)))
    assert tries == 3
    assert fhir.post("/Task", json=task("related"), headers=FHIR_JSON).status_code == 201
    time.sleep(0.5)
    assert len(receiver.to(endpoint.removeprefix(receiver.base))) == tries  # given up


def test_an_endpoint_the_operator_did_not_allow_is_refused(
    receiver: HookReceiver, fhir: httpx.Client
) -> None:
    elsewhere = "https://collector.example.org/hooks"
    response = fhir.post(
        "/Subscription", json=subscription("Task?status=requested", elsewhere), headers=FHIR_JSON
    )
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert elsewhere in issue["diagnostics"]
    assert "BEVAN_SUBSCRIPTION_ENDPOINTS" in issue["diagnostics"]
    assert issue["expression"] == ["Subscription.channel.endpoint"]
    listed = fhir.get("/Subscription").json()
    assert all(
        e["resource"]["channel"].get("endpoint") != elsewhere for e in listed.get("entry", [])
    )
    # A prefix is matched at a path boundary, not as any string that starts alike.
    near = fhir.post(
        "/Subscription",
        json=subscription("Task?status=requested", f"{receiver.base}/hooks-elsewhere/x"),
        headers=FHIR_JSON,
    )
    assert near.status_code == 422


def test_a_restricted_users_subscription_delivers_nothing_they_may_not_read(
    server: RunningServer, receiver: HookReceiver, fhir: httpx.Client
) -> None:
    endpoint = f"{receiver.base}/hooks/nurse-{server.store.dialect.name}"
    with client_as(server, "nurse-sub", "nurse", organisation="A81001") as nurse:
        made = subscribe(
            nurse,
            subscription("Task?status=requested", endpoint, payload="application/fhir+json"),
        )
        status_becomes(nurse, made["id"], "active")
        hidden = [
            fhir.post("/Task", json=task("unrelated"), headers=FHIR_JSON).json()["id"],
            fhir.post("/Task", json=task("related", meta=RESTRICTED), headers=FHIR_JSON).json()[
                "id"
            ],
        ]
        shown = fhir.post("/Task", json=task("related"), headers=FHIR_JSON).json()["id"]
        prefix = endpoint.removeprefix(receiver.base)
        assert receiver.wait_for(lambda c: c.path == f"{prefix}/Task/{shown}")
        time.sleep(0.5)  # written before the one shown: anything of theirs would be here
        delivered = {c.path.rsplit("/", 1)[-1] for c in receiver.to(f"{prefix}/Task/")}
        assert delivered == {shown}
        assert not set(hidden) & delivered
        # What was sent is in the audit trail as the nurse's read of it.
        trail = fhir.get("/AuditEvent", params={"entity": f"Task/{shown}", "agent": "nurse-sub"})
        assert trail.status_code == 200, trail.text
        assert any(
            f"Subscription/{made['id']}" in entry["resource"]["outcomeDesc"]
            for entry in trail.json().get("entry", [])
        )

        # Their subscription is theirs alone: another user is told it does not exist.
        with client_as(server, "other-nurse", "nurse", organisation="A81001") as other:
            assert other.get(f"/Subscription/{made['id']}").status_code == 404
            assert other.delete(f"/Subscription/{made['id']}").status_code == 204  # as if none
            assert all(
                e["resource"]["id"] != made["id"]
                for e in other.get("/Subscription").json().get("entry", [])
            )
        assert nurse.get(f"/Subscription/{made['id']}").status_code == 200
        assert nurse.delete(f"/Subscription/{made['id']}").status_code == 204


def test_a_device_may_not_subscribe(server: RunningServer, receiver: HookReceiver) -> None:
    with client_as(server, "pulse-oximeter", "device", patient_id="related") as device:
        response = device.post(
            "/Subscription",
            json=subscription("Task?status=requested", f"{receiver.base}/hooks"),
            headers=FHIR_JSON,
        )
    assert response.status_code == 403


def test_a_subscription_in_a_bundle_is_refused(receiver: HookReceiver, fhir: httpx.Client) -> None:
    response = fhir.post(
        "",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": subscription("Task?status=requested", f"{receiver.base}/hooks"),
                    "request": {"method": "POST", "url": "Subscription"},
                }
            ],
        },
        headers=FHIR_JSON,
    )
    assert response.status_code == 405
    assert "POST [base]/Subscription" in response.json()["issue"][0]["diagnostics"]


def test_a_websocket_bound_to_a_subscription_is_pinged_for_each_match(
    server: RunningServer, fhir: httpx.Client
) -> None:
    token = token_for(server, "clinician-ws", "clinician", organisation="A81001")
    with server.client(token) as clinician:
        made = subscribe(
            clinician,
            {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "the ward's worklist",
                "criteria": "Task?priority=urgent",
                "channel": {"type": "websocket"},
            },
        )
    url = server.base_url.replace("http://", "ws://") + "/$subscription-websocket"
    with pytest.raises(InvalidStatus):
        connect(url, open_timeout=5).close()  # no token: refused before it opens
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        socket.send(f"bind {made['id']}")
        assert socket.recv(timeout=5) == f"bound {made['id']}"
        socket.send("bind not-theirs")
        assert socket.recv(timeout=5).startswith("error not-theirs")
        fhir.post("/Task", json=task("unrelated", "urgent"), headers=FHIR_JSON)  # not theirs
        fhir.post("/Task", json=task("related", "urgent"), headers=FHIR_JSON)
        assert socket.recv(timeout=5) == f"ping {made['id']}"
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)  # one ping: the other patient's Task is not theirs
    assert fhir.get(f"/Subscription/{made['id']}").json()["status"] == "active"


def test_with_two_worker_processes_each_match_is_delivered_once(
    receiver: HookReceiver, tmp_path: Path
) -> None:
    port = free_port()
    token = TokenAuthority.in_directory(tmp_path).issue("ward-system", "system")
    environment = {**os.environ, "BEVAN_SUBSCRIPTION_ENDPOINTS": f"{receiver.base}/hooks"}
    process = subprocess.Popen(
        serve_command(tmp_path, port, "--workers", "2"),
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as fhir:
            patient = {"resourceType": "Patient", "id": "related", "name": [{"family": "Ward"}]}
            assert fhir.put("/Patient/related", json=patient).status_code in (200, 201)
            made = subscribe(
                fhir,
                subscription(
                    "Task?priority=stat",
                    f"{receiver.base}/hooks/two-workers",
                    payload="application/fhir+json",
                ),
            )
            assert status_becomes(fhir, made["id"], "active", timeout=20)["status"] == "active"
            # New connections each time, so both workers take writes.
            written = [
                httpx.post(f"{base}/Task", json=task("related"), headers=headers).json()["id"]
                for _ in range(10)
            ]
        for id in written:
            assert receiver.wait_for(lambda c, id=id: c.path == f"/hooks/two-workers/Task/{id}")
        time.sleep(1.0)
        paths = [c.path for c in receiver.to("/hooks/two-workers/Task/")]
        assert sorted(paths) == sorted(f"/hooks/two-workers/Task/{id}" for id in written)
        assert len(receiver.to("/hooks/two-workers")) == len(written) + 1  # and one handshake
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_only_one_process_at_a_time_holds_delivery(server: RunningServer) -> None:
    delivering = server.app.state.services.delivery
    deadline = time.monotonic() + 10
    while not delivering.lock.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivering.lock.held  # the server's own delivery took it as it started
    another = DeliveryLock(server.store.engine)  # as another worker process would
    try:
        assert not another.try_take()
    finally:
        another.release()


def test_a_deteriorating_patients_escalation_task_reaches_the_practices_subscriber(
    server: RunningServer, receiver: HookReceiver, fhir: httpx.Client
) -> None:
    endpoint = f"{receiver.base}/hooks/escalations-{server.store.dialect.name}"
    with client_as(server, "gp-on-call", "clinician", organisation="A81001") as clinician:
        made = subscribe(
            clinician,
            subscription(
                "Task?status=requested&priority=stat", endpoint, payload="application/fhir+json"
            ),
        )
        status_becomes(clinician, made["id"], "active")
    patient = new_patient(fhir)
    sent = time.monotonic()
    readings = fhir.post("/", json=transaction(reading_set(patient, at(5), HIGH)))
    assert readings.status_code == 200, readings.text
    prefix = f"{endpoint.removeprefix(receiver.base)}/Task/"
    delivered = receiver.wait_for(lambda c: c.path.startswith(prefix))
    assert delivered and time.monotonic() - sent < 10
    escalation = orjson.loads(delivered[0].body)
    assert escalation["for"]["reference"] == f"Patient/{patient}"
    assert escalation["priority"] == "stat"
    (score,) = scores(fhir, patient)
    assert escalation["focus"]["reference"] == f"Observation/{score['id']}"
