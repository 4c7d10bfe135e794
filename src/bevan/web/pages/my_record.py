"""A patient's own record, in plain words, and who has looked at it.

"Who has looked at my record" lists the audit trail's entries for the patient through
the API's own `Patient/{id}/$audit` (which shows no other patient), each with the
role and organisation of whoever it was, emergency (break-glass) access marked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bevan.api.operations.audit import access_log as audit_operation
from bevan.fhir.errors import FhirError
from bevan.fhir.search import parse_search
from bevan.security.audit import ODS
from bevan.web.page_access import PageRequest
from bevan.web.patient_record import patient_record
from bevan.web.vital_signs_chart import CHARTED, series_of, trend_chart

ROLE_WORDS = {
    "clinician": "Clinician",
    "nurse": "Nurse",
    "receptionist": "Receptionist",
    "privacy-officer": "Privacy officer",
    "analyst": "Analyst",
    "system": "A Bevan system",
    "device": "Your device",
    "patient": "You",
}
WHAT_WORDS = {
    "read": "Looked at your record",
    "vread": "Looked at an earlier version of your record",
    "search-type": "Searched records, and found yours",
    "history-instance": "Looked at the history of your record",
    "create": "Added to your record",
    "update": "Changed your record",
    "patch": "Changed your record",
    "delete": "Removed something from your record",
    "operation": "Looked at your record",
}


@dataclass(frozen=True)
class Access:
    when: str
    who: str
    role: str
    organisation: str
    what: str
    refused: bool
    break_glass: bool
    reason: str | None


def my_record(page: PageRequest) -> Response:
    """GET /my-record: the patient's own summary, audited as the read of their Patient."""
    patient_id = page.principal.patient_id or ""
    page.resources = (f"Patient/{patient_id}",)
    record = patient_record(page.fhir, patient_id)
    series = series_of(record.vital_signs)
    charts = [(s, trend_chart(s)) for s in series if s.sign.key in CHARTED]
    return page.render("my_record.html", record=record, banner=record.banner, charts=charts)


def access_log(page: PageRequest) -> Response:
    """GET /my-record/access: every access to the patient's record, newest first,
    audited as the API's Patient/{id}/$audit."""
    patient_id = page.principal.patient_id or ""
    page.resources = (f"Patient/{patient_id}",)
    scope = dict(page.request.scope)
    scope["path_params"] = {"id": patient_id}
    answer = audit_operation(replace(page.fhir, request=Request(scope, page.request.receive)))
    bundle = orjson.loads(bytes(answer.body))
    organisations: dict[str, str] = {}
    accesses = [
        _access(entry["resource"], page, organisations) for entry in bundle.get("entry", ())
    ]
    return page.render("access_log.html", accesses=accesses)


def _access(event: dict[str, Any], page: PageRequest, organisations: dict[str, str]) -> Access:
    who, role, organisation = "Unknown", "", ""
    for agent in event.get("agent", ()):
        identifier = (agent.get("who") or {}).get("identifier") or {}
        if agent.get("requestor"):
            role = next((r.get("text", "") for r in agent.get("role", ())), "")
            user_id = identifier.get("value")
            who = page.users.display(user_id) if user_id else "Someone not signed in"
        elif identifier.get("system") == ODS:
            organisation = _organisation_name(page, identifier.get("value", ""), organisations)
    interaction = next((c.get("code", "") for c in event.get("subtype", ())), "")
    purposes = event.get("purposeOfEvent") or []
    break_glass = any(c.get("code") == "ETREAT" for p in purposes for c in p.get("coding", ()))
    reason = next((p.get("text") for p in purposes if p.get("text")), None) if break_glass else None
    if role == "patient":
        who = "You"
    return Access(
        when=event.get("recorded", ""),
        who=who,
        role=ROLE_WORDS.get(role, role or "Not known"),
        organisation=organisation or "Not known",
        what=WHAT_WORDS.get(interaction, "Used your record"),
        refused=event.get("outcome") != "0",
        break_glass=break_glass,
        reason=reason,
    )


def _organisation_name(page: PageRequest, ods_code: str, known: dict[str, str]) -> str:
    """Return an organisation's name as the patient may read it, else its ODS code."""
    if ods_code in known:
        return known[ods_code]
    name = ods_code
    try:
        page.fhir.allow("Organization", "search-type")
        query = parse_search("Organization", [("identifier", f"{ODS}|{ods_code}"), ("_count", "1")])
        found = page.fhir.records.search(page.fhir.visible(query), visible=page.fhir.may_see)
        for stored in found.matches:
            organisation = orjson.loads(stored.content or b"{}")
            if organisation.get("name"):
                name = f"{organisation['name']} ({ods_code})"
    except FhirError:
        pass  # a name the patient may not look up: the code alone says which organisation
    known[ods_code] = name
    return name
