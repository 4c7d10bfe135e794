"""Observation/$lastn: the latest Observations of each code for each patient, within
what the caller may see, as a searchset Bundle."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.pages import page_bundle
from bevan.api.parameters import ignored_entry, text
from bevan.fhir.bundles import entry_for
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.search import parse_search
from bevan.records.lastn import latest_observations

# The most of each code one request may ask for.
MAX_PER_CODE = 100


def lastn(fhir: FhirRequest) -> Response:
    """GET Observation/$lastn?max=..&patient=..&category=..&code=..: a searchset."""
    fhir.allow("Observation", "search-type")
    pairs = list(fhir.request.query_params.multi_items())
    max_text = text(pairs, "max") or "1"
    if not max_text.isdigit() or not 1 <= int(max_text) <= MAX_PER_CODE:
        raise InvalidRequest(
            Issue(
                f"max must be a whole number from 1 to {MAX_PER_CODE}, not {max_text!r}",
                expression=("max",),
            )
        )
    query = parse_search(
        "Observation",
        [(name, value) for name, value in pairs if name != "max"],
        strict=fhir.prefer.strict,
        base_url=fhir.base_url,
    )
    # The caller's restrictions join the criteria, exactly as for a search.
    found = latest_observations(
        fhir.records, query.with_criteria(*fhir.restrictions("Observation")), int(max_text)
    )
    base = f"{fhir.base_url}/Observation/$lastn"
    applied = [("max", max_text), *query.applied] if "max" in dict(pairs) else list(query.applied)
    entries = [
        entry_for(f"{fhir.base_url}/Observation/{v.id}", v.content, search={"mode": "match"})
        for v in found
    ]
    if query.unknown:
        entries.append(ignored_entry(query.unknown, "Observation/$lastn"))
    return page_bundle(
        "searchset", entries, path=base, applied=applied, total=len(found), pretty=fhir.pretty
    )
