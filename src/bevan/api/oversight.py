"""Privacy oversight: the break-glass review queue and who accessed a patient's record."""

from __future__ import annotations

from dataclasses import asdict

import orjson
from starlette.responses import Response

from bevan.api.audit_events import audit_entries_bundle
from bevan.api.context import FhirRequest
from bevan.api.responses import fhir_json
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound
from bevan.fhir.limits import stored_integer
from bevan.fhir.search import parse_count
from bevan.store.access import BreakGlassLedger


def _privacy_officer(fhir: FhirRequest) -> None:
    if fhir.caller.role != "privacy-officer":
        raise Forbidden(Issue("the break-glass queue is for privacy officers", code="forbidden"))


def _ledger(fhir: FhirRequest) -> BreakGlassLedger:
    ledger: BreakGlassLedger = fhir.services.policy.break_glass
    return ledger


def break_glass_queue(fhir: FhirRequest) -> Response:
    """GET /fhir/$break-glass[?all=true]: grants awaiting review (all, with all=true)."""
    _privacy_officer(fhir)
    grants = _ledger(fhir).queue(open_only=fhir.request.query_params.get("all") != "true")
    return fhir_json({"grants": [asdict(g) for g in grants]}, pretty=fhir.pretty)


def review_break_glass(fhir: FhirRequest) -> Response:
    """POST /fhir/$break-glass/{grant}: close a grant with {"outcome": "..."}."""
    _privacy_officer(fhir)
    grant = fhir.path("grant")
    try:
        body = orjson.loads(fhir.body or b"{}")
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(Issue(f"the body is not JSON: {error}")) from None
    outcome = body.get("outcome") if isinstance(body, dict) else None
    if not isinstance(outcome, str) or not outcome.strip():
        raise InvalidRequest(
            Issue('a review needs {"outcome": "what you found and did"}', expression=("outcome",))
        )
    number = stored_integer(grant, "$break-glass", "a break-glass grant number")
    if not _ledger(fhir).review(number, fhir.caller.principal.subject, outcome, now_instant()):
        raise NotFound(f"there is no open break-glass grant {grant}")
    return fhir_json(
        {"grant": number, "outcome": outcome, "reviewed_by": fhir.caller.principal.subject}
    )


def access_log(fhir: FhirRequest) -> Response:
    """GET /fhir/Patient/{id}/$audit: every access to this patient's record, newest first
    (the patient themselves, who see no other patient named, or a privacy officer)."""
    patient_id = fhir.path("id")
    caller = fhir.caller
    own = caller.role == "patient" and caller.principal.patient_id == patient_id
    if not own and caller.role != "privacy-officer":
        raise Forbidden(
            Issue("a record's access log is for its patient and privacy officers", code="forbidden")
        )
    caller.patients.add(patient_id)
    params = fhir.request.query_params
    count = parse_count(params["_count"]) if "_count" in params else 100
    before = stored_integer(params["_before"], "_before", "a page") if "_before" in params else None
    entries = fhir.services.trail.log.for_patient(patient_id, limit=count + 1, before_seq=before)
    applied = [(k, params[k]) for k in ("_count", "_before") if k in params]
    return audit_entries_bundle(
        fhir,
        entries,
        count,
        f"{fhir.base_url}/Patient/{patient_id}/$audit",
        applied,
        patient_id=patient_id if own else None,
    )
