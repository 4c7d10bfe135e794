"""Who may see what: every role, by interaction, by own / related / unrelated / sensitive
patient, against a real server. The expected answers are written as a table."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.people import PEOPLE, RESTRICTED

FHIR_JSON = {"Content-Type": "application/fhir+json"}

# Patients: "related" is registered at the users' practice (A81001), "unrelated" at
# another (B82002), "sensitive" at the users' practice but marked restricted (R).
DATA = [
    *PEOPLE,
    {
        "resourceType": "Observation",
        "id": "obs-related",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/related"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-unrelated",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/unrelated"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-sensitive",
        "meta": RESTRICTED,
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/sensitive"},
    },
    {
        "resourceType": "Device",
        "id": "pulse-oximeter-1",
        "patient": {"reference": "Patient/related"},
    },
]

ROLES = {
    "system": {"role": "system"},
    "clinician": {"role": "clinician", "organisation": "A81001"},
    "nurse": {"role": "nurse", "organisation": "A81001"},
    "receptionist": {"role": "receptionist", "organisation": "A81001"},
    "analyst": {"role": "analyst", "organisation": "A81001"},
    "privacy-officer": {"role": "privacy-officer", "organisation": "A81001"},
    "patient": {"role": "patient", "patient_id": "related"},
    "device": {"role": "device", "patient_id": "related", "device_id": "pulse-oximeter-1"},
}

# role: (read Patient, read Observation) for related, unrelated, sensitive; A = allowed, D = denied
READS = {
    "system": ("AAA", "AAA"),
    "clinician": ("ADA", "ADA"),
    "nurse": ("ADD", "ADD"),
    "receptionist": ("ADD", "DDD"),
    "analyst": ("DDD", "DDD"),
    "privacy-officer": ("DDD", "DDD"),
    "patient": ("ADD", "ADD"),
    "device": ("DDD", "DDD"),
}
# role: create an Observation for related, unrelated; update the related Patient
WRITES = {
    "system": ("AA", "A"),
    "clinician": ("AD", "A"),
    "nurse": ("AD", "A"),
    "receptionist": ("DD", "A"),
    "analyst": ("DD", "D"),
    "privacy-officer": ("DD", "D"),
    "patient": ("AD", "A"),
    "device": ("AD", "D"),
}
# role: the Observation ids a search for all Observations returns (None: refused)
SEARCHES = {
    "system": {"obs-related", "obs-unrelated", "obs-sensitive"},
    "clinician": {"obs-related", "obs-sensitive"},
    "nurse": {"obs-related"},
    "receptionist": None,
    "analyst": None,
    "privacy-officer": None,
    "patient": {"obs-related"},
    "device": None,
}
TARGETS = ("related", "unrelated", "sensitive")


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for resource in DATA:
            response = fhir.put(
                f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
            )
            assert response.status_code in (200, 201), response.text
    return server


def client_for(server: RunningServer, role: str, scope: str | None = None) -> httpx.Client:
    claims = ROLES[role]
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-user",
        claims["role"],
        scope=scope,
        organisation=claims.get("organisation"),
        patient_id=claims.get("patient_id"),
        device_id=claims.get("device_id"),
    )
    return server.client(token)


def expected(code: str) -> int:
    return 200 if code == "A" else 403


def cases() -> Iterator[tuple[str, str, str, str]]:
    for role, (patients, observations) in READS.items():
        for index, target in enumerate(TARGETS):
            yield role, "Patient", target, patients[index]
            yield role, "Observation", f"obs-{target}", observations[index]


@pytest.mark.parametrize(("role", "resource_type", "id", "answer"), list(cases()))
def test_read_matrix(
    loaded: RunningServer, role: str, resource_type: str, id: str, answer: str
) -> None:
    with client_for(loaded, role) as fhir:
        response = fhir.get(f"/{resource_type}/{id}")
    assert response.status_code == expected(answer), (
        f"{role} reading {resource_type}/{id}: {response.text}"
    )
    if response.status_code == 403:
        issue = response.json()["issue"][0]
        assert issue["code"] == "forbidden" and issue["diagnostics"]


@pytest.mark.parametrize("role", list(WRITES))
def test_write_matrix(loaded: RunningServer, role: str) -> None:
    creates, update = WRITES[role]
    with client_for(loaded, role) as fhir:
        for index, target in enumerate(("related", "unrelated")):
            body = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "home reading"},
                "subject": {"reference": f"Patient/{target}"},
            }
            response = fhir.post("/Observation", json=body, headers=FHIR_JSON)
            want = 201 if creates[index] == "A" else 403
            assert response.status_code == want, f"{role} creating for {target}: {response.text}"
        with client_for(loaded, "system") as system:
            current = system.get("/Patient/related").json()
        current["telecom"] = [{"system": "phone", "value": "01495 000000"}]
        response = fhir.put("/Patient/related", json=current, headers=FHIR_JSON)
        assert response.status_code == expected(update), (
            f"{role} updating the related Patient: {response.text}"
        )


@pytest.mark.parametrize("role", list(SEARCHES))
def test_searches_never_leak(loaded: RunningServer, role: str) -> None:
    with client_for(loaded, role) as fhir:
        response = fhir.get("/Observation", params={"code:text": "pulse", "_count": 100})
    if SEARCHES[role] is None:
        assert response.status_code == 403
        return
    assert response.status_code == 200, response.text
    bundle = response.json()
    found = {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}
    assert found == SEARCHES[role]
    assert bundle["total"] == len(SEARCHES[role])


def test_includes_are_filtered_too(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as fhir:
        bundle = fhir.get(
            "/Patient", params={"_revinclude": "Observation:subject", "_count": 100}
        ).json()
    ids = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert "unrelated" not in ids and "obs-unrelated" not in ids
    assert {"related", "obs-related"} <= ids


def test_break_glass_opens_one_patient_for_a_while_and_is_queued(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as fhir:
        assert fhir.get("/Patient/unrelated").status_code == 403
        refused = fhir.get("/Patient/unrelated", headers={"X-Bevan-Break-Glass": "no"})
        assert refused.status_code == 403  # a reason must say something
        opened = fhir.get(
            "/Patient/unrelated",
            headers={"X-Bevan-Break-Glass": "Unconscious in A&E, no other record"},
        )
        assert opened.status_code == 200
        assert fhir.get("/Observation/obs-unrelated").status_code == 200  # the grant lasts
        found = fhir.get("/Observation", params={"subject": "Patient/unrelated"}).json()
        assert "obs-unrelated" in {e["resource"]["id"] for e in found["entry"]}
    with client_for(loaded, "nurse") as other:
        assert other.get("/Patient/unrelated").status_code == 403  # the grant was not theirs
    from bevan.store.access import BreakGlassLedger

    queue = BreakGlassLedger(loaded.store).queue()
    assert any(g.patient_id == "unrelated" and g.user_id == "clinician-user" for g in queue)


def test_scopes_limit_what_a_token_may_do(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician", scope="user/Patient.rs") as fhir:
        assert fhir.get("/Patient/related").status_code == 200
        assert fhir.get("/Observation/obs-related").status_code == 403
        body = {"resourceType": "Patient", "id": "related", "name": [{"family": "Changed"}]}
        assert fhir.put("/Patient/related", json=body, headers=FHIR_JSON).status_code == 403
    with client_for(loaded, "system", scope="system/Observation.r") as fhir:
        assert fhir.get("/Observation/obs-related").status_code == 200
        assert fhir.get("/Observation", params={"code:text": "pulse"}).status_code == 403  # no .s


def test_bundles_apply_the_same_rules_entry_by_entry(loaded: RunningServer) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/related"}},
            {"request": {"method": "GET", "url": "Patient/unrelated"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/unrelated"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with client_for(loaded, "nurse") as fhir:
        answer = fhir.post("", json=bundle, headers=FHIR_JSON).json()
    statuses = [e["response"]["status"][:3] for e in answer["entry"]]
    assert statuses == ["200", "403", "403"]


def test_a_privacy_officer_reviews_break_glass_and_closes_it(loaded: RunningServer) -> None:
    with client_for(loaded, "nurse") as fhir:
        reason = {"X-Bevan-Break-Glass": "Collapsed at the surgery door"}
        assert fhir.get("/Patient/unrelated", headers=reason).status_code == 200
    with client_for(loaded, "clinician") as fhir:
        assert fhir.get("/$break-glass").status_code == 403
    with client_for(loaded, "privacy-officer") as officer:
        queue = officer.get("/$break-glass").json()["grants"]
        grant = next(g for g in queue if g["user_id"] == "nurse-user")
        assert (
            grant["reason"] == "Collapsed at the surgery door"
            and grant["patient_id"] == "unrelated"
        )
        assert officer.post(f"/$break-glass/{grant['id']}", json={}).status_code == 400
        closed = officer.post(
            f"/$break-glass/{grant['id']}", json={"outcome": "Appropriate: emergency care"}
        )
        assert closed.status_code == 200
        assert all(g["id"] != grant["id"] for g in officer.get("/$break-glass").json()["grants"])
        assert (
            officer.post(f"/$break-glass/{grant['id']}", json={"outcome": "again"}).status_code
            == 404
        )


def test_the_patient_app_changes_only_contact_details(loaded: RunningServer) -> None:
    with client_for(loaded, "patient") as fhir:
        current = fhir.get("/Patient/related").json()
        moved = {**current, "address": [{"line": ["1 New Street"], "postalCode": "NP22 3AB"}]}
        assert fhir.put("/Patient/related", json=moved, headers=FHIR_JSON).status_code == 200
        current = fhir.get("/Patient/related").json()
        renamed = {**current, "birthDate": "1990-01-01"}
        refused = fhir.put("/Patient/related", json=renamed, headers=FHIR_JSON)
        assert refused.status_code == 403
        assert "birthDate" in refused.json()["issue"][0]["diagnostics"]
