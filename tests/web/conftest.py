"""A clinic for the web app's tests: a server over real HTTP (SQLite and PostgreSQL)
holding the demo's synthetic practices and a few of its patients, with an account for
every role, and a browser-free way to sign in through the web app's own OAuth flow."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from bevan.security.users import UserDirectory
from bevan.store.identity import IdentityStore
from bevan.synth import generate_patients, shared_resources
from tests.conftest import RunningServer, database_url, start_server

SEED = 7
PATIENTS = 6
PASSWORD = "a long and memorable passphrase"
VITAL_SIGNS = "vital-signs"
QUICK_HASHES = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@dataclass
class Clinic:
    """The server, the patients the tests look at and each role's username."""

    server: RunningServer
    root: str
    patient: dict[str, Any]  # registered at the staff's practice, with vital signs
    practice: str  # the staff's ODS code
    other_patient: dict[str, Any]  # registered at another practice
    usernames: dict[str, str]

    browsers: dict[str, httpx.Client] = field(default_factory=dict)

    def fhir(self) -> httpx.Client:
        return self.server.client()

    def browser(self, role: str) -> httpx.Client:
        """Return a client signed in as role, shared by the module's tests (signing in
        checks a password hash, which is slow on purpose)."""
        if role not in self.browsers:
            self.browsers[role] = sign_in(self, role)
        return self.browsers[role]


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def _vital_signs(resources: list[dict[str, Any]]) -> int:
    return sum(
        1
        for r in resources
        if r["resourceType"] == "Observation"
        and any(
            c.get("code") == VITAL_SIGNS for cat in r.get("category", []) for c in cat["coding"]
        )
    )


def _referenced(
    shared: list[dict[str, Any]], records: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Return the shared resources the records refer to (and what those refer to)."""
    by_key = {f"{r['resourceType']}/{r['id']}": r for r in shared}
    wanted: set[str] = set()
    pending = [str(records)]
    while pending:
        for key in re.findall(r"'reference': '([A-Za-z]+/[^']+)'", pending.pop()):
            if key in by_key and key not in wanted:
                wanted.add(key)
                pending.append(str(by_key[key]))
    return [r for key, r in by_key.items() if key in wanted or r["resourceType"] == "Organization"]


def _practice(patient: dict[str, Any], organisations: dict[str, str]) -> str:
    return organisations[patient["generalPractitioner"][0]["reference"].split("/")[1]]


@pytest.fixture(scope="module")
def clinic(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    tmp = tmp_path_factory.mktemp(f"bevan-web-{backend}")
    for server in start_server(database_url(backend, tmp), tmp):
        records = list(generate_patients(PATIENTS, SEED))
        shared = _referenced(shared_resources(SEED), records)
        organisations = {
            r["id"]: r["identifier"][0]["value"]
            for r in shared
            if r["resourceType"] == "Organization" and r.get("identifier")
        }
        with server.client() as fhir:
            loaded = fhir.post("", json=_transaction(shared), headers=FHIR_JSON)
            assert loaded.status_code == 200, loaded.text[:500]
            for resources in records:
                loaded = fhir.post("", json=_transaction(resources), headers=FHIR_JSON)
                assert loaded.status_code == 200, loaded.text[:500]
        records.sort(key=_vital_signs, reverse=True)
        patient = records[0][0]
        practice = _practice(patient, organisations)
        other = next(r[0] for r in records if _practice(r[0], organisations) != practice)
        # Cheap hashes: these accounts' passwords are not what the tests are about.
        users = UserDirectory(IdentityStore(server.store.engine), QUICK_HASHES)
        usernames = {}
        for role in ("clinician", "nurse", "receptionist", "analyst", "privacy-officer"):
            username = f"{role}-web"
            users.add(
                username,
                role,
                password=PASSWORD,
                organisation=practice,
                display_name=f"Test {role.replace('-', ' ')}",
            )
            usernames[role] = username
        users.add("patient-web", "patient", password=PASSWORD, patient_id=patient["id"])
        usernames["patient"] = "patient-web"
        yield Clinic(
            server,
            server.base_url.removesuffix("/fhir"),
            patient,
            practice,
            other,
            usernames,
        )


FHIR_JSON = {"Content-Type": "application/fhir+json"}


def sign_in(
    clinic: Clinic, role: str, username: str | None = None, password: str = PASSWORD
) -> httpx.Client:
    """Return a client signed in to the web app as role (or as username), through its
    OAuth sign-in."""
    client = httpx.Client(base_url=clinic.root, follow_redirects=False, timeout=60)
    started = client.get("/sign-in")
    assert started.status_code == 303, started.text
    form = client.get(started.headers["location"])
    assert form.status_code == 200, form.text
    fields = {
        k: html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.text)
    }
    fields.update(username=username or clinic.usernames[role], password=password, action="sign-in")
    signed = client.post("/auth/authorize", data=fields)
    assert signed.status_code == 303, signed.text
    back = client.get(signed.headers["location"])
    assert back.status_code == 303, back.text
    return client


def csrf_of(page: httpx.Response) -> str:
    """Return the CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no form token"
    return found.group(1)


def text_of(page: httpx.Response) -> str:
    """Return what a page says in its main content, as plain text."""
    body = page.text
    main = re.search(r"<main.*?</main>", body, re.S)
    shown = main.group(0) if main else body
    banner = re.search(r'<section class="bevan-banner.*?</section>', body, re.S)
    if banner:
        shown = banner.group(0) + shown
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", shown)).split())
