"""Privacy oversight: the break-glass review queue and who accessed a patient's record."""

from __future__ import annotations

from dataclasses import asdict

import orjson
from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.responses import fhir_json
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound
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
    if not grant.isdigit() or not _ledger(fhir).review(
        int(grant), fhir.caller.principal.subject, outcome, now_instant()
    ):
        raise NotFound(f"there is no open break-glass grant {grant}")
    return fhir_json(
        {"grant": int(grant), "outcome": outcome, "reviewed_by": fhir.caller.principal.subject}
    )
