"""The audit record of one FHIR interaction, and the R4 AuditEvent it becomes.

The AuditEvent follows IHE Basic Audit Log Patterns (BALP): the interaction as a
restful-interaction subtype, the user as the requesting agent, the server as the
receiving agent, and what was touched as entities (each resource, the patient whose
record it is, and the query text of a search).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"

# FHIR restful-interaction codes and the AuditEvent.action each one is.
INTERACTION_ACTIONS: dict[str, str] = {
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "create": "C",
    "search-type": "E",
    "search-system": "E",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
ACTIONS = frozenset({"C", "R", "U", "D", "E"})
OUTCOMES = {"0": "Success", "4": "Minor failure", "8": "Serious failure"}
PURPOSES = {"TREAT": "treatment", "ETREAT": "Emergency Treatment"}
NOBODY = "unauthenticated"


class InvalidAuditRecord(ValueError):
    """An audit record whose codes are not ones an AuditEvent can carry."""


@dataclass(frozen=True)
class AuditRecord:
    """What happened in one interaction: who asked, what for, what was touched, and how it ended."""

    recorded: str  # FHIR instant
    user_id: str | None  # None when the caller was not authenticated
    role: str | None
    organisation: str | None  # ODS code of the user's organisation
    client_address: str | None  # network address the request came from
    action: str  # C R U D E
    interaction: str  # restful-interaction code
    outcome: str  # "0" success, "4" minor failure (4xx), "8" serious failure (5xx)
    outcome_text: str
    http_status: int
    resources: tuple[str, ...] = ()  # "Type/id" of each resource touched
    query: str | None = None  # the search or operation query string
    patient_id: str | None = None  # whose record this is, when it is one patient's
    # Every patient whose record the request touched (a Bundle's entries, a search's
    # results), each named as an entity, so no one's access goes unrecorded.
    patients: tuple[str, ...] = ()
    purpose_of_use: str = "TREAT"  # "ETREAT" when the glass was broken
    break_glass_reason: str | None = None
    request_id: str | None = None
    source: str = ""  # the server's base URL

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidAuditRecord(f"unknown audit action {self.action!r}")
        if self.interaction not in INTERACTION_ACTIONS:
            raise InvalidAuditRecord(f"unknown restful interaction {self.interaction!r}")
        if self.outcome not in OUTCOMES:
            raise InvalidAuditRecord(f"unknown audit outcome {self.outcome!r}")
        if self.purpose_of_use not in PURPOSES:
            raise InvalidAuditRecord(f"unknown purpose of use {self.purpose_of_use!r}")

    @property
    def break_glass(self) -> bool:
        return self.purpose_of_use == "ETREAT"


def action_for(interaction: str) -> str:
    """Return the AuditEvent.action (C R U D E) of a restful-interaction code."""
    try:
        return INTERACTION_ACTIONS[interaction]
    except KeyError:
        raise InvalidAuditRecord(f"unknown restful interaction {interaction!r}") from None


def outcome_for(http_status: int) -> str:
    """Return the AuditEvent.outcome of an HTTP status: 0 below 400, 4 for 4xx, 8 for 5xx."""
    if http_status >= 500:
        return "8"
    if http_status >= 400:
        return "4"
    return "0"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _purpose(record: AuditRecord) -> dict[str, Any]:
    concept: dict[str, Any] = {
        "coding": [_coding(ACT_REASON, record.purpose_of_use, PURPOSES[record.purpose_of_use])]
    }
    if record.break_glass and record.break_glass_reason:
        concept["text"] = record.break_glass_reason
    return concept


def _user_agent(record: AuditRecord) -> dict[str, Any]:
    writes = record.action in ("C", "U", "D")
    agent: dict[str, Any] = {
        # A writer is the author of what it sends; anyone else receives information.
        "type": {
            "coding": [
                _coding(PARTICIPATION_TYPE, "AUT", "author")
                if writes
                else _coding(PARTICIPATION_TYPE, "IRCP", "information recipient")
            ]
        },
    }
    if record.role:
        agent["role"] = [{"text": record.role}]
    if record.user_id:
        agent["who"] = {"identifier": {"value": record.user_id}, "display": record.user_id}
    else:
        agent["who"] = {"display": NOBODY}
    agent["requestor"] = True
    if record.client_address:
        agent["network"] = {"address": record.client_address, "type": "2"}  # IP address
    return agent


def _server_agent(record: AuditRecord) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
        "who": {"display": record.source or "Bevan"},
        "requestor": False,
    }
    if record.source:
        agent["network"] = {"address": record.source, "type": "5"}  # URI
    return agent


def _organisation_agent(ods_code: str) -> dict[str, Any]:
    return {
        "type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
        "who": {"type": "Organization", "identifier": {"system": ODS, "value": ods_code}},
        "requestor": False,
    }


def _entities(record: AuditRecord) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    named = [f"Patient/{p}" for p in dict.fromkeys((record.patient_id, *record.patients)) if p]
    for patient in named:
        entities.append(
            {
                "what": {"reference": patient},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    for reference in record.resources:
        if reference in named:
            continue  # already named as the patient
        entities.append(
            {
                "what": {"reference": reference},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if record.query is not None:
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(record.query.encode()).decode("ascii"),
            }
        )
    transaction: dict[str, Any] = {
        "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        "detail": [{"type": "http-status", "valueString": str(record.http_status)}],
    }
    if record.request_id:
        transaction["what"] = {"identifier": {"value": record.request_id}}
    entities.append(transaction)
    return entities


def audit_event(record: AuditRecord) -> dict[str, Any]:
    """Return the R4 AuditEvent resource (BALP-shaped) for an audit record."""
    event_type = (
        _coding(DCM, "110110", "Patient Record")
        if record.patient_id or record.patients
        else _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
    )
    agents = [_user_agent(record), _server_agent(record)]
    if record.organisation:
        agents.append(_organisation_agent(record.organisation))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": [_coding(RESTFUL_INTERACTION, record.interaction, record.interaction)],
        "action": record.action,
        "recorded": record.recorded,
        "outcome": record.outcome,
        "outcomeDesc": record.outcome_text or f"HTTP {record.http_status}",
        "purposeOfEvent": [_purpose(record)],
        "agent": agents,
        "source": {
            "site": record.source or "Bevan",
            "observer": {"display": record.source or "Bevan"},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": _entities(record),
    }
    return event


@dataclass(frozen=True)
class AuditColumns:
    """The searchable columns stored beside an AuditEvent, all derived from it."""

    recorded: str
    user_id: str | None
    patient_id: str | None
    action: str
    outcome: str
    break_glass: bool


def audit_columns(event: dict[str, Any]) -> AuditColumns:
    """Return the searchable columns an AuditEvent's own content says it should be filed under."""
    user_id = None
    for agent in event.get("agent", ()):
        if agent.get("requestor"):
            user_id = agent.get("who", {}).get("identifier", {}).get("value")
            break
    patients = [
        entity.get("what", {}).get("reference", "").removeprefix("Patient/")
        for entity in event.get("entity", ())
        if entity.get("role", {}).get("system") == OBJECT_ROLE
        and entity.get("role", {}).get("code") == "1"
    ]
    # Filed under a patient only when the event is one patient's record.
    patient_id = (patients[0] or None) if len(patients) == 1 else None
    break_glass = any(
        coding.get("system") == ACT_REASON and coding.get("code") == "ETREAT"
        for purpose in event.get("purposeOfEvent", ())
        for coding in purpose.get("coding", ())
    )
    return AuditColumns(
        recorded=event["recorded"],
        user_id=user_id,
        patient_id=patient_id,
        action=event["action"],
        outcome=event["outcome"],
        break_glass=break_glass,
    )


