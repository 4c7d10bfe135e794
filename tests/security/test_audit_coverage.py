"""Every request leaves an audit entry, however it ends: the public metadata, paths and
methods no route takes, searches sent in a body, and every OAuth endpoint. A stranger's
entry is cut short, and a forwarded address is believed only from a trusted proxy."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bevan.security.oauth_clients import ClientRegistry
from bevan.security.users import UserDirectory
from bevan.store.audit import AuditLog
from tests.conftest import RunningServer, database_url, start_server
from tests.security.test_oauth_code_flow import PASSWORD, REDIRECT, App, pkce, root, sign_in

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def newest(server: RunningServer, count: int = 1) -> list[dict]:
    """Return the newest entries' AuditEvents, newest first."""
    return [orjson.loads(e.content) for e in AuditLog(server.store.engine).find(limit=count)]


def detail(event: dict, name: str) -> str | None:
    for entity in event["entity"]:
        for item in entity.get("detail", ()):
            if item["type"] == name:
                return str(item["valueString"])
    return None


def query_of(event: dict) -> str | None:
    for entity in event["entity"]:
        if "query" in entity:
            return base64.b64decode(entity["query"]).decode()
    return None


def test_metadata_unknown_paths_and_wrong_methods_are_audited(server: RunningServer) -> None:
    log = AuditLog(server.store.engine)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for method, path, status in (
            ("GET", "/metadata", 200),
            ("GET", "/../../etc/passwd-probe", 404),
            ("GET", "/Patient/x/y/z/w", 404),
            ("TRACE", "/Patient", 405),
        ):
            before = log.count()
            answer = http.request(method, path)
            assert answer.status_code == status
            assert log.count() == before + 1, f"{method} {path} left no audit entry"
            event = newest(server)[0]
            assert detail(event, "http-status") == str(status)
            assert detail(event, "method") == method


def test_a_search_sent_in_a_body_is_audited_with_its_query(server: RunningServer) -> None:
    with server.client() as fhir:
        answer = fhir.post(
            "/Patient/_search",
            content=b"family=Nightingale&_count=3",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 200
    assert "family=Nightingale" in (query_of(newest(server)[0]) or "")


@pytest.fixture
def portal(server: RunningServer) -> App:
    import uuid

    username = f"audited-{uuid.uuid4().hex[:8]}"
    UserDirectory.on(server.store.engine).add(
        username, "patient", password=PASSWORD, patient_id="someone"
    )
    client, _ = ClientRegistry.on(server.store.engine).register(
        "Portal", redirect_uris=[REDIRECT], public=True
    )
    return App(client.client_id, username, "someone")


def test_sign_ins_tokens_and_revocations_are_audited(server: RunningServer, portal: App) -> None:
    log = AuditLog(server.store.engine)
    _, challenge = pkce()
    before = log.count()
    failed = sign_in(server, portal, challenge, password="not the password")
    assert failed.status_code in (200, 401)  # the form again, with an error
    assert log.count() == before + 2  # the form, and the failed sign-in
    event = newest(server)[0]
    assert event["type"]["code"] == "110114" and event["subtype"][0]["code"] == "110122"
    assert event["outcome"] != "0" and portal.username in event["outcomeDesc"]
    succeeded = sign_in(server, portal, challenge)
    assert succeeded.status_code == 303
    event = newest(server)[0]
    assert event["outcome"] == "0"
    assert event["agent"][0]["who"]["identifier"]["value"] == portal.username
    token = httpx.post(
        f"{root(server)}/auth/token",
        data={"grant_type": "authorization_code", "code": "made-up", "client_id": "nobody"},
        timeout=30,
    )
    assert token.status_code >= 400
    event = newest(server)[0]
    assert event["subtype"][0]["code"] == "110122" and event["outcome"] == "4"
    revoke = httpx.post(f"{root(server)}/auth/revoke", data={"token": "x"}, timeout=30)
    event = newest(server)[0]
    assert event["subtype"][0]["code"] == "110123"
    assert detail(event, "http-status") == str(revoke.status_code)


def test_a_stranger_cannot_grow_the_trail_by_kilobytes_a_request(server: RunningServer) -> None:
    log = AuditLog(server.store.engine)
    big = "A" * 6000
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for path in (f"/Patient?name={big}", f"/Patient/{big}", f"/{big}"):
            http.get(
                path,
                headers={"User-Agent": big, "X-Request-Id": big, "Authorization": f"Bearer {big}"},
            )
            entry = log.find(limit=1)[0]
            assert len(entry.content) < 3000, f"{len(entry.content)} bytes kept of {path[:20]}..."
            assert "cut to" in (detail(orjson.loads(entry.content), "truncated") or "")


def test_a_forwarded_address_is_not_believed_from_an_untrusted_peer(
    server: RunningServer,
) -> None:
    with server.client() as fhir:
        fhir.get(
            "/metadata",
            headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.7"},
        )
    event = newest(server)[0]
    assert event["agent"][0]["network"]["address"] == "127.0.0.1"


@pytest.fixture(scope="module")
def behind_a_proxy(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"proxied-{backend}")
    yield from start_server(
        database_url(backend, tmp), tmp, trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")
    )


def test_a_forwarded_address_is_believed_from_a_trusted_proxy(
    behind_a_proxy: RunningServer,
) -> None:
    with behind_a_proxy.client() as fhir:
        # A client that itself claims an address, through two trusted proxies: the
        # nearest address no trusted proxy vouches for is the client's.
        fhir.get("/metadata", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.1.2.3"})
        first = newest(behind_a_proxy)[0]
        fhir.get("/metadata", headers={"Forwarded": 'for="[2001:db8::7]:4711"'})
        second = newest(behind_a_proxy)[0]
    assert first["agent"][0]["network"]["address"] == "203.0.113.9"
    assert second["agent"][0]["network"]["address"] == "2001:db8::7"


FORWARDED_ORIGIN = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ehr.example.nhs.uk"}
A_PATIENT = {"resourceType": "Patient", "name": [{"family": "Forwarded"}]}


def test_a_forwarded_host_and_scheme_are_not_believed_from_an_untrusted_peer(
    server: RunningServer,
) -> None:
    with server.client() as fhir:
        created = fhir.post("/Patient", json=A_PATIENT, headers={**FHIR_JSON, **FORWARDED_ORIGIN})
    assert created.headers["location"].startswith("http://127.0.0.1:")


def test_a_forwarded_host_and_scheme_are_believed_from_a_trusted_proxy(
    behind_a_proxy: RunningServer,
) -> None:
    with behind_a_proxy.client() as fhir:
        created = fhir.post("/Patient", json=A_PATIENT, headers={**FHIR_JSON, **FORWARDED_ORIGIN})
    assert created.headers["location"].startswith("https://ehr.example.nhs.uk/fhir/Patient/")


def test_bevan_serve_believes_no_forwarded_address_unless_told_to(tmp_path: Path) -> None:
    import subprocess
    import time

    from bevan.store.engine import make_engine
    from tests.conftest import free_port, serve_command

    port = free_port()
    process = subprocess.Popen(
        serve_command(tmp_path, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/fhir/Patient/anyone",
                    headers={"X-Forwarded-For": "203.0.113.9"},
                    timeout=1,
                )
                if answer.status_code == 401:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=60)
    engine = make_engine(f"sqlite:///{tmp_path / 'bevan.db'}")
    try:
        addresses = {
            orjson.loads(e.content)["agent"][0]["network"]["address"]
            for e in AuditLog(engine).find(limit=10)
        }
    finally:
        engine.dispose()
    assert addresses == {"127.0.0.1"}
