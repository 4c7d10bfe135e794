"""The FHIR RESTful interactions as HTTP handlers over RecordService."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from bevan.api.context import FhirRequest, json_body
from bevan.api.negotiation import JSON_PATCH, check_body_type
from bevan.api.pages import page_bundle
from bevan.api.responses import fhir_json, not_modified, version_headers
from bevan.fhir import json_text
from bevan.fhir.bundles import entry_for
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound, UnsupportedMediaType
from bevan.fhir.outcome import information, operation_outcome
from bevan.fhir.paging import PageRequest
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search import Include, SearchQuery, parse_search
from bevan.fhir.subsetting import select_elements, summarise
from bevan.fhir.validation import check_resource_type
from bevan.records.bundles import parse_etag, process_bundle
from bevan.records.service import WriteResult
from bevan.store.versions import StoredVersion


def _type(fhir: FhirRequest) -> str:
    resource_type = fhir.path("type")
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(
            Issue(
                f"{resource_type!r} is not an R4 resource type",
                code="not-supported",
                expression=(resource_type,),
            )
        )
    return resource_type


def _if_match(fhir: FhirRequest) -> int | None:
    header = fhir.request.headers.get("if-match")
    return parse_etag(header) if header else None


def _written(fhir: FhirRequest, result: WriteResult) -> Response:
    stored = result.stored
    assert stored is not None
    headers = version_headers(stored, fhir.base_url, location=True)
    prefer = fhir.prefer.return_
    if prefer == "minimal":
        return fhir_json(None, result.status, headers=headers)
    if prefer == "OperationOutcome":
        text = "created" if result.created else "updated" if result.status == 200 else "done"
        body = information(
            f"{stored.resource_type}/{stored.id} {text} (version {stored.version_id})"
        )
        return fhir_json(body, result.status, pretty=fhir.pretty, headers=headers)
    return fhir_json(stored.content, result.status, pretty=fhir.pretty, headers=headers)


def _stored_response(fhir: FhirRequest, stored: StoredVersion) -> Response:
    # Judged after the access decision: a 304 says as much as the resource's ETag.
    if not_modified(fhir.request.headers, stored):
        return Response(status_code=304, headers=version_headers(stored, fhir.base_url))
    return fhir_json(
        stored.content, 200, pretty=fhir.pretty, headers=version_headers(stored, fhir.base_url)
    )


# --- instance level -----------------------------------------------------------------------


def read(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    fhir.allow(resource_type, "read")
    stored = fhir.records.read(resource_type, fhir.path("id"))
    fhir.allow_stored(stored)
    return _stored_response(fhir, stored)


def vread(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    fhir.allow(resource_type, "vread")
    stored = fhir.records.vread(resource_type, fhir.path("id"), fhir.path("version"))
    fhir.allow_version(stored, fhir.current(resource_type, fhir.path("id")))
    return _stored_response(fhir, stored)


def update(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    check_body_type(fhir.request)
    resource = json_body(fhir)
    fhir.allow(resource_type, "update")
    result = fhir.records.update(
        resource_type, fhir.path("id"), resource, if_match=_if_match(fhir), guard=fhir.write_guard()
    )
    return _written(fhir, result)


def patch(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    check_body_type(fhir.request, patch=True)
    operations = json_body(fhir)
    _check_patch_shape(fhir, operations)
    fhir.allow(resource_type, "patch")
    result = fhir.records.patch(
        resource_type,
        fhir.path("id"),
        operations,
        if_match=_if_match(fhir),
        guard=fhir.write_guard("patch"),
    )
    return _written(fhir, result)


def _check_patch_shape(fhir: FhirRequest, operations: Any) -> None:
    # The media type says which patch format the body is; a body of the other shape is refused
    media = (fhir.request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media == JSON_PATCH and not isinstance(operations, list):
        raise InvalidRequest(Issue("a JSON Patch body must be a JSON array of operations"))
    if media and media != JSON_PATCH and not isinstance(operations, dict):
        raise InvalidRequest(
            Issue(f"a {media} PATCH body must be a Parameters resource (FHIRPath Patch)")
        )


def delete(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    fhir.allow(resource_type, "delete")
    fhir.records.delete(
        resource_type,
        fhir.path("id"),
        if_match=_if_match(fhir),
        guard=fhir.write_guard(),
        cascade=_cascade(fhir),
    )
    return Response(status_code=204)


def _cascade(fhir: FhirRequest) -> bool:
    """Return True if the delete asks to take every resource referring to it along
    (`_cascade=delete`), which only a system account may."""
    asked = fhir.request.query_params.getlist("_cascade")
    if not asked:
        return False
    if asked != ["delete"]:
        raise InvalidRequest(
            Issue(
                f"_cascade takes the one value 'delete', not {', '.join(asked)!r}",
                expression=("_cascade",),
            )
        )
    if fhir.caller.role != "system":
        raise Forbidden(
            Issue(
                "only a system account may delete with _cascade=delete: it deletes records "
                "the caller might not be allowed to see",
                code="forbidden",
            )
        )
    return True


def instance_history(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    fhir.allow(resource_type, "history-instance")
    current = fhir.current(resource_type, fhir.path("id"))
    if current is not None:
        fhir.allow_stored(current)
    elif not fhir.unlimited():
        # A deleted record's history is judged version by version, as if it were read.
        latest = fhir.records.history(resource_type, fhir.path("id"), count=2).versions
        for stored in latest:
            fhir.allow_version(stored, None)
    return _history(
        fhir,
        resource_type,
        fhir.path("id"),
        visible=None if fhir.unlimited() else lambda v: fhir.may_see_version(v, current),
    )


# --- type level ---------------------------------------------------------------------------


def create(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    check_body_type(fhir.request)
    resource = json_body(fhir)
    if isinstance(resource, dict) and resource.get("resourceType") != resource_type:
        check_resource_type(resource, resource_type)
    fhir.allow(resource_type, "create")
    result = fhir.records.create(
        resource,
        if_none_exist=fhir.request.headers.get("if-none-exist"),
        guard=fhir.write_guard(),
        visible=fhir.search_limit(),
    )
    if result.status == 200 and result.stored is not None:  # an existing match
        fhir.allow_stored(result.stored)
    return _written(fhir, result)


def conditional_update(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    check_body_type(fhir.request)
    query = fhir.request.url.query
    if not query:
        raise InvalidRequest(
            Issue("PUT to a type needs a search (Type?param=value) or an id (Type/id)")
        )
    resource = json_body(fhir)
    fhir.allow(resource_type, "update")
    result = fhir.records.conditional_update(
        resource_type,
        query,
        resource,
        if_match=_if_match(fhir),
        guard=fhir.write_guard(),
        visible=fhir.search_limit(),
    )
    return _written(fhir, result)


def conditional_delete(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    query = fhir.request.url.query
    if not query:
        raise InvalidRequest(Issue("DELETE of a whole type is not allowed; give a search or an id"))
    fhir.allow(resource_type, "delete")
    fhir.records.conditional_delete(
        resource_type, query, guard=fhir.write_guard(), visible=fhir.search_limit()
    )
    return Response(status_code=204)


def search(fhir: FhirRequest) -> Response:
    """GET /Type?..., POST /Type/_search."""
    resource_type = _type(fhir)
    fhir.allow(resource_type, "search-type")
    query = parse_search(
        resource_type, _search_pairs(fhir), strict=fhir.prefer.strict, base_url=fhir.base_url
    )
    return searchset(fhir, query, f"{fhir.base_url}/{resource_type}")


def compartment_search(fhir: FhirRequest) -> Response:
    """GET /Patient/123/Observation?...: a search inside one compartment."""
    compartment = _type(fhir)
    id = fhir.path("id")
    resource_type = fhir.path("target")
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(Issue(f"{resource_type!r} is not an R4 resource type", code="not-supported"))
    fhir.allow(resource_type, "search-type")
    holder = fhir.records.read(compartment, id)  # 404 / 410 for a compartment that is not there
    if compartment == "Patient":
        fhir.allow_patient(id)
    else:
        fhir.allow_stored(holder)
    criterion = fhir.records.compartment_criterion(compartment, id, resource_type)
    query = parse_search(
        resource_type, _search_pairs(fhir), strict=fhir.prefer.strict, base_url=fhir.base_url
    )
    return searchset(
        fhir, query.with_criteria(criterion), f"{fhir.base_url}/{compartment}/{id}/{resource_type}"
    )


def _search_pairs(fhir: FhirRequest) -> list[tuple[str, str]]:
    pairs = list(fhir.request.query_params.multi_items())
    if fhir.request.method == "POST":
        media = fhir.request.headers.get("content-type", "").split(";")[0].strip()
        if media != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType(
                "POST _search takes application/x-www-form-urlencoded parameters"
            )
        pairs += parse_qsl(fhir.body.decode("utf-8", "replace"), keep_blank_values=True)
    return pairs


def searchset(fhir: FhirRequest, query: SearchQuery, base: str) -> Response:
    """Return a searchset page of query as the caller may see it, its links under base."""
    # Restrictions join the criteria (and every chain and _has), so results, totals and
    # pages all respect them; they stay out of query.applied, so links do not show them.
    page = fhir.records.search(
        fhir.visible(query), visible=None if fhir.unlimited() else fhir.may_see
    )
    entries = [_search_entry(fhir, query, v, "match") for v in page.matches]
    entries += [_search_entry(fhir, query, v, "include") for v in page.included]
    fhir.saw([*page.matches, *page.included])
    unreadable = _unreadable_includes(fhir, query)
    if unreadable:
        outcome = operation_outcome(
            Issue(
                "you may not read the resources these name, so they were left out: "
                + ", ".join(name for name, _ in unreadable),
                code="forbidden",
                severity="warning",
                expression=tuple(expression for _, expression in unreadable),
            )
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if query.unknown:
        ignored = ", ".join(query.unknown)
        outcome = operation_outcome(
            Issue(
                f"these search parameters are not supported and were ignored: {ignored}",
                code="not-supported",
                severity="warning",
                expression=tuple(f"{query.resource_type}?{n}" for n in query.unknown),
            )
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return page_bundle(
        "searchset",
        entries,
        path=base,
        applied=query.applied,
        total=page.total,
        next_cursor=page.next_cursor.encode() if page.next_cursor is not None else None,
        previous_cursor=page.previous_cursor.encode() if page.previous_cursor else None,
        pretty=fhir.pretty,
    )


def _unreadable_includes(fhir: FhirRequest, query: SearchQuery) -> list[tuple[str, str]]:
    """Return (name, expression) for each _include and _revinclude bringing in a type the
    caller may not read at all (role or scopes): those are left out, and said so."""
    found: list[tuple[str, str]] = []
    ways: tuple[tuple[str, tuple[Include, ...], Callable[[Include], tuple[str, ...]]], ...] = (
        ("_include", query.include, lambda s: (s.target_type,) if s.target_type else ()),
        ("_revinclude", query.revinclude, lambda s: (s.source_type,)),
    )
    for parameter, specs, kinds in ways:
        for spec in specs:
            for kind in kinds(spec):
                try:
                    fhir.allow(kind, "read")
                except Forbidden:
                    name = f"{parameter}={spec.source_type}:{spec.param or '*'}"
                    found.append((name, f"{query.resource_type}?{parameter}"))
    return found


def _search_entry(
    fhir: FhirRequest, query: SearchQuery, stored: StoredVersion, mode: str
) -> dict[str, Any]:
    entry = entry_for(
        f"{fhir.base_url}/{stored.resource_type}/{stored.id}", stored.content, search={"mode": mode}
    )
    if stored.content is not None and query.elements and mode == "match":
        entry["resource"] = select_elements(json_text.loads(stored.content), query.elements)
    elif stored.content is not None and query.summary:
        entry["resource"] = summarise(json_text.loads(stored.content), query.summary)
    return entry


def type_history(fhir: FhirRequest) -> Response:
    resource_type = _type(fhir)
    fhir.allow(resource_type, "history-type")
    return _history(fhir, resource_type, None)


# --- system level -------------------------------------------------------------------------


def system_bundle(fhir: FhirRequest) -> Response:
    check_body_type(fhir.request)
    body = json_body(fhir)
    answer = process_bundle(fhir.records, body, fhir.base_url, fhir.bundle_access())
    return fhir_json(answer, pretty=fhir.pretty)


def system_history(fhir: FhirRequest) -> Response:
    fhir.allow("*", "history-system")
    return _history(fhir, None, None)


def _history(
    fhir: FhirRequest,
    resource_type: str | None,
    id: str | None,
    visible: Callable[[StoredVersion], bool] | None = None,
) -> Response:
    paging = PageRequest.parse(fhir.request.query_params.items())
    page = fhir.records.history(
        resource_type,
        id,
        since=paging.since,
        count=paging.count,
        before=paging.position,
        visible=visible,
    )
    return page_bundle(
        "history",
        [_history_entry(fhir.base_url, v) for v in page.versions],
        path="/".join(p for p in (fhir.base_url, resource_type, id, "_history") if p),
        applied=[(k, v) for k, v in paging.applied if k != "_cursor" and v],
        total=page.total,
        next_cursor=page.next_cursor,
        pretty=fhir.pretty,
    )


def _history_entry(base_url: str, stored: StoredVersion) -> dict[str, Any]:
    url = f"{base_url}/{stored.resource_type}/{stored.id}"
    if stored.deleted:
        request = {"method": "DELETE", "url": f"{stored.resource_type}/{stored.id}"}
        status = "204 No Content"
    elif stored.version_id == 1:
        request = {"method": "POST", "url": stored.resource_type}
        status = "201 Created"
    else:
        request = {"method": "PUT", "url": f"{stored.resource_type}/{stored.id}"}
        status = "200 OK"
    return entry_for(
        url,
        stored.content,
        request=request,
        response={
            "status": status,
            "etag": f'W/"{stored.version_id}"',
            "lastModified": stored.last_updated,
        },
    )
