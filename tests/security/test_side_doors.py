"""Side doors: every way of asking "does it exist?" answers as a read would.

An attacker who may not read a diagnosis tries to learn of it another way: a
conditional create, update or delete, a Bundle's ifNoneExist, a conditional reference,
a chained search or `_has`. Each door is a column of the table below, each role a row,
and each letter the answer expected for the related, unrelated and sensitive patient's
diagnosis, against a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
DEPRESSION = "35489007"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
RESTRICTED = {
    "security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    ]
}

# "related" is registered at the users' practice (A81001), "unrelated" at another
# (B82002); "sensitive" is registered at the users' practice and their diagnosis is
# marked restricted (R). Nobody has the ghost's NHS number.
TARGETS = ("related", "unrelated", "sensitive")
NHS_NUMBERS = {"related": "9000000009", "unrelated": "9000000017", "sensitive": "9000000025"}
GHOST = "9000000033"
PRACTICES = {"related": "practice-a", "unrelated": "practice-b", "sensitive": "practice-a"}


def _data() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": "practice-a",
            "identifier": [{"system": ODS, "value": "A81001"}],
            "name": "Tredegar Surgery",
        },
        {
            "resourceType": "Organization",
            "id": "practice-b",
            "identifier": [{"system": ODS, "value": "B82002"}],
            "name": "Other Surgery",
        },
    ]
    for target in TARGETS:
        data.append(
            {
                "resourceType": "Patient",
                "id": target,
                "identifier": [{"system": NHS, "value": NHS_NUMBERS[target]}],
                "generalPractitioner": [{"reference": f"Organization/{PRACTICES[target]}"}],
                "name": [{"family": target.title()}],
            }
        )
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": f"cond-{target}",
            "code": {"coding": [{"system": SNOMED, "code": DEPRESSION}]},
            "subject": {"reference": f"Patient/{target}"},
        }
        if target == "sensitive":
            condition["meta"] = RESTRICTED
        data.append(condition)
        data.append(
            {
                "resourceType": "Appointment",
                "id": f"appt-{target}",
                "status": "booked",
                "reasonReference": [{"reference": f"Condition/cond-{target}"}],
                "participant": [
                    {"actor": {"reference": f"Patient/{target}"}, "status": "accepted"}
                ],
            }
        )
    return data


DATA = _data()
ORIGINALS = {r["id"]: r for r in DATA}

ROLES = {
    "system": {"role": "system"},
    "clinician": {"role": "clinician", "organisation": "A81001"},
    "nurse": {"role": "nurse", "organisation": "A81001"},
    "receptionist": {"role": "receptionist", "organisation": "A81001"},
    "patient": {"role": "patient", "patient_id": "related"},
    "analyst": {"role": "analyst", "organisation": "A81001"},
}

# role: door -> the answer for the related, unrelated and sensitive patient's diagnosis.
# A: answers as a match (the caller may read it); N: exactly as when nothing matches
# (the ghost's answer), naming neither the diagnosis nor its patient; F: refused (403)
# for the kind of resource, whatever the data.
SIDE_DOORS = {
    "system": {
        "conditional create": "AAA",
        "conditional update": "AAA",
        "conditional delete": "AAA",
        "Bundle ifNoneExist": "AAA",
        "conditional reference": "AAA",
        "chain": "AAA",
        "_has": "AAA",
    },
    "clinician": {
        "conditional create": "ANA",
        "conditional update": "ANA",
        "conditional delete": "ANA",
        "Bundle ifNoneExist": "ANA",
        "conditional reference": "ANA",
        "chain": "ANA",
        "_has": "ANA",
    },
    "nurse": {
        "conditional create": "ANN",
        "conditional update": "ANN",
        "conditional delete": "ANN",
        "Bundle ifNoneExist": "ANN",
        "conditional reference": "ANN",
        "chain": "ANN",
        "_has": "ANN",
    },
    "receptionist": {
        "conditional create": "FFF",
        "conditional update": "FFF",
        "conditional delete": "FFF",
        "Bundle ifNoneExist": "FFF",
        "conditional reference": "FFF",
        "chain": "FFF",
        "_has": "FFF",
    },
    "patient": {
        "conditional create": "FFF",
        "conditional update": "FFF",
        "conditional delete": "FFF",
        "Bundle ifNoneExist": "FFF",
        "conditional reference": "ANN",
        "chain": "ANN",
        "_has": "ANN",
    },
    "analyst": {
        "conditional create": "FFF",
        "conditional update": "FFF",
        "conditional delete": "FFF",
        "Bundle ifNoneExist": "FFF",
        "conditional reference": "FFF",
        "chain": "FFF",
        "_has": "FFF",
    },
}


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        for resource in DATA:
            response = fhir.put(
                f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON
            )
            assert response.status_code in (200, 201), response.text
    return server


def client_for(server: RunningServer, role: str) -> httpx.Client:
    claims = ROLES[role]
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-user",
        claims["role"],
        organisation=claims.get("organisation"),
        patient_id=claims.get("patient_id"),
    )
    return server.client(token)


# --- the doors --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the attacker saw: the status, the outcome's text (the NHS number asked about
    blanked out), and whether the answer told of the target's diagnosis."""

    status: int
    text: tuple[str, ...]
    revealed: bool
    body: str


