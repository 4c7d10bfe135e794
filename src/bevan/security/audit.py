"""The audit record of one FHIR interaction, and the R4 AuditEvent it becomes.

The AuditEvent follows IHE Basic Audit Log Patterns (BALP): the interaction as a
restful-interaction subtype, the user as the requesting agent, the server as the
receiving agent, and what was touched as entities (each resource, the patient whose
record it is, and the query text of a search).
"""

from __future__ import annotations

import base64
import re
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
# Security events (DICOM "User Authentication"): signing in or getting a token is a
# login, revoking a token a logout; each stands in the subtype in place of an interaction.
SECURITY_EVENTS: dict[str, tuple[str, str]] = {
    "login": ("110122", "Login"),
    "logout": ("110123", "Logout"),
}
# What is kept of text a caller chose, when the caller is not authenticated or was
# refused: enough to see what was tried, not enough to grow the trail at will.
REFUSED_TEXT_LIMIT = 256
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
    purpose_of_use: str = "TREAT"  # "ETREAT" when the glass was broken
    break_glass_reason: str | None = None
    request_id: str | None = None
    source: str = ""  # the server's base URL
    other_patients: tuple[str, ...] = ()  # further patients whose records were touched
    method: str | None = None  # the HTTP method
    path: str | None = None  # the path asked for
    user_agent: str | None = None
    truncated: tuple[str, ...] = ()  # the fields cut to REFUSED_TEXT_LIMIT

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidAuditRecord(f"unknown audit action {self.action!r}")
        if self.interaction not in INTERACTION_ACTIONS and self.interaction not in SECURITY_EVENTS:
            raise InvalidAuditRecord(f"unknown restful interaction {self.interaction!r}")
        if self.outcome not in OUTCOMES:
            raise InvalidAuditRecord(f"unknown audit outcome {self.outcome!r}")
        if self.purpose_of_use not in PURPOSES:
            raise InvalidAuditRecord(f"unknown purpose of use {self.purpose_of_use!r}")

    @property
    def break_glass(self) -> bool:
        return self.purpose_of_use == "ETREAT"

    @property
    def patients(self) -> tuple[str, ...]:
        """Return every patient whose record was touched, the main one first."""
        main = (self.patient_id,) if self.patient_id else ()
        return main + tuple(p for p in self.other_patients if p != self.patient_id)


def bounded(text: str | None, limit: int = REFUSED_TEXT_LIMIT) -> tuple[str | None, bool]:
    """Return text cut to limit characters, and whether it was cut."""
    if text is None or len(text) <= limit:
        return text, False
    return text[:limit], True


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
    patients = {f"Patient/{p}" for p in record.patients}
    for patient_id in record.patients:
        entities.append(
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    for reference in record.resources:
        if reference in patients:
            continue  # already named as a patient
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
    details = [{"type": "http-status", "valueString": str(record.http_status)}]
    for name, value in (
        ("method", record.method),
        ("path", record.path),
        ("user-agent", record.user_agent),
    ):
        if value:
            details.append({"type": name, "valueString": value})
    if record.truncated:
        cut = ", ".join(record.truncated)
        details.append(
            {
                "type": "truncated",
                "valueString": f"{cut} cut to {REFUSED_TEXT_LIMIT} characters",
            }
        )
    transaction: dict[str, Any] = {
        "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
        "detail": details,
    }
    if record.request_id:
        transaction["what"] = {"identifier": {"value": record.request_id}}
    entities.append(transaction)
    return entities


def audit_event(record: AuditRecord) -> dict[str, Any]:
    """Return the R4 AuditEvent resource (BALP-shaped) for an audit record."""
    if record.interaction in SECURITY_EVENTS:
        event_type = _coding(DCM, "110114", "User Authentication")
        code, display = SECURITY_EVENTS[record.interaction]
        subtype = _coding(DCM, code, display)
    else:
        event_type = (
            _coding(DCM, "110110", "Patient Record")
            if record.patients
            else _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
        )
        subtype = _coding(RESTFUL_INTERACTION, record.interaction, record.interaction)
    agents = [_user_agent(record), _server_agent(record)]
    if record.organisation:
        agents.append(_organisation_agent(record.organisation))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": [subtype],
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
    patients = patients_of_event(event)
    # Filed under a patient only when it is about one; about several, it is found
    # through each one's entity row instead.
    patient_id = patients[0] if len(patients) == 1 else None
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


_PATIENT_NAMED = re.compile(
    rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^"]*)?"'
    rb'|"resourceType"\s*:\s*"Patient"\s*,\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"'
)


def patients_in(text: bytes) -> set[str]:
    """Return the ids of the patients a FHIR JSON text names: Patient resources it holds
    and references to Patients in anything else (a search page, a Bundle, a resource).

    Read from the text rather than parsed, so that auditing what a search or a Bundle
    touched costs a scan, not a parse of every resource.
    """
    return {(match[0] or match[1]).decode("ascii") for match in _PATIENT_NAMED.findall(text)}


def patients_of_event(event: dict[str, Any]) -> list[str]:
    """Return the ids of the patients an AuditEvent names, in its order."""
    patients = []
    for entity in event.get("entity", ()):
        role = entity.get("role", {})
        if role.get("system") == OBJECT_ROLE and role.get("code") == "1":
            reference = entity.get("what", {}).get("reference", "")
            if reference.startswith("Patient/") and len(reference) > len("Patient/"):
                patients.append(reference.removeprefix("Patient/"))
    return patients


def entities_of_event(event: dict[str, Any]) -> tuple[str, ...]:
    """Return every "Type/id" an AuditEvent's entities name (patients and resources)."""
    found: dict[str, None] = {}
    for entity in event.get("entity", ()):
        reference = entity.get("what", {}).get("reference")
        if isinstance(reference, str) and "/" in reference:
            found[reference] = None
    return tuple(found)


def without_other_patients(event: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Return the AuditEvent as one patient may see it: naming no other patient, nor any
    query text (which may name others)."""
    own = f"Patient/{patient_id}"
    shown = dict(event)
    shown["entity"] = [
        entity
        for entity in event.get("entity", ())
        if not (
            entity.get("role", {}).get("code") == "1"
            and entity.get("what", {}).get("reference") != own
        )
        and "query" not in entity
    ]
    return shown


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
