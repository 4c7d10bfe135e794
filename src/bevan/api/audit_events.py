"""AuditEvent over HTTP: search and read the audit trail (privacy officers and system
accounts only). AuditEvents are never written through the API: the trail writes them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.pages import page_bundle
from bevan.api.responses import fhir_json
from bevan.fhir.errors import Forbidden, Issue, NotFound
from bevan.security.audit import without_other_patients
from bevan.security.audit_search import audit_query
from bevan.security.scopes import parse_scopes, require_scope
from bevan.store.audit import AuditEntry

TRAIL_READERS = frozenset({"privacy-officer", "system"})


def _trail_reader(fhir: FhirRequest, interaction: str) -> None:
    caller = fhir.caller
    if caller.role not in TRAIL_READERS:
        raise Forbidden(
            Issue(
                "the audit trail is for privacy officers and system accounts",
                code="forbidden",
                expression=("AuditEvent",),
            )
        )
    require_scope(parse_scopes(caller.principal.scope), "AuditEvent", interaction)


def audit_event_resource(entry: AuditEntry, patient_id: str | None = None) -> dict[str, Any]:
    """Return an entry's AuditEvent with its id (the entry's number); as patient_id may
    see it, if given (naming no other patient)."""
    event: dict[str, Any] = orjson.loads(entry.content)
    if patient_id is not None:
        event = without_other_patients(event, patient_id)
    return {"resourceType": "AuditEvent", "id": str(entry.seq), **event}


def audit_entries_bundle(
    fhir: FhirRequest,
    entries: list[AuditEntry],
    count: int,
    path: str,
    applied: Iterable[tuple[str, str]],
    patient_id: str | None = None,
) -> Response:
    """Return a searchset of entries (count+1 asked for: one more means a next page,
    continued before the last entry shown)."""
    following = None
    if len(entries) > count:
        entries = entries[:count]
        following = str(entries[-1].seq)
    found = [
        {
            "fullUrl": f"{fhir.base_url}/AuditEvent/{entry.seq}",
            "resource": audit_event_resource(entry, patient_id),
            "search": {"mode": "match"},
        }
        for entry in entries
    ]
    return page_bundle(
        "searchset",
        found,
        path=path,
        applied=applied,
        next_cursor=following,
        cursor="_before",
        pretty=fhir.pretty,
    )


def search_audit_events(fhir: FhirRequest) -> Response:
    """GET /AuditEvent?patient=...&date=ge... (or POST /AuditEvent/_search): the trail's
    entries, newest first."""
    _trail_reader(fhir, "search-type")
    pairs = list(fhir.request.query_params.multi_items())
    if fhir.request.method == "POST":
        pairs += parse_qsl(fhir.body.decode("utf-8", "replace"), keep_blank_values=True)
    query = audit_query(pairs)
    count = query.limit
    entries = fhir.services.trail.log.search(replace(query, limit=count + 1))
    applied = [(k, v) for k, v in pairs if k not in ("_format", "_pretty")]
    return audit_entries_bundle(fhir, entries, count, f"{fhir.base_url}/AuditEvent", applied)


def read_audit_event(fhir: FhirRequest) -> Response:
    """GET /AuditEvent/{id}: one entry of the trail."""
    _trail_reader(fhir, "read")
    id = fhir.path("id")
    entry = fhir.services.trail.log.entry(int(id)) if id.isdigit() else None
    if entry is None:
        raise NotFound(f"there is no AuditEvent {id}")
    return fhir_json(audit_event_resource(entry), pretty=fhir.pretty)
