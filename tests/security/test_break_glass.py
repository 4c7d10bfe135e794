"""Breaking the glass, attacked: one emergency reason opens one patient, every patient a
request touches is named in its audit entry, and a grant never becomes a standing
relationship on its own."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from tests.conftest import RunningServer

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
UNRELATED = [f"stranger-{n}" for n in range(6)]
RELATED = [f"registered-{n}" for n in range(3)]
EMERGENCIES = [f"emergency-{n}" for n in range(10)]
UNCONFIRMED = "https://fhir.bevan.nhs.uk/CodeSystem/access|break-glass-unconfirmed"
REASON = {"X-Bevan-Break-Glass": "Unconscious in A&E, no other record available"}


def _patient(id: str, practice: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "generalPractitioner": [{"reference": f"Organization/{practice}"}],
        "name": [{"family": id.title()}],
    }


DATA = [
    {
        "resourceType": "Organization",
        "id": "bg-practice-a",
        "identifier": [{"system": ODS, "value": "C81001"}],
    },
    {
        "resourceType": "Organization",
        "id": "bg-practice-b",
        "identifier": [{"system": ODS, "value": "D82002"}],
    },
    {
        "resourceType": "Organization",
        "id": "bg-practice-e",
        "identifier": [{"system": ODS, "value": "E83003"}],
    },
    *(_patient(p, "bg-practice-b") for p in UNRELATED),
    *(_patient(p, "bg-practice-b") for p in EMERGENCIES),
    *(_patient(p, "bg-practice-a") for p in RELATED),
    *(
        {
            "resourceType": "Observation",
            "id": f"pulse-{p}",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{p}"},
        }
        for p in RELATED
    ),
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


def clinician(server: RunningServer, subject: str, organisation: str = "C81001") -> httpx.Client:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        subject, "clinician", organisation=organisation
    )
    return server.client(token)


def batch_reading(*references: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": r}} for r in references],
    }


def last_audited_patients(server: RunningServer, user_id: str) -> set[str]:
    entry = AuditLog(server.store.engine).find(user_id=user_id, limit=1)[0]
    event = orjson.loads(entry.content)
    return {
        e["what"]["reference"].removeprefix("Patient/")
        for e in event["entity"]
        if e.get("role", {}).get("code") == "1"
    }


def test_one_break_glass_request_cannot_open_many_patients(loaded: RunningServer) -> None:
    with clinician(loaded, "sweeper") as fhir:
        bundle = batch_reading(*(f"Patient/{p}" for p in UNRELATED))
        answer = fhir.post("", json=bundle, headers={**FHIR_JSON, **REASON}).json()
        statuses = [e["response"]["status"][:3] for e in answer["entry"]]
        assert statuses == ["200"] + ["403"] * (len(UNRELATED) - 1)
        refusal = answer["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
        assert "one patient" in refusal
        # The first grant stands; the others were never opened.
        assert fhir.get(f"/Patient/{UNRELATED[0]}").status_code == 200
        assert fhir.get(f"/Patient/{UNRELATED[1]}").status_code == 403
    assert {g.patient_id for g in loaded_grants(loaded, "sweeper")} == {UNRELATED[0]}


def loaded_grants(server: RunningServer, user_id: str) -> list[Any]:
    from bevan.store.access import BreakGlassLedger

    return [g for g in BreakGlassLedger(server.store).queue() if g.user_id == user_id]


def test_the_audit_entry_of_a_batch_names_every_patient_it_read(loaded: RunningServer) -> None:
    with clinician(loaded, "batch-reader") as fhir:
        bundle = batch_reading(*(f"Patient/{p}" for p in RELATED))
        answer = fhir.post("", json=bundle, headers=FHIR_JSON).json()
        assert [e["response"]["status"][:3] for e in answer["entry"]] == ["200"] * len(RELATED)
    assert last_audited_patients(loaded, "batch-reader") == set(RELATED)


def test_the_audit_entry_of_a_search_names_every_patient_in_its_results(
    loaded: RunningServer,
) -> None:
    with clinician(loaded, "searcher") as fhir:
        found = fhir.get("/Observation", params={"code:text": "pulse", "_count": 50}).json()
        assert {e["resource"]["id"] for e in found["entry"]} == {f"pulse-{p}" for p in RELATED}
    assert last_audited_patients(loaded, "searcher") == set(RELATED)


def relationship(resource_type: str, patient: str, organisation: str) -> dict[str, Any]:
    """Return a resource of resource_type that relates patient to organisation."""
    subject = {"reference": f"Patient/{patient}"}
    org = {"reference": f"Organization/{organisation}"}
    if resource_type == "CareTeam":
        return {"resourceType": "CareTeam", "subject": subject, "participant": [{"member": org}]}
    if resource_type == "EpisodeOfCare":
        return {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": subject,
            "managingOrganization": org,
        }
    if resource_type == "ServiceRequest":
        return {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "performer": [org],
        }
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [
            {"actor": subject, "status": "accepted"},
            {"actor": org, "status": "accepted"},
        ],
    }


def labelled(resource: dict[str, Any]) -> bool:
    system, code = UNCONFIRMED.split("|")
    return any(
        s.get("system") == system and s.get("code") == code
        for s in resource.get("meta", {}).get("security", [])
    )


def visible_to(fhir: httpx.Client, patient: str) -> bool:
    """Return True if a search by id finds the patient (uncached, unlike a read)."""
    return bool(fhir.get("/Patient", params={"_id": patient}).json().get("entry"))


@pytest.mark.parametrize(
    ("resource_type", "patient"),
    [
        ("CareTeam", EMERGENCIES[0]),
        ("EpisodeOfCare", EMERGENCIES[1]),
        ("ServiceRequest", EMERGENCIES[2]),
        ("Appointment", EMERGENCIES[3]),
    ],
)
def test_a_relationship_written_under_break_glass_opens_nothing_for_colleagues(
    loaded: RunningServer, resource_type: str, patient: str
) -> None:
    with clinician(loaded, f"glass-{resource_type}", "E83003") as fhir:
        assert fhir.get(f"/Patient/{patient}", headers=REASON).status_code == 200
        body = relationship(resource_type, patient, "bg-practice-e")
        written = fhir.post(f"/{resource_type}", json=body, headers=FHIR_JSON)
        assert written.status_code == 201, written.text
        assert labelled(written.json())
        # Sending it back without the label does not take the label off.
        stripped = {**written.json(), "meta": {}}
        again = fhir.put(f"/{resource_type}/{stripped['id']}", json=stripped, headers=FHIR_JSON)
        assert again.status_code == 200, again.text
        assert labelled(again.json())
    with clinician(loaded, f"colleague-{resource_type}", "E83003") as colleague:
        assert not visible_to(colleague, patient)
        assert colleague.get(f"/Patient/{patient}").status_code == 403


def test_a_related_clinician_confirms_a_relationship_written_under_break_glass(
    loaded: RunningServer,
) -> None:
    patient = EMERGENCIES[4]
    with clinician(loaded, "glass-confirmed", "E83003") as fhir:
        assert fhir.get(f"/Patient/{patient}", headers=REASON).status_code == 200
        team = fhir.post(
            "/CareTeam", json=relationship("CareTeam", patient, "bg-practice-e"), headers=FHIR_JSON
        ).json()
    with clinician(loaded, "colleague-confirmed", "E83003") as colleague:
        assert not visible_to(colleague, patient)
        with clinician(loaded, "their-own-gp", "D82002") as gp:
            confirmed = {**team, "meta": {}}
            answer = gp.put(f"/CareTeam/{team['id']}", json=confirmed, headers=FHIR_JSON)
            assert answer.status_code == 200, answer.text
            assert not labelled(answer.json())
        assert visible_to(colleague, patient)
        assert colleague.get(f"/Patient/{patient}").status_code == 200


def test_a_privacy_officer_confirms_on_review(loaded: RunningServer) -> None:
    patient = EMERGENCIES[5]
    with clinician(loaded, "glass-reviewed", "E83003") as fhir:
        assert fhir.get(f"/Patient/{patient}", headers=REASON).status_code == 200
        episode = relationship("EpisodeOfCare", patient, "bg-practice-e")
        written = fhir.post("/EpisodeOfCare", json=episode, headers=FHIR_JSON).json()
    grant = next(g for g in loaded_grants(loaded, "glass-reviewed") if g.patient_id == patient)
    token = TokenAuthority.in_directory(loaded.data_dir).issue(
        "officer", "privacy-officer", organisation="E83003"
    )
    with loaded.client(token) as officer:
        review = {"outcome": "Appropriate: admitted from A&E", "confirm": True}
        answer = officer.post(f"/$break-glass/{grant.id}", json=review)
        assert answer.status_code == 200, answer.text
        assert answer.json()["confirmed"] == [f"EpisodeOfCare/{written['id']}"]
    with clinician(loaded, "colleague-reviewed", "E83003") as colleague:
        assert colleague.get(f"/Patient/{patient}").status_code == 200


def test_break_glass_cannot_register_the_patient_with_ones_own_practice(
    loaded: RunningServer,
) -> None:
    patient = EMERGENCIES[6]
    with clinician(loaded, "glass-registrar", "E83003") as fhir:
        current = fhir.get(f"/Patient/{patient}", headers=REASON).json()
        moved = {**current, "generalPractitioner": [{"reference": "Organization/bg-practice-e"}]}
        refused = fhir.put(f"/Patient/{patient}", json=moved, headers=FHIR_JSON)
        assert refused.status_code == 403
        assert refused.json()["issue"][0]["expression"] == ["Patient.generalPractitioner"]
    with clinician(loaded, "colleague-registrar", "E83003") as colleague:
        assert colleague.get(f"/Patient/{patient}").status_code == 403


def test_a_grant_is_held_by_the_user_for_their_organisation_only(loaded: RunningServer) -> None:
    patient = EMERGENCIES[7]
    with clinician(loaded, "shared-subject", "E83003") as fhir:
        assert fhir.get(f"/Patient/{patient}", headers=REASON).status_code == 200
    with clinician(loaded, "shared-subject", "C81001") as elsewhere:
        assert elsewhere.get(f"/Patient/{patient}").status_code == 403
        assert not visible_to(elsewhere, patient)


def test_nobody_reviews_their_own_break_glass_grant(loaded: RunningServer) -> None:
    patient = EMERGENCIES[8]
    with clinician(loaded, "self-reviewer", "E83003") as fhir:
        assert fhir.get(f"/Patient/{patient}", headers=REASON).status_code == 200
    grant = next(g for g in loaded_grants(loaded, "self-reviewer") if g.patient_id == patient)
    token = TokenAuthority.in_directory(loaded.data_dir).issue(
        "self-reviewer", "privacy-officer", organisation="E83003"
    )
    with loaded.client(token) as own:
        answer = own.post(f"/$break-glass/{grant.id}", json={"outcome": "Fine, it was me"})
        assert answer.status_code == 403
    assert any(g.id == grant.id for g in loaded_grants(loaded, "self-reviewer"))
