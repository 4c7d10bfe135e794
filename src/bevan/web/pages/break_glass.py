"""Break-glass for clinicians: a form asking the reason, which opens one patient's
record for BREAK_GLASS_HOURS exactly as the API's X-Bevan-Break-Glass header does (the
grant is queued for a privacy officer's review); and the privacy officer's review queue
(the API's `$break-glass` operations)."""

from __future__ import annotations

from dataclasses import replace

import orjson
from starlette.responses import RedirectResponse, Response

from bevan.api.operations import break_glass as break_glass_operation
from bevan.fhir.errors import Forbidden
from bevan.security.access import BREAK_GLASS_HOURS, CLINICAL_ROLES
from bevan.web.page_access import PageRequest
from bevan.web.patient_record import read_patient

MIN_REASON = 10


def break_glass_form(page: PageRequest) -> Response:
    """GET /patients/{patient_id}/break-glass: the form (it shows nothing of the record)."""
    _clinical(page)
    return page.render(
        "break_glass.html",
        patient_id=page.request.path_params["patient_id"],
        hours=BREAK_GLASS_HOURS,
        reason="",
        error=None,
    )


def break_glass(page: PageRequest) -> Response:
    """POST /patients/{patient_id}/break-glass: open the record with the reason given,
    audited as the emergency read of Patient/{patient_id}."""
    _clinical(page)
    patient_id = page.request.path_params["patient_id"]
    page.resources = (f"Patient/{patient_id}",)
    reason = " ".join(page.form.get("reason", "").split())
    if len(reason) < MIN_REASON:
        return page.render(
            "break_glass.html",
            400,
            patient_id=patient_id,
            hours=BREAK_GLASS_HOURS,
            reason=reason,
            error="Enter the reason you need this record now, in a few words",
        )
    page.with_break_glass(reason)
    read_patient(page.fhir, patient_id)
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


def _clinical(page: PageRequest) -> None:
    if page.role not in CLINICAL_ROLES:
        raise Forbidden("only clinicians and nurses may break the glass")


def review_queue(page: PageRequest) -> Response:
    """GET /break-glass/reviews: grants awaiting review (the API's GET $break-glass)."""
    answer = break_glass_operation.break_glass_queue(page.fhir)
    grants = orjson.loads(bytes(answer.body))["grants"]
    users = page.users
    for grant in grants:
        grant["user"] = users.display(grant["user_id"])
    return page.render("break_glass_reviews.html", grants=grants, errors={}, given={})


def review(page: PageRequest) -> Response:
    """POST /break-glass/reviews/{grant}: close a grant with its outcome (the API's
    POST $break-glass/{grant})."""
    outcome = page.form.get("outcome", "").strip()
    if not outcome:
        answer = break_glass_operation.break_glass_queue(page.fhir)
        grants = orjson.loads(bytes(answer.body))["grants"]
        for grant in grants:
            grant["user"] = page.users.display(grant["user_id"])
        grant_id = page.request.path_params["grant"]
        return page.render(
            "break_glass_reviews.html",
            400,
            grants=grants,
            errors={grant_id: "Enter what you found and did"},
            given={},
        )
    body = orjson.dumps({"outcome": outcome, "confirm": page.form.get("confirm") == "yes"})
    break_glass_operation.review_break_glass(replace(page.fhir, body=body))
    return RedirectResponse("/break-glass/reviews", status_code=303)
