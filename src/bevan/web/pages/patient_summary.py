"""A patient's summary for staff: the banner, problems, medicines, allergies, vital
signs with trend charts, recent encounters and documents."""

from __future__ import annotations

from starlette.responses import Response

from bevan.fhir.dates import now_instant
from bevan.security.access import BREAK_GLASS_HOURS
from bevan.web.page_access import PageRequest
from bevan.web.patient_record import patient_record
from bevan.web.vital_signs_chart import CHARTED, series_of, trend_chart


def patient_summary(page: PageRequest) -> Response:
    """GET /patients/{patient_id}: audited as the read of Patient/{patient_id}."""
    patient_id = page.request.path_params["patient_id"]
    page.resources = (f"Patient/{patient_id}",)
    record = patient_record(page.fhir, patient_id)
    series = series_of(record.vital_signs)
    charts = [(s, trend_chart(s)) for s in series if s.sign.key in CHARTED]
    grant = None
    if patient_id in page.access.broke_glass_for:
        grant = page.fhir.services.policy.break_glass.active_grant(
            page.principal.subject, patient_id, now_instant(), page.principal.organisation
        )
    return page.render(
        "patient_summary.html",
        record=record,
        banner=record.banner,
        series=series,
        charts=charts,
        grant=grant,
        break_glass_hours=BREAK_GLASS_HOURS,
    )
