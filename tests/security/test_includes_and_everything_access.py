"""Includes and $everything add resources to an answer: each one added is judged as if it
were read (the role's type limits, the token's scopes, its patients), and what may not be
seen is left out as if it did not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = {"Content-Type": "application/fhir+json"}

DATA = [
    {
        "resourceType": "Organization",
        "id": "inc-practice",
        "identifier": [{"system": ODS, "value": "C83003"}],
        "name": "Blaenavon Surgery",
    },
    {
        "resourceType": "Patient",
        "id": "inc-related",
        "generalPractitioner": [{"reference": "Organization/inc-practice"}],
        "name": [{"family": "Related"}],
    },
    {
        "resourceType": "Observation",
        "id": "inc-pulse",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/inc-related"},
    },
    {
        "resourceType": "Condition",
        "id": "inc-diabetes",
        "code": {"text": "type 2 diabetes"},
        "subject": {"reference": "Patient/inc-related"},
    },
]


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
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-includes", role, scope=scope, organisation="C83003"
    )
    return server.client(token)


def ids_in(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") != "outcome"
    }


def outcomes_in(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]


def test_a_receptionist_learns_nothing_through_revinclude(loaded: RunningServer) -> None:
    with client_for(loaded, "receptionist") as fhir:
        response = fhir.get(
            "/Patient", params={"_id": "inc-related", "_revinclude": "Observation:patient"}
        )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert ids_in(bundle) == {"Patient/inc-related"}
    assert "inc-pulse" not in response.text
    note = outcomes_in(bundle)[0]["issue"][0]
    assert "_revinclude=Observation:patient" in note["diagnostics"]
    assert note["expression"] == ["Patient?_revinclude"]


def test_a_receptionist_gets_no_clinical_record_through_everything(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "receptionist") as fhir:
        response = fhir.get("/Patient/inc-related/$everything")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert ids_in(bundle) == {"Patient/inc-related", "Organization/inc-practice"}
    assert bundle["total"] == 2


def test_a_token_scoped_to_patients_gets_no_observations_through_everything(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician", scope="user/Patient.rs") as fhir:
        bundle = fhir.get("/Patient/inc-related/$everything").json()
    assert ids_in(bundle) == {"Patient/inc-related"}
    assert bundle["total"] == 1


def test_a_system_token_scoped_to_patients_gets_no_conditions_through_everything(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "system", scope="system/Patient.rs") as fhir:
        bundle = fhir.get("/Patient/inc-related/$everything").json()
    assert ids_in(bundle) == {"Patient/inc-related"}


def test_a_token_scoped_to_observations_learns_nothing_of_the_patient_through_include(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician", scope="user/Observation.rs") as fhir:
        bundle = fhir.get(
            "/Observation", params={"_id": "inc-pulse", "_include": "Observation:subject"}
        ).json()
    assert ids_in(bundle) == {"Observation/inc-pulse"}
    assert "Related" not in str(bundle)


def test_iterating_includes_go_on_from_nothing_that_was_hidden(loaded: RunningServer) -> None:
    # The Organization is readable, but is reached only through the hidden Patient.
    scope = "user/Observation.rs user/Organization.rs"
    with client_for(loaded, "clinician", scope=scope) as fhir:
        bundle = fhir.get(
            "/Observation",
            params=[
                ("_id", "inc-pulse"),
                ("_include", "Observation:subject"),
                ("_include:iterate", "Patient:general-practitioner"),
            ],
        ).json()
    assert ids_in(bundle) == {"Observation/inc-pulse"}


def test_system_accounts_with_every_scope_still_get_the_whole_record(
    loaded: RunningServer,
) -> None:
    with loaded.client() as fhir:
        bundle = fhir.get("/Patient/inc-related/$everything").json()
        included = fhir.get(
            "/Patient", params={"_id": "inc-related", "_revinclude": "Observation:patient"}
        ).json()
    assert {"Observation/inc-pulse", "Condition/inc-diabetes"} <= ids_in(bundle)
    assert ids_in(included) == {"Patient/inc-related", "Observation/inc-pulse"}
    assert outcomes_in(included) == []
