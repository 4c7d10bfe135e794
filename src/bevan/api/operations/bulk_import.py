"""$import: NDJSON loaded into the record asynchronously, for system accounts only.

The body is one NDJSON file (`Content-Type: application/fhir+ndjson`) or several as a
multipart upload (`multipart/form-data`, one part per file, named by its filename). The
files are written to the job's directory before the 202 is sent, so nothing accepted is
lost to a slow client; they are then loaded in the background through the record's
loader (bulk/ndjson_import.py), and the status URL ends with a report of what each type
stored and which lines of which file were refused, and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.responses import Response

from bevan.api.bulk_jobs import accepted, ending_audit, jobs_of, output_url, require_respond_async
from bevan.api.context import FhirRequest
from bevan.bulk.jobs import JobRun
from bevan.bulk.ndjson_import import ImportResult, UploadedFile, run_import
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, UnsupportedMediaType
from bevan.fhir.outcome import operation_outcome

NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson", "application/x-ndjson"})
ERRORS_FILE = "refused.ndjson"


def bulk_import(fhir: FhirRequest) -> Response:
    """POST [base]/$import with NDJSON (or a multipart upload of NDJSON files)."""
    if fhir.caller.role != "system":
        raise Forbidden(Issue("only a system account may import into the record", code="forbidden"))
    require_respond_async(fhir, "$import")
    uploads = _uploaded(fhir)
    files: list[UploadedFile] = []

    def prepare(directory: Path) -> None:
        for index, (name, content) in enumerate(uploads, start=1):
            path = directory / f"upload-{index:03d}.ndjson"
            path.write_bytes(content)
            files.append(UploadedFile(name, path))

    records = fhir.records
    base_url = fhir.base_url
    kick_off = str(fhir.request.url)
    transaction_time = now_instant()

    def work(run: JobRun) -> dict[str, Any]:
        result = run_import(records, files, run)
        _write_refusals(result, run.directory / ERRORS_FILE)
        for uploaded in files:  # kept only as long as the load needs them
            uploaded.path.unlink(missing_ok=True)
        return _report(result, run.job_id, base_url, kick_off, transaction_time)

    row = jobs_of(fhir).start(
        "import",
        fhir.caller.principal.subject,
        kick_off,
        work,
        ending_audit(fhir, _described(uploads)),
        prepare,
    )
    return accepted(fhir, row.id)


def _uploaded(fhir: FhirRequest) -> list[tuple[str, bytes]]:
    """Return the (name, content) of each file the request carries."""
    header = fhir.request.headers.get("content-type", "")
    media, options = parse_options_header(header)
    media_type = media.decode("latin-1").lower()
    if media_type in NDJSON_TYPES:
        files = [("request body", fhir.body)]
    elif media_type == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidRequest(
                Issue("a multipart upload needs a boundary in its Content-Type", code="required")
            )
        files = _parts(fhir.body, boundary)
    else:
        raise UnsupportedMediaType(
            f"$import takes application/fhir+ndjson, or multipart/form-data with one NDJSON "
            f"file in each part, not {media_type or 'a body without a Content-Type'!r}"
        )
    if not any(content.strip() for _, content in files):
        raise InvalidRequest(
            Issue("the upload holds no resources: send NDJSON, one resource a line", "required")
        )
    return files


def _parts(body: bytes, boundary: bytes) -> list[tuple[str, bytes]]:
    """Return each part of a multipart body as (its filename or field name, content)."""
    parts: list[tuple[str, bytes]] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    def on_part_begin() -> None:
        headers.clear()
        chunks.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[header_field.decode("latin-1").lower()] = header_value.decode("utf-8", "replace")
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_part_end() -> None:
        _, options = parse_options_header(headers.get("content-disposition", ""))
        name = options.get(b"filename") or options.get(b"name") or b""
        parts.append(
            (name.decode("utf-8", "replace") or f"part {len(parts) + 1}", b"".join(chunks))
        )

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise InvalidRequest(Issue(f"the multipart upload cannot be read: {error}")) from None
    if not parts:
        raise InvalidRequest(Issue("the multipart upload holds no parts", code="required"))
    return parts


def _write_refusals(result: ImportResult, path: Path) -> None:
    """Write one OperationOutcome a line for each refused line (none: no file)."""
    if not result.refused:
        return
    with path.open("wb") as out:
        for refused in result.refused:
            where = f"{refused.file}: line {refused.line}" if refused.line else refused.file
            outcome = operation_outcome(Issue(f"{where}: {refused.diagnostics}"))
            out.write(orjson.dumps(outcome) + b"\n")


def _report(
    result: ImportResult, job_id: str, base_url: str, request: str, transaction_time: str
) -> dict[str, Any]:
    """Return the status URL's final report: counts by type, and the refusals by file
    and line (also as OperationOutcomes, one a line, in the error file)."""
    error = []
    if result.refused:
        error.append(
            {
                "type": "OperationOutcome",
                "url": output_url(base_url, job_id, ERRORS_FILE),
                "count": len(result.refused),
            }
        )
    return {
        "transactionTime": transaction_time,
        "request": request,
        "requiresAccessToken": True,
        "output": [{"type": t, "count": n} for t, n in sorted(result.stored.items())],
        "error": error,
        "refused": [
            {"file": r.file, **({"line": r.line} if r.line else {}), "diagnostics": r.diagnostics}
            for r in result.refused
        ],
    }


def _described(uploads: list[tuple[str, bytes]]) -> Any:
    names = ", ".join(name for name, _ in uploads)

    def describe(report: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        counts = ", ".join(f"{o['type']}: {o['count']}" for o in report["output"]) or "nothing"
        refused = len(report["refused"])
        return f"imported from {names}: {counts}; refused {refused} lines", ()

    return describe
