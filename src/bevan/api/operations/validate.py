"""$validate: would the server accept this resource (or this delete)? Every problem is
listed, and nothing is ever stored."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from bevan.api.context import FhirRequest, json_body
from bevan.api.interactions import _type as resource_type_in_path
from bevan.api.negotiation import check_body_type
from bevan.api.parameters import text
from bevan.api.responses import fhir_json
from bevan.fhir import json_text
from bevan.fhir.errors import FhirError, InvalidRequest, Issue
from bevan.fhir.outcome import operation_outcome
from bevan.fhir.parameters import parameter_pairs
from bevan.fhir.validation import resource_problems
from bevan.records.service import RecordService

MODES = ("create", "update", "delete")
BASE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


def validate(fhir: FhirRequest) -> Response:
    """[type]/$validate and [type]/[id]/$validate: an OperationOutcome (200) that lists
    every problem found, or says there are none."""
    resource_type = resource_type_in_path(fhir)
    id = fhir.request.path_params.get("id")
    pairs, resource = _inputs(fhir, resource_type)
    mode = text(pairs, "mode")
    if mode is not None and mode not in MODES:
        raise InvalidRequest(
            Issue(f"mode must be create, update or delete, not {mode!r}", expression=("mode",))
        )
    issues: list[Issue] = []
    if mode in ("update", "delete") or (id is not None and resource is None):
        if id is None:
            raise InvalidRequest(
                Issue(
                    f"mode={mode} validates against a stored resource: use {resource_type}/[id]/$validate"
                )
            )
        stored = _readable(fhir, resource_type, id, must_exist=mode != "update")
        if resource is None and mode != "delete":
            resource = stored
    if mode == "delete":
        issues.append(
            Issue(
                f"{resource_type}/{id} may be deleted",
                code="informational",
                severity="information",
            )
        )
    elif resource is None:
        raise InvalidRequest(
            Issue(
                "there is nothing to validate: send the resource as the body, or as the "
                "'resource' parameter of a Parameters body",
                code="required",
                expression=("resource",),
            )
        )
    else:
        issues += resource_problems(resource, resource_type)
        if mode == "update" and isinstance(resource, dict) and id is not None:
            try:
                RecordService.check_body_id(resource_type, id, resource)
            except FhirError as error:
                issues += error.issues
    profile = text(pairs, "profile")
    if profile is not None and profile != BASE_PROFILE + resource_type:
        issues.append(
            Issue(
                f"the profile {profile} is not known to this server; the resource was checked "
                f"against the base R4 {resource_type} and UK Core rules only",
                code="not-supported",
                severity="warning",
                expression=("profile",),
            )
        )
    if not issues:
        issues.append(Issue("no problems found", code="informational", severity="information"))
    return fhir_json(operation_outcome(*issues), pretty=fhir.pretty)


def _inputs(fhir: FhirRequest, resource_type: str) -> tuple[list[tuple[str, Any]], Any]:
    """Return the parameters and the resource to validate (None if none was sent)."""
    pairs: list[tuple[str, Any]] = list(fhir.request.query_params.multi_items())
    if fhir.request.method != "POST" or not fhir.body.strip():
        return pairs, None
    check_body_type(fhir.request)
    body = json_body(fhir)
    wrapped = (
        isinstance(body, dict)
        and body.get("resourceType") == "Parameters"
        and (
            resource_type != "Parameters"
            or any(
                p.get("name") == "resource"
                for p in body.get("parameter", [])
                if isinstance(p, dict)
            )
        )
    )
    if not wrapped:
        return pairs, body
    pairs += parameter_pairs(body)
    resource = next((value for name, value in pairs if name == "resource"), None)
    return pairs, resource


def _readable(fhir: FhirRequest, resource_type: str, id: str, *, must_exist: bool) -> Any:
    """Return the stored resource's content (None if there is none and need be none),
    refusing (403) one the caller may not read."""
    fhir.allow(resource_type, "read")
    try:
        stored = fhir.records.read(resource_type, id)
    except FhirError:
        if must_exist:
            raise
        return None
    fhir.allow_stored(stored)
    return json_text.loads(stored.content) if stored.content else None
