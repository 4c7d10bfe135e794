"""$break-glass: the privacy officers' queue of break-glass grants awaiting review, and
the review that closes one (confirming, if asked, the relationships written under it)."""

from __future__ import annotations

from dataclasses import asdict

import orjson
from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.responses import fhir_json
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound
from bevan.fhir.limits import stored_integer
from bevan.security.unconfirmed_relationships import confirm_relationships
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
    """POST /fhir/$break-glass/{grant}: close a grant with {"outcome": "..."}; with
    "confirm": true, also confirm the relationships written under it."""
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
    confirm = body.get("confirm", False)
    if not isinstance(confirm, bool):
        raise InvalidRequest(Issue('"confirm" is true or false', expression=("confirm",)))
    reviewer = fhir.caller.principal.subject
    found = _ledger(fhir).get(number)
    if found is None or found.reviewed is not None:
        raise NotFound(f"there is no open break-glass grant {grant}")
    if found.user_id == reviewer:
        raise Forbidden(
            Issue(
                "a break-glass grant is reviewed by someone other than its user", code="forbidden"
            )
        )
    if not _ledger(fhir).review(number, reviewer, outcome, now_instant()):
        raise NotFound(f"there is no open break-glass grant {grant}")
    fhir.caller.patients.add(found.patient_id)
    confirmed = confirm_relationships(fhir.records, found.patient_id) if confirm else []
    fhir.services.policy.forget_relationships([found.patient_id])
    return fhir_json(
        {
            "grant": number,
            "outcome": outcome,
            "reviewed_by": reviewer,
            "confirmed": confirmed,
        }
    )
