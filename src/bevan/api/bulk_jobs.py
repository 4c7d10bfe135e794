"""The asynchronous pattern of FHIR Bulk Data, shared by $export and $import: the kick-off
answer (202 and a status URL), the status URL (202 with X-Progress while running, the
manifest or report when done, DELETE to cancel) and the files, each served only to the
token subject that asked; anyone else, and anyone after the job expired, gets 404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate
from typing import Any

from starlette.responses import FileResponse, Response

from bevan.api.context import FhirRequest, audit_record
from bevan.api.responses import fhir_json
from bevan.bulk.jobs import BulkJobs, JobEnd
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import InvalidRequest, Issue, NotFound
from bevan.fhir.ids import is_valid_id
from bevan.security.audit import AuditRecord, outcome_for

STATUS_PATH = "$bulk-status"
OUTPUT_PATH = "$bulk-output"
NDJSON = "application/fhir+ndjson"
# How long a client is asked to wait between polls.
RETRY_AFTER_SECONDS = 2


def jobs_of(fhir: FhirRequest) -> BulkJobs:
    jobs = fhir.services.bulk
    if jobs is None:
        raise NotFound(Issue("bulk data is not served here", code="not-supported"))
    return jobs


def require_respond_async(fhir: FhirRequest, operation: str) -> None:
    """Refuse (400) a kick-off without `Prefer: respond-async`, as Bulk Data requires."""
    header = fhir.request.headers.get("prefer", "")
    wanted = {item.strip().lower() for part in header.split(";") for item in part.split(",")}
    if "respond-async" not in wanted:
        raise InvalidRequest(
            Issue(
                f"{operation} is answered asynchronously: send the header "
                "'Prefer: respond-async', then poll the URL of the Content-Location header",
                code="required",
                expression=("Prefer",),
            )
        )


def status_url(fhir: FhirRequest, job_id: str) -> str:
    return f"{fhir.base_url}/{STATUS_PATH}/{job_id}"


def output_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url}/{OUTPUT_PATH}/{job_id}/{name}"


def accepted(fhir: FhirRequest, job_id: str) -> Response:
    """Return the kick-off answer: 202 Accepted, the status URL in Content-Location."""
    return Response(status_code=202, headers={"Content-Location": status_url(fhir, job_id)})


def ending_audit(
    fhir: FhirRequest, describe: Callable[[dict[str, Any]], tuple[str, tuple[str, ...]]]
) -> Callable[[JobEnd], None]:
    """Return what records a job's end in the audit trail: one entry for the whole job,
    naming the kick-off request and, from describe(result), what it held (a text of
    types and counts, and the patients whose records it holds)."""
    template = audit_record(
        fhir.request, "operation", fhir.access, Response(status_code=200), None, b""
    )
    trail = fhir.services.trail

    def record(end: JobEnd) -> None:
        patients: tuple[str, ...] = ()
        if end.state == "complete" and end.result is not None:
            text, patients = describe(end.result)
            status = 200
        elif end.state == "cancelled":
            text, status = "cancelled by its client; its files are removed", 200
        else:
            text, status = f"failed: {end.problem}", 500
        entry: AuditRecord = replace(
            template,
            recorded=now_instant(),
            outcome=outcome_for(status),
            outcome_text=text,
            http_status=status,
            patient_id=patients[0] if len(patients) == 1 else None,
            other_patients=tuple(sorted(patients)) if len(patients) > 1 else (),
        )
        trail.record_sync([entry])

    return record


def _job_id(fhir: FhirRequest) -> str:
    job_id = fhir.path("job")
    if not is_valid_id(job_id):
        raise NotFound(f"there is no bulk request {job_id!r}")
    return job_id


def _owner(fhir: FhirRequest) -> str:
    return fhir.caller.principal.subject


def job_status(fhir: FhirRequest) -> Response:
    """GET the status URL: 202 with X-Progress while the job runs, 200 with its manifest
    (or report) once complete, an OperationOutcome (500) if it failed."""
    job_id = _job_id(fhir)
    row = jobs_of(fhir).status(job_id, _owner(fhir))
    if row is None:
        raise NotFound(f"there is no bulk request {job_id} of yours (it may have expired)")
    if row.state == "in-progress":
        return Response(
            status_code=202,
            headers={
                "X-Progress": row.progress or "in progress",
                "Retry-After": str(RETRY_AFTER_SECONDS),
            },
        )
    expires = {"Expires": formatdate(row.expires, usegmt=True)}
    if row.state == "complete":
        return Response(
            row.result or "{}", status_code=200, media_type="application/json", headers=expires
        )
    return fhir_json(row.result, 500, pretty=fhir.pretty)


def cancel_job(fhir: FhirRequest) -> Response:
    """DELETE the status URL: the job stops and its files are removed (202)."""
    job_id = _job_id(fhir)
    if not jobs_of(fhir).cancel(job_id, _owner(fhir)):
        raise NotFound(f"there is no bulk request {job_id} of yours (it may have expired)")
    return Response(status_code=202)


def job_file(fhir: FhirRequest) -> Response:
    """GET one of a complete job's files, streamed from disk, as NDJSON."""
    job_id = _job_id(fhir)
    name = fhir.path("name")
    path = jobs_of(fhir).file(job_id, _owner(fhir), name)
    if path is None:
        raise NotFound(f"bulk request {job_id} has no file {name!r} of yours")
    return FileResponse(path, media_type=NDJSON)