def _answer(response: httpx.Response, nhs: str, revealed: bool) -> Answer:
    text: tuple[str, ...] = ()
    if response.content and response.headers.get("content-type", "").startswith("application"):
        body = response.json()
        if body.get("resourceType") == "OperationOutcome":
            text = tuple(i.get("diagnostics", "").replace(nhs, "N") for i in body["issue"])
    return Answer(response.status_code, text, revealed, response.text)


def _probe_search(nhs: str) -> str:
    return f"patient.identifier={NHS}|{nhs}&code={SNOMED}|{DEPRESSION}"


def _probe_condition() -> dict[str, Any]:
    # A harmless record the attacker may write: about their own related patient.
    return {
        "resourceType": "Condition",
        "code": {"text": "probe"},
        "subject": {"reference": "Patient/related"},
    }


def _id_of(location: str | None) -> str | None:
    if not location:
        return None
    return location.split("/fhir/", 1)[-1].split("/_history", 1)[0]


def _tidy(system: httpx.Client, written: str | None, target: str | None) -> None:
    """Put the fixtures back as they were: remove what a probe created, restore what it
    changed or deleted."""
    if written and not written.startswith("Condition/cond-"):
        system.delete(f"/{written}")
    if target is not None:
        original = ORIGINALS[f"cond-{target}"]
        current = system.get(f"/Condition/cond-{target}")
        if current.status_code != 200 or current.json().get("code") != original["code"]:
            system.put(f"/Condition/cond-{target}", json=original, headers=FHIR_JSON)


def conditional_create(
    fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None
) -> Answer:
    response = fhir.post(
        "/Condition",
        json=_probe_condition(),
        headers={**FHIR_JSON, "If-None-Exist": _probe_search(nhs)},
    )
    written = _id_of(response.headers.get("location"))
    _tidy(system, written, target)
    return _answer(
        response, nhs, response.status_code == 200 and written == f"Condition/cond-{target}"
    )


def conditional_update(
    fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None
) -> Answer:
    response = fhir.put(
        f"/Condition?{_probe_search(nhs)}", json=_probe_condition(), headers=FHIR_JSON
    )
    written = _id_of(response.headers.get("location"))
    _tidy(system, written, target)
    return _answer(
        response, nhs, response.status_code == 200 and written == f"Condition/cond-{target}"
    )


def conditional_delete(
    fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None
) -> Answer:
    response = fhir.delete(f"/Condition?{_probe_search(nhs)}")
    gone = target is not None and system.get(f"/Condition/cond-{target}").status_code == 410
    # Still referred to (an Appointment's reason), so kept with a 409 that names it: to
    # a caller who may read it, that tells as much as deleting it would.
    kept = response.status_code == 409 and f"Condition/cond-{target}" in response.text
    _tidy(system, None, target)
    return _answer(response, nhs, gone or kept)


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def bundle_if_none_exist(
    fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None
) -> Answer:
    bundle = _transaction(
        {
            "resource": _probe_condition(),
            "request": {"method": "POST", "url": "Condition", "ifNoneExist": _probe_search(nhs)},
        }
    )
    response = fhir.post("", json=bundle, headers=FHIR_JSON)
    written = None
    if response.status_code == 200:
        written = _id_of(response.json()["entry"][0]["response"].get("location"))
    _tidy(system, written, target)
    return _answer(response, nhs, written == f"Condition/cond-{target}")


