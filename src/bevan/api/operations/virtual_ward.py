"""$virtual-ward: the worklist of a virtual ward's team, as Parameters (one `patient`
parameter per enrolled patient the caller may read, highest risk first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.parameters import text
from bevan.api.responses import fhir_json
from bevan.fhir.dates import format_instant
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.monitoring.enrolment import organisation_ids, patients_of
from bevan.monitoring.worklist import WardPatient, worklist
from bevan.store.versions import StoredVersion


def worklist_of(fhir: FhirRequest) -> Response:
    """GET $virtual-ward?organization=ODS: the team's worklist."""
    pairs = list(fhir.request.query_params.multi_items())
    organisation = text(pairs, "organization")
    if not organisation:
        raise InvalidRequest(
            Issue(
                "name the team: $virtual-ward?organization=[ODS code or Organization id]",
                code="required",
                expression=("organization",),
            )
        )
    fhir.allow("Patient", "search-type")
    fhir.allow("Observation", "search-type")
    window = timedelta(minutes=fhir.request.app.state.settings.news2_window_minutes)
    now = datetime.now(UTC)
    with fhir.records.reading() as session:
        enrolled = patients_of(session, organisation_ids(session, organisation))
        patients: dict[str, StoredVersion] = {}
        for patient_id in sorted(enrolled):
            stored = session.current("Patient", patient_id)
            if stored is not None and not stored.deleted and fhir.may_see(stored):
                patients[patient_id] = stored
        rows = worklist(session, set(patients), window, now)
    fhir.saw(patients.values())
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "organization", "valueString": organisation},
            {"name": "generated", "valueDateTime": format_instant(now)},
            *(_row(fhir, row, now) for row in rows),
        ],
    }
    return fhir_json(body, pretty=fhir.pretty)


def _readable(fhir: FhirRequest, resource: dict[str, Any]) -> bool:
    return fhir.unlimited() or fhir.services.policy.may_see(fhir.caller, resource)


def _row(fhir: FhirRequest, row: WardPatient, now: datetime) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{row.patient_id}"}},
        {
            "name": "carePlan",
            "valueReference": {"reference": f"CarePlan/{row.enrolment.care_plan_id}"},
        },
    ]
    latest = row.latest if row.latest and _readable(fhir, row.latest.content) else None
    if latest is not None:
        since = row.since_last_set(now)
        assert since is not None
        parts += [
            {"name": "score", "valueReference": {"reference": f"Observation/{latest.id}"}},
            {"name": "total", "valueInteger": latest.total},
            {"name": "band", "valueCode": latest.band},
            {"name": "trend", "valueCode": row.trend},
            {"name": "lastSet", "valueDateTime": format_instant(latest.at)},
            {"name": "minutesSinceLastSet", "valueDecimal": round(since.total_seconds() / 60)},
        ]
    parts += [{"name": "missing", "valueCode": p.value} for p in row.missing]
    parts.append({"name": "overdue", "valueBoolean": row.overdue})
    for task in row.tasks:
        if _readable(fhir, task):
            parts.append(
                {
                    "name": "task",
                    "valueReference": {
                        "reference": f"Task/{task['id']}",
                        "display": f"{task.get('priority', 'routine')}: "
                        + (task.get("code", {}).get("coding") or [{}])[0].get("display", ""),
                    },
                }
            )
    return {"name": "patient", "part": parts}
