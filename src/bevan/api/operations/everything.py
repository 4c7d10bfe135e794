"""Patient/$everything: a patient's whole record, paged, within what the caller may see;
by type, every patient (each one's record through its own $everything)."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.interactions import searchset
from bevan.api.pages import page_bundle
from bevan.api.parameters import ignored_entry, operation_inputs, text, unknown_inputs
from bevan.fhir.bundles import entry_for
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.paging import PageRequest, parse_since, parse_until
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search import parse_search

EVERYTHING_PARAMETERS = ("start", "end", "_since", "_type", "_count")


def everything(fhir: FhirRequest) -> Response:
    """GET or POST /Patient/123/$everything: the patient's record, paged (start, end,
    _since, _type, _count; from the query or a Parameters body)."""
    pairs = operation_inputs(fhir)
    ignored = unknown_inputs(fhir, pairs, EVERYTHING_PARAMETERS, "Patient/$everything")
    params = {name: text(pairs, name) for name in (*EVERYTHING_PARAMETERS, "_cursor")}
    types = tuple(t for t in (params["_type"] or "").split(",") if t)
    unknown = [t for t in types if t not in RESOURCE_TYPES]
    if unknown:
        raise InvalidRequest(
            Issue(
                f"_type names unknown resource types: {', '.join(unknown)}", expression=("_type",)
            )
        )
    paging = PageRequest.parse(
        [("_since", params["_since"]), ("_count", params["_count"] or None)]
        + [("_cursor", params["_cursor"])],
        default_count=100,
        what="a page of this record",
    )
    care_start = parse_since(params["start"], "start") if params["start"] is not None else None
    care_end = parse_until(params["end"], "end") if params["end"] is not None else None
    fhir.allow("Patient", "read")
    fhir.allow_patient(fhir.path("id"))
    page = fhir.records.everything(
        fhir.path("id"),
        since=paging.since,
        types=types,
        count=paging.count,
        position=paging.position,
        visible=fhir.may_see,
        care_start=care_start,
        care_end=care_end,
    )
    entries = [
        entry_for(f"{fhir.base_url}/{v.resource_type}/{v.id}", v.content, search={"mode": "match"})
        for v in page.versions
    ]
    if ignored:
        entries.append(ignored_entry(ignored, "Patient/$everything"))
    return page_bundle(
        "searchset",
        entries,
        path=f"{fhir.base_url}/Patient/{fhir.path('id')}/$everything",
        applied=[(k, v) for k in EVERYTHING_PARAMETERS if (v := params[k])],
        total=page.total,
        next_cursor=page.next_cursor,
        pretty=fhir.pretty,
    )


def everyone(fhir: FhirRequest) -> Response:
    """GET or POST /Patient/$everything: every patient, paged (each patient's record via its own $everything)."""
    fhir.allow("Patient", "search-type")
    query = parse_search(
        "Patient",
        [(k, v) for k, v in operation_inputs(fhir) if k in ("_count", "_cursor")],
    )
    return searchset(fhir, query, f"{fhir.base_url}/Patient/$everything")
