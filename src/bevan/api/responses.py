"""FHIR responses: JSON bodies, headers from stored versions, OperationOutcomes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.responses import Response

from bevan.fhir import json_text
from bevan.fhir.errors import FhirError, Issue
from bevan.fhir.outcome import operation_outcome
from bevan.store.versions import StoredVersion

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


def not_modified(headers: Mapping[str, str], stored: StoredVersion) -> bool:
    """Return True if the client's copy is this version: If-None-Match names its ETag
    (or is *), or, without If-None-Match, If-Modified-Since is not before its change."""
    tags = headers.get("if-none-match")
    if tags is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in tags.split(",")}
        return "*" in wanted or f'"{stored.version_id}"' in wanted
    since = headers.get("if-modified-since")
    if since is None:
        return False
    try:
        client = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as HTTP says
    if client.tzinfo is None:
        return False
    changed = datetime.fromisoformat(stored.last_updated.replace("Z", "+00:00"))
    return changed.replace(microsecond=0) <= client


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
