"""Every audit record becomes an R4 AuditEvent that Bevan's own validator accepts."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from bevan.fhir.errors import InvalidResource
from bevan.fhir.validation import validate_resource
from bevan.security.audit import (
    AuditRecord,
    InvalidAuditRecord,
    action_for,
    audit_columns,
    audit_event,
    outcome_for,
    summarise,
)

BASE = "http://127.0.0.1:8000/fhir"

READ = AuditRecord(
    recorded="2026-11-24T05:33:59.123Z",
    user_id="dr-jones",
    role="clinician",
    organisation="A81001",
    client_address="10.0.0.7",
    action="R",
    interaction="read",
    outcome="0",
    outcome_text="OK",
    http_status=200,
    resources=("Observation/obs-1",),
    patient_id="pat-1",
    request_id="req-1",
    source=BASE,
)

VARIANTS = {
    "read": READ,
    "read of the patient itself": replace(READ, resources=("Patient/pat-1",)),
    "search": replace(
        READ,
        action="E",
        interaction="search-type",
        resources=("Observation/obs-1", "Observation/obs-2"),
        query="Observation?patient=pat-1&code=http://loinc.org|8867-4",
    ),
    "system search without a patient": replace(
        READ,
        action="E",
        interaction="search-system",
        resources=(),
        patient_id=None,
        query="_lastUpdated=gt2026-01-01",
    ),
    "create": replace(
        READ,
        action="C",
        interaction="create",
        outcome_text="Created",
        http_status=201,
    ),
    "update": replace(READ, action="U", interaction="update"),
    "patch": replace(READ, action="U", interaction="patch"),
    "delete": replace(READ, action="D", interaction="delete", http_status=204),
    "history": replace(READ, interaction="history-instance"),
    "transaction": replace(
        READ,
        action="E",
        interaction="transaction",
        resources=("Patient/pat-1", "Encounter/enc-1", "Observation/obs-9"),
    ),
    "operation": replace(READ, action="E", interaction="operation", query="$everything"),
    "break-glass": replace(
        READ,
        purpose_of_use="ETREAT",
        break_glass_reason="Unconscious in ED, no relationship on record",
    ),
    "refused (403)": replace(
        READ,
        outcome="4",
        outcome_text="No legitimate relationship with this patient",
        http_status=403,
    ),
    "unauthenticated (401)": replace(
        READ,
        user_id=None,
        role=None,
        organisation=None,
        outcome="4",
        outcome_text="",
        http_status=401,
        resources=(),
        patient_id=None,
    ),
    "server failure (500)": replace(
        READ, outcome="8", outcome_text="Internal error", http_status=500
    ),
    "no client address, source or request id": replace(
        READ, client_address=None, request_id=None, source=""
    ),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_kind_of_audit_record_is_a_valid_audit_event(name: str) -> None:
    assert validate_resource(audit_event(VARIANTS[name]), "AuditEvent") == "AuditEvent"


def test_the_validator_would_notice_a_malformed_audit_event() -> None:
    event = audit_event(READ)
    event["agent"][0]["requestor"] = "yes"
    with pytest.raises(InvalidResource):
        validate_resource(event, "AuditEvent")


def test_a_read_is_filed_as_patient_record_access_with_the_balp_shape() -> None:
    event = audit_event(READ)
    assert event["type"]["code"] == "110110"
    assert event["subtype"][0]["code"] == "read"
    assert event["action"] == "R" and event["outcome"] == "0"
    user, server = event["agent"][0], event["agent"][1]
    assert user["requestor"] is True and user["who"]["identifier"]["value"] == "dr-jones"
    assert user["network"] == {"address": "10.0.0.7", "type": "2"}
    assert server["requestor"] is False
    assert event["source"]["observer"]["display"] == BASE
    roles = {
        (e.get("role", {}).get("code"), e.get("what", {}).get("reference")) for e in event["entity"]
    }
    assert ("1", "Patient/pat-1") in roles and ("4", "Observation/obs-1") in roles


def test_a_search_carries_its_query_base64_encoded() -> None:
    record = VARIANTS["search"]
    (query,) = [e for e in audit_event(record)["entity"] if "query" in e]
    assert query["role"]["code"] == "24"
    assert base64.b64decode(query["query"]).decode() == record.query


def test_a_search_without_a_patient_is_a_rest_event() -> None:
    event = audit_event(VARIANTS["system search without a patient"])
    assert event["type"]["code"] == "rest"


def test_break_glass_is_emergency_treatment_with_the_reason() -> None:
    event = audit_event(VARIANTS["break-glass"])
    (purpose,) = event["purposeOfEvent"]
    assert purpose["coding"][0]["code"] == "ETREAT"
    assert purpose["text"] == "Unconscious in ED, no relationship on record"
    assert audit_columns(event).break_glass
    summary = summarise(event)
    assert summary.break_glass_reason == "Unconscious in ED, no relationship on record"


def test_columns_and_summary_read_back_what_was_recorded() -> None:
    event = audit_event(VARIANTS["search"])
    columns = audit_columns(event)
    assert (columns.user_id, columns.patient_id, columns.action, columns.outcome) == (
        "dr-jones",
        "pat-1",
        "E",
        "0",
    )
    summary = summarise(event)
    assert summary.role == "clinician" and summary.interaction == "search-type"
    assert summary.resources == ("Observation/obs-1", "Observation/obs-2")
    assert summary.query == VARIANTS["search"].query


def test_http_status_gives_the_outcome_and_interaction_gives_the_action() -> None:
    assert [outcome_for(s) for s in (200, 201, 304, 403, 404, 500, 503)] == list("0004488")
    assert [action_for(i) for i in ("create", "read", "update", "delete", "search-type")] == list(
        "CRUDE"
    )


def test_a_record_with_an_unknown_code_is_refused() -> None:
    with pytest.raises(InvalidAuditRecord):
        replace(READ, interaction="peek")
    with pytest.raises(InvalidAuditRecord):
        replace(READ, outcome="12")
