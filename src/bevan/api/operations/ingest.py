"""Observation/$ingest: readings in bulk from devices, as application/fhir+ndjson; the
answer lists every refused line by number and why."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.responses import fhir_json
from bevan.fhir.errors import InvalidRequest, Issue, UnsupportedMediaType
from bevan.fhir.outcome import operation_outcome
from bevan.monitoring.ingest import ingest_readings

NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson", "application/x-ndjson"})


def ingest(fhir: FhirRequest) -> Response:
    """POST Observation/$ingest: 200 with an OperationOutcome (what was stored, and an
    error issue for each refused line); 422 when every line was refused."""
    media = (fhir.request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media or 'none'!r} is not accepted by $ingest; send "
            "application/fhir+ndjson, one Observation a line"
        )
    if not fhir.body.strip():
        raise InvalidRequest(
            Issue("the request has no body; send one Observation a line", code="required")
        )
    fhir.allow("Observation", "create")
    intake = ingest_readings(fhir.records, fhir.body, fhir.write_guard())
    fhir.saw(intake.stored)
    issues = [
        Issue(
            f"{len(intake.stored)} of {intake.lines} lines stored",
            code="informational",
            severity="information",
        )
    ]
    for number, error in intake.refused:
        for issue in error.issues:
            issues.append(
                Issue(
                    f"line {number} refused ({error.status}): {issue.diagnostics}",
                    code=issue.code,
                    severity="error",
                    expression=issue.expression,
                )
            )
    status = 422 if intake.refused and not intake.stored else 200
    return fhir_json(operation_outcome(*issues), status, pretty=fhir.pretty)
