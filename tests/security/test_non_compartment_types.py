"""Resources outside the Patient compartment, or naming their patient some other way,
are judged by every patient they name: a Binary by its securityContext, a Task by whom
it is for, a Provenance by what it tells of, a document Bundle by its contents, a Group
by its members, a reference by NHS number, and a resource naming several patients by all
of them. Read and search give the same answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
HIDDEN = "Patient/nc-unrelated"
SEEN = "Patient/nc-related"


def task(id: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": id,
        "status": "requested",
        "intent": "order",
        "description": "chase the echo report",
        "for": {"reference": patient},
    }


DATA: list[dict[str, Any]] = [
    {
        "resourceType": "Organization",
        "id": "nc-practice",
        "identifier": [{"system": ODS, "value": "D84004"}],
    },
    {
        "resourceType": "Organization",
        "id": "nc-elsewhere",
        "identifier": [{"system": ODS, "value": "E85005"}],
    },
    {
        "resourceType": "Patient",
        "id": "nc-related",
        "identifier": [{"system": NHS, "value": "9000000009"}],
        "generalPractitioner": [{"reference": "Organization/nc-practice"}],
    },
    {
        "resourceType": "Patient",
        "id": "nc-unrelated",
        "identifier": [{"system": NHS, "value": "9000000017"}],
        "generalPractitioner": [{"reference": "Organization/nc-elsewhere"}],
    },
    {
        "resourceType": "Observation",
        "id": "nc-hidden-obs",
        "status": "final",
        "code": {"text": "HIV viral load"},
        "subject": {"reference": HIDDEN},
    },
    {
        "resourceType": "DocumentReference",
        "id": "nc-hidden-letter",
        "status": "current",
        "subject": {"reference": HIDDEN},
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/nc-scan"}}],
    },
    {
        "resourceType": "Binary",
        "id": "nc-scan",
        "contentType": "text/plain",
        "securityContext": {"reference": "DocumentReference/nc-hidden-letter"},
        "data": "RGlzY2hhcmdlIGxldHRlcg==",
    },
    task("nc-task-hidden", HIDDEN),
    task("nc-task-seen", SEEN),
    {
        "resourceType": "Provenance",
        "id": "nc-provenance",
        "target": [{"reference": "Observation/nc-hidden-obs"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Organization/nc-elsewhere"}}],
    },
    {
        "resourceType": "DocumentReference",
        "id": "nc-by-nhs-number",
        "status": "current",
        "subject": {"identifier": {"system": NHS, "value": "9000000017"}},
        "content": [{"attachment": {"contentType": "text/plain", "data": "c2VjcmV0"}}],
    },
    {
        "resourceType": "DocumentReference",
        "id": "nc-by-unknown-nhs-number",
        "status": "current",
        "subject": {"identifier": {"system": NHS, "value": "9000000025"}},
        "content": [{"attachment": {"contentType": "text/plain", "data": "c2VjcmV0"}}],
    },
    {
        "resourceType": "Bundle",
        "id": "nc-document",
        "type": "document",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3a0d1e-1d4e-4a0b-9b0e-1c2d3e4f5a6b",
                "resource": {
                    "resourceType": "Composition",
                    "status": "final",
                    "type": {"text": "discharge summary"},
                    "subject": {"reference": HIDDEN},
                    "date": "2026-01-01",
                    "author": [{"reference": "Organization/nc-elsewhere"}],
                    "title": "Discharge summary",
                },
            }
        ],
    },
    {
        "resourceType": "Group",
        "id": "nc-group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": SEEN}}, {"entity": {"reference": HIDDEN}}],
    },
    {
        "resourceType": "Observation",
        "id": "nc-two-patients",
        "status": "final",
        "code": {"text": "family history of Huntington's disease"},
        "subject": {"reference": SEEN},
        "focus": [{"reference": HIDDEN}],
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


def client_for(server: RunningServer, role: str, patient_id: str | None = None) -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        f"{role}-non-compartment", role, organisation="D84004", patient_id=patient_id
    )
    return server.client(token)


HIDDEN_FROM_THE_CLINICIAN = [
    "Binary/nc-scan",
    "Task/nc-task-hidden",
    "Provenance/nc-provenance",
    "DocumentReference/nc-by-nhs-number",
    "DocumentReference/nc-by-unknown-nhs-number",
    "Bundle/nc-document",
    "Group/nc-group",
    "Observation/nc-two-patients",
]


@pytest.mark.parametrize("path", HIDDEN_FROM_THE_CLINICIAN)
def test_a_clinician_cannot_read_a_record_naming_a_patient_they_have_no_relationship_with(
    loaded: RunningServer, path: str
) -> None:
    with client_for(loaded, "clinician") as fhir:
        response = fhir.get(f"/{path}")
    assert response.status_code == 403, response.text
    assert "nc-unrelated" not in response.text  # nor whose record it is
    assert response.json()["issue"][0]["code"] == "forbidden"


@pytest.mark.parametrize("role", ["receptionist", "analyst"])
@pytest.mark.parametrize("path", ["Binary/nc-scan", "Task/nc-task-seen", "Bundle/nc-document"])
def test_roles_without_clinical_access_cannot_read_patient_data_outside_the_compartment(
    loaded: RunningServer, role: str, path: str
) -> None:
    with client_for(loaded, role) as fhir:
        assert fhir.get(f"/{path}").status_code == 403


def test_a_patient_cannot_read_a_record_that_names_no_patient(loaded: RunningServer) -> None:
    body = {"resourceType": "Binary", "id": "nc-loose", "contentType": "text/plain", "data": "eA=="}
    with loaded.client() as system:
        assert system.put("/Binary/nc-loose", json=body, headers=FHIR_JSON).status_code in (
            200,
            201,
        )
    with client_for(loaded, "patient", patient_id="nc-related") as fhir:
        assert fhir.get("/Binary/nc-loose").status_code == 403
        assert fhir.get("/Binary/nc-scan").status_code == 403


def test_a_clinician_still_reads_what_names_only_their_patients(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as fhir:
        assert fhir.get("/Task/nc-task-seen").status_code == 200
        assert fhir.get("/Patient/nc-related").status_code == 200


def test_a_task_search_finds_only_tasks_for_patients_the_clinician_may_see(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        response = fhir.get("/Task", params={"_total": "accurate"})
    assert response.status_code == 200, response.text
    bundle = response.json()
    found = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert found == {"nc-task-seen"}
    assert bundle["total"] == 1


def test_a_search_leaves_out_a_record_that_also_names_a_hidden_patient(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        hidden = fhir.get(
            "/Observation", params={"code:text": "family history", "_total": "accurate"}
        ).json()
        nothing = fhir.get(
            "/Observation", params={"code:text": "no such thing", "_total": "accurate"}
        ).json()
    assert hidden.get("entry", []) == nothing.get("entry", [])
    assert hidden["total"] == nothing["total"] == 0


@pytest.mark.parametrize("counting", [{"_summary": "count"}, {"_count": "0"}])
def test_a_count_leaves_out_a_record_that_also_names_a_hidden_patient(
    loaded: RunningServer, counting: dict[str, str]
) -> None:
    with client_for(loaded, "clinician") as fhir:
        hidden = fhir.get("/Observation", params={"code:text": "family history", **counting})
        nothing = fhir.get("/Observation", params={"code:text": "no such thing", **counting})
    assert hidden.status_code == nothing.status_code == 200, hidden.text
    assert hidden.json()["total"] == nothing.json()["total"] == 0
    with loaded.client() as system:  # the record is there for those who may see it
        everyone = system.get("/Observation", params={"code:text": "family history", **counting})
    assert everyone.json()["total"] == 1


def test_searching_binaries_and_bundles_is_for_system_accounts(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as fhir:
        assert fhir.get("/Binary").status_code == 403
        assert fhir.get("/Bundle", params={"_summary": "count"}).status_code == 403
    with loaded.client() as system:
        assert system.get("/Binary", params={"_id": "nc-scan"}).json()["total"] == 1


def test_a_group_with_a_hidden_member_is_not_included_with_a_patient_the_clinician_sees(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as fhir:
        bundle = fhir.get(
            "/Patient", params={"_id": "nc-related", "_revinclude": "Group:member"}
        ).json()
    assert {e["resource"]["id"] for e in bundle["entry"]} == {"nc-related"}