def conditional_reference(
    fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None
) -> Answer:
    # A reading about the attacker's own patient, "focused" on someone's diagnosis.
    bundle = _transaction(
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "mood score"},
                "subject": {"reference": "Patient/related"},
                "focus": [{"reference": f"Condition?{_probe_search(nhs)}"}],
            },
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    response = fhir.post("", json=bundle, headers=FHIR_JSON)
    pointed = None
    if response.status_code == 200:
        written = _id_of(response.json()["entry"][0]["response"].get("location"))
        stored = system.get(f"/{written}").json()
        pointed = stored["focus"][0]["reference"]
        system.delete(f"/{written}")
    return _answer(response, nhs, pointed == f"Condition/cond-{target}")


def _found(response: httpx.Response) -> set[str]:
    if response.status_code != 200:
        return set()
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
        if e["search"]["mode"] == "match"
    }


def chain(fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None) -> Answer:
    # Appointments booked for someone with this NHS number, for depression.
    response = fhir.get(
        "/Appointment",
        params={
            "patient.identifier": f"{NHS}|{nhs}",
            "reason-reference:Condition.code": f"{SNOMED}|{DEPRESSION}",
        },
    )
    return _answer(response, nhs, f"Appointment/appt-{target}" in _found(response))


def has(fhir: httpx.Client, system: httpx.Client, nhs: str, target: str | None) -> Answer:
    # The patient with this NHS number, if they have been diagnosed with depression.
    response = fhir.get(
        "/Patient",
        params={
            "identifier": f"{NHS}|{nhs}",
            "_has:Condition:patient:code": f"{SNOMED}|{DEPRESSION}",
        },
    )
    return _answer(response, nhs, f"Patient/{target}" in _found(response))


DOORS: dict[str, Callable[[httpx.Client, httpx.Client, str, str | None], Answer]] = {
    "conditional create": conditional_create,
    "conditional update": conditional_update,
    "conditional delete": conditional_delete,
    "Bundle ifNoneExist": bundle_if_none_exist,
    "conditional reference": conditional_reference,
    "chain": chain,
    "_has": has,
}


def _names_hidden(answer: Answer, target: str) -> bool:
    return bool(re.search(rf"\b(cond-)?{target}\b", answer.body))


@pytest.mark.parametrize(
    ("role", "door"), [(role, door) for role, doors in SIDE_DOORS.items() for door in doors]
)
def test_a_side_door_answers_as_a_read_would(loaded: RunningServer, role: str, door: str) -> None:
    probe = DOORS[door]
    with client_for(loaded, role) as fhir, client_for(loaded, "system") as system:
        nothing = probe(fhir, system, GHOST, None)
        for target, letter in zip(TARGETS, SIDE_DOORS[role][door], strict=True):
            answer = probe(fhir, system, NHS_NUMBERS[target], target)
            where = f"{role} through {door} about the {target} patient: {answer.body}"
            if letter == "A":
                assert answer.revealed, where
                continue
            assert not answer.revealed, where
            assert (answer.status, answer.text) == (nothing.status, nothing.text), (
                f"{where}\n(when nothing matches: {nothing.body})"
            )
            assert not _names_hidden(answer, target), where
            if letter == "F":
                assert answer.status == 403, where
                assert answer.text and "forbidden" in answer.body, where


@pytest.mark.parametrize("role", [r for r in SIDE_DOORS if r != "system"])
def test_reading_the_diagnosis_agrees_with_the_side_doors(loaded: RunningServer, role: str) -> None:
    rows = {row for row in SIDE_DOORS[role].values() if "F" not in row}
    with client_for(loaded, role) as fhir:
        statuses = [fhir.get(f"/Condition/cond-{t}").status_code for t in TARGETS]
    for row in rows:
        assert statuses == [200 if letter == "A" else 403 for letter in row], (role, row)
    if not rows:
        assert statuses == [403, 403, 403]


# --- refusals that say why ------------------------------------------------------------------


def _issue(response: httpx.Response) -> dict[str, Any]:
    issue: dict[str, Any] = response.json()["issue"][0]
    return issue


