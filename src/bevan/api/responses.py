"""FHIR responses: JSON bodies, headers from stored versions, OperationOutcomes."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any

from starlette.responses import Response

from bevan.fhir import json_text
from bevan.fhir.errors import FhirError, Issue
from bevan.fhir.outcome import operation_outcome
from bevan.store.records import StoredVersion

CONTENT_TYPE = "application/fhir+json; charset=utf-8"


def fhir_json(
    body: dict[str, Any] | str | None,
    status: int = 200,
    *,
    pretty: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return a FHIR JSON response; body may be a dict or stored JSON text."""
    if body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body, str):
        content = json_text.dumps(json_text.loads(body), pretty=True) if pretty else body.encode()
    elif pretty:  # stored resources inside are fragments, written as they are: indent them
        content = json_text.dumps(json_text.loads(json_text.dumps(body)), pretty=True)
    else:
        content = json_text.dumps(body)
    return Response(content, status_code=status, media_type=CONTENT_TYPE, headers=headers)


def version_headers(
    stored: StoredVersion, base_url: str, *, location: bool = False
) -> dict[str, str]:
    """Return ETag and Last-Modified (and Location) for a stored version."""
    headers = {"ETag": f'W/"{stored.version_id}"', "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = (
            f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        )
    return headers


def http_date(instant: str) -> str:
    """Return a FHIR instant as an HTTP date (for Last-Modified)."""
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def error_response(error: FhirError, *, pretty: bool = False) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="bevan"'} if error.status == 401 else None
    return fhir_json(operation_outcome(*error.issues), error.status, pretty=pretty, headers=headers)


def internal_error_response(reference: str) -> Response:
    issue = Issue(
        f"the server failed to answer this request; quote reference {reference} to its operators",
        code="exception",
        severity="fatal",
    )
    return fhir_json(operation_outcome(issue), 500)