@dataclass(frozen=True)
class AuditSummary:
    """What one line of an audit listing shows, read back from a stored AuditEvent."""

    recorded: str
    user: str
    role: str
    action: str
    interaction: str
    outcome: str
    outcome_text: str
    patient_id: str | None
    resources: tuple[str, ...]
    query: str | None
    break_glass_reason: str | None


def summarise(event: dict[str, Any]) -> AuditSummary:
    """Return the listing fields of a stored AuditEvent."""
    columns = audit_columns(event)
    user, role = NOBODY, ""
    for agent in event.get("agent", ()):
        if agent.get("requestor"):
            user = columns.user_id or agent.get("who", {}).get("display", NOBODY)
            role = next((r.get("text", "") for r in agent.get("role", ())), "")
    interaction = next((c.get("code", "") for c in event.get("subtype", ())), "")
    resources: list[str] = []
    query = None
    for entity in event.get("entity", ()):
        if entity.get("role", {}).get("code") == "4":
            resources.append(entity.get("what", {}).get("reference", ""))
        if "query" in entity:
            query = base64.b64decode(entity["query"]).decode(errors="replace")
    reason = None
    if columns.break_glass:
        reason = next((p.get("text") for p in event.get("purposeOfEvent", ())), None) or ""
    return AuditSummary(
        recorded=columns.recorded,
        user=user,
        role=role,
        action=columns.action,
        interaction=interaction,
        outcome=columns.outcome,
        outcome_text=event.get("outcomeDesc", ""),
        patient_id=columns.patient_id,
        resources=tuple(resources),
        query=query,
        break_glass_reason=reason,
    )