def test_an_analyst_cannot_learn_which_practice_an_nhs_number_is_registered_with(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "analyst") as fhir:
        response = fhir.get(
            "/Organization",
            params={
                "_has:Patient:general-practitioner:identifier": f"{NHS}|{NHS_NUMBERS['unrelated']}"
            },
        )
    assert response.status_code == 403, response.text
    issue = _issue(response)
    assert issue["code"] == "forbidden" and issue["severity"] == "error"
    assert "_has:Patient:general-practitioner" in issue["diagnostics"]
    assert "analyst" in issue["diagnostics"]
    assert issue["expression"] == ["Organization?_has:Patient:general-practitioner:identifier"]
    assert "practice-b" not in response.text


def test_a_receptionist_cannot_find_appointments_by_diagnosis(loaded: RunningServer) -> None:
    with client_for(loaded, "receptionist") as fhir:
        booked = fhir.get("/Appointment", params={"_count": 100})
        refused = fhir.get(
            "/Appointment", params={"reason-reference:Condition.code": f"{SNOMED}|{DEPRESSION}"}
        )
    assert booked.status_code == 200  # their own bookings they may search
    assert refused.status_code == 403, refused.text
    issue = _issue(refused)
    assert issue["code"] == "forbidden"
    assert "reason-reference" in issue["diagnostics"] and "Condition" in issue["diagnostics"]
    assert issue["expression"][0].startswith("Appointment?reason-reference")


def test_a_token_without_the_scope_for_a_chained_type_is_refused_the_chain(
    loaded: RunningServer,
) -> None:
    search = {"reason-reference:Condition.code": f"{SNOMED}|{DEPRESSION}"}
    for scope, status in (
        ("user/Appointment.rs", 403),
        ("user/Appointment.rs user/Condition.rs", 200),
    ):
        token = TokenAuthority.in_directory(loaded.data_dir).issue(
            "scoped-clinician", "clinician", scope=scope, organisation="A81001"
        )
        with loaded.client(token) as fhir:
            response = fhir.get("/Appointment", params=search)
        assert response.status_code == status, f"{scope}: {response.text}"
    assert _found(response) == {"Appointment/appt-related", "Appointment/appt-sensitive"}


def test_a_conditional_reference_to_a_type_the_caller_may_not_search_is_refused(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "receptionist") as fhir:
        bundle = _transaction(
            {
                "resource": {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "participant": [
                        {"actor": {"reference": "Patient/related"}, "status": "needs-action"}
                    ],
                    "reasonReference": [{"reference": f"Condition?{_probe_search(GHOST)}"}],
                },
                "request": {"method": "POST", "url": "Appointment"},
            }
        )
        response = fhir.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 403, response.text
    issue = _issue(response)
    assert issue["code"] == "forbidden" and "Condition" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[0].resource"]


def test_a_receptionist_cannot_reach_a_diagnosis_two_hops_away(loaded: RunningServer) -> None:
    name = "_has:Appointment:patient:reason-reference:Condition.code"
    with client_for(loaded, "receptionist") as fhir:
        response = fhir.get("/Patient", params={name: f"{SNOMED}|{DEPRESSION}"})
    assert response.status_code == 403, response.text
    issue = _issue(response)
    assert issue["code"] == "forbidden"
    assert "Condition" in issue["diagnostics"] and "receptionist" in issue["diagnostics"]
    assert issue["expression"] == [f"Patient?{name}"]


def test_breaking_the_glass_opens_the_side_doors_to_that_patient_only(
    loaded: RunningServer,
) -> None:
    token = TokenAuthority.in_directory(loaded.data_dir).issue(
        "emergency-clinician", "clinician", organisation="A81001"
    )
    with loaded.client(token) as fhir, client_for(loaded, "system") as system:
        assert not has(fhir, system, NHS_NUMBERS["unrelated"], "unrelated").revealed
        reason = {"X-Bevan-Break-Glass": "Unconscious in A&E, no other record"}
        assert fhir.get("/Patient/unrelated", headers=reason).status_code == 200
        assert has(fhir, system, NHS_NUMBERS["unrelated"], "unrelated").revealed
        assert conditional_create(fhir, system, NHS_NUMBERS["unrelated"], "unrelated").revealed
