"""$meta: a resource's meta, or the tags, security labels and profiles in use by type or
across the server; and the change $meta-add and $meta-delete share."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from bevan.api.context import FhirRequest, json_body
from bevan.api.interactions import _type as resource_type_in_path
from bevan.api.negotiation import check_body_type
from bevan.api.responses import fhir_json, version_headers
from bevan.fhir import json_text
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue
from bevan.fhir.meta import meta_parts, meta_summary
from bevan.fhir.parameters import parameter_pairs


def meta(fhir: FhirRequest) -> Response:
    """[type]/[id]/$meta: the resource's meta; [type]/$meta and $meta: the tags, security
    labels and profiles in use (for system accounts: they span many patients' records)."""
    params = fhir.request.path_params
    if "id" in params:
        resource_type = resource_type_in_path(fhir)
        fhir.allow(resource_type, "read")
        stored = fhir.records.read(resource_type, params["id"])
        fhir.allow_stored(stored)
        content = json_text.loads(stored.content or "{}")
        return _answer(fhir, content.get("meta") or {})
    if fhir.caller.role != "system":
        raise Forbidden(
            Issue(
                "the tags, security labels and profiles in use across records are for "
                "system accounts; ask a resource's own $meta",
                code="forbidden",
            )
        )
    if "type" in params:
        resource_type = resource_type_in_path(fhir)
        fhir.allow(resource_type, "search-type")
        return _answer(fhir, meta_summary(fhir.records.meta_in_use(resource_type)))
    fhir.allow("*", "history-system")
    return _answer(fhir, meta_summary(fhir.records.meta_in_use()))


def change_meta(fhir: FhirRequest, *, adding: bool) -> Response:
    """Return the resource's meta after adding ($meta-add) or removing ($meta-delete)
    what the body's meta holds."""
    resource_type = resource_type_in_path(fhir)
    check_body_type(fhir.request)
    pairs = parameter_pairs(json_body(fhir))
    given = [value for name, value in pairs if name == "meta"]
    if len(given) != 1:
        raise InvalidRequest(
            Issue(
                "the body needs one parameter 'meta' with a valueMeta",
                code="required",
                expression=("Parameters.parameter",),
            )
        )
    parts = meta_parts(given[0], "Parameters.parameter.valueMeta")
    fhir.allow(resource_type, "update")
    guard = fhir.write_guard()
    id = fhir.path("id")
    if adding:
        result = fhir.records.change_meta(resource_type, id, add=parts, guard=guard)
    else:
        result = fhir.records.change_meta(resource_type, id, remove=parts, guard=guard)
    stored = result.stored
    assert stored is not None
    content = json_text.loads(stored.content or "{}")
    return _answer(fhir, content.get("meta") or {}, version_headers(stored, fhir.base_url))


def _answer(
    fhir: FhirRequest, value: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    body = {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": value}]}
    return fhir_json(body, pretty=fhir.pretty, headers=headers)
