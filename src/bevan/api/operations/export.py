"""$export (FHIR Bulk Data Access 2.0) at system, Patient and Group level: the kick-off.

The request is checked here, while the client waits (parameters, the caller's right to
each type asked for, the Group), then written to NDJSON files in the background
(bulk/export.py) through the same search restrictions the caller's own searches meet;
the client polls the status URL it is given (api/bulk_jobs.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from bevan.api.bulk_jobs import (
    accepted,
    ending_audit,
    jobs_of,
    output_url,
    require_respond_async,
)
from bevan.api.context import FhirRequest
from bevan.api.parameters import GENERAL, operation_inputs
from bevan.bulk.export import (
    CallerLimits,
    ExportRequest,
    ExportResult,
    export_types,
    run_export,
)
from bevan.bulk.jobs import JobRun
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, InvalidRequest, Issue, NotFound
from bevan.fhir.references import parse_reference
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search import SearchQuery, parse_search

PARAMETERS = ("_outputFormat", "_since", "_type", "_typeFilter", "patient")
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# Types an export never writes: the audit trail is read through AuditEvent searches.
NOT_EXPORTED = frozenset({"AuditEvent"})


def export(fhir: FhirRequest) -> Response:
    """GET (or POST with Parameters) [base]/$export, Patient/$export, Group/[id]/$export."""
    params = fhir.request.path_params
    level, where = _level(params.get("type"), "id" in params)
    caller = fhir.caller
    if caller.role == "device":
        raise Forbidden(Issue("a device may only send readings; it may not export", "forbidden"))
    if level == "system" and caller.role == "patient":
        raise Forbidden(
            Issue(
                "a patient may not export the whole system; use Patient/$export for your "
                "own record",
                code="forbidden",
            )
        )
    require_respond_async(fhir, where)
    pairs = operation_inputs(fhir)
    if not _lenient(fhir):
        _refuse_unknown(pairs, where)
    output_format = _single(pairs, "_outputFormat", where)
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise InvalidRequest(
            Issue(
                f"_outputFormat {output_format!r} is not served; exports are "
                "application/fhir+ndjson",
                code="not-supported",
                expression=(f"{where}?_outputFormat",),
            )
        )
    since = _since(_single(pairs, "_since", where), where)
    asked = _types(pairs, where)
    filters = _type_filters(fhir, pairs, asked, where)
    members: tuple[str, ...] | None = None
    if level == "group":
        members = _group_members(fhir)
    elif "id" in params:  # Patient/[id]/$export: one patient's record
        fhir.allow("Patient", "read")
        fhir.allow_stored(fhir.records.read("Patient", fhir.path("id")))
        members = (fhir.path("id"),)
    named = _patients_named(fhir, pairs, level, where)
    if named is not None:
        members = named if members is None else tuple(p for p in members if p in named)
    with fhir.records.reading() as session:
        present = session.resource_counts()
    types = _allowed(fhir, export_types(level, asked, present), explicit=bool(asked))
    request = ExportRequest(level, types, since, filters, members)
    limits = CallerLimits(limit=fhir.visible, visible=None if fhir.unlimited() else fhir.may_see)
    records = fhir.records
    base_url = fhir.base_url
    kick_off = str(fhir.request.url)
    transaction_time = now_instant()

    exported: list[ExportResult] = []  # for the audit entry at the end

    def work(run: JobRun) -> dict[str, Any]:
        result = run_export(records, request, limits, run)
        exported.append(result)
        return _manifest(result, run.job_id, base_url, kick_off, transaction_time)

    def described(manifest: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return _described(exported[0])

    row = jobs_of(fhir).start(
        "export", caller.principal.subject, kick_off, work, ending_audit(fhir, described)
    )
    return accepted(fhir, row.id)


def _manifest(
    result: ExportResult, job_id: str, base_url: str, request: str, transaction_time: str
) -> dict[str, Any]:
    """Return the Bulk Data manifest of a finished export."""
    return {
        "transactionTime": transaction_time,
        "request": request,
        "requiresAccessToken": True,
        "output": [
            {"type": f.type, "url": output_url(base_url, job_id, f.name), "count": f.count}
            for f in result.files
        ],
        "error": [],
    }


def _described(result: ExportResult) -> tuple[str, tuple[str, ...]]:
    """Return the audit text of a finished export (types and counts) and its patients."""
    counts = ", ".join(f"{f.type}: {f.count}" for f in result.files) or "nothing"
    text = f"exported {counts}"
    if result.patients_capped:
        text += f"; the first {len(result.patients)} patients are named, not every one"
    return text, tuple(sorted(result.patients))


def _level(resource_type: str | None, instance: bool) -> tuple[str, str]:
    """Return the level of an export (system, patient, group) and its place in
    diagnostics; NotFound for a place it is not answered at (Group/$export, ...)."""
    if resource_type is None:
        return "system", "$export"
    if resource_type == "Patient":
        return "patient", "Patient/[id]/$export" if instance else "Patient/$export"
    if resource_type == "Group" and instance:
        return "group", "Group/[id]/$export"
    raise NotFound(
        Issue(
            "the operation $export is answered at $export, Patient/$export, "
            "Patient/[id]/$export and Group/[id]/$export",
            code="not-supported",
        )
    )


def _lenient(fhir: FhirRequest) -> bool:
    """Return True if the client asked for unknown parameters to be ignored
    (`Prefer: handling=lenient`), as Bulk Data allows."""
    header = fhir.request.headers.get("prefer", "").replace(" ", "").lower()
    return "handling=lenient" in header


def _patients_named(
    fhir: FhirRequest, pairs: list[tuple[str, Any]], level: str, where: str
) -> tuple[str, ...] | None:
    """Return the patients the `patient` parameters name (POST, Patient or Group level),
    or None if there are none."""
    values = [value for name, value in pairs if name == "patient"]
    if not values:
        return None
    place = (f"{where}?patient",)
    if level == "system":
        raise InvalidRequest(
            Issue("patient is taken at Patient/$export and Group/[id]/$export", expression=place)
        )
    found: list[str] = []
    for value in values:
        text = value.get("reference") if isinstance(value, dict) else None
        target = parse_reference(text) if isinstance(text, str) else None
        if target is None or target.resource_type != "Patient":
            raise InvalidRequest(
                Issue(f"patient must be a reference to a Patient, not {value!r}", expression=place)
            )
        found.append(target.id)
    return tuple(dict.fromkeys(found))


def _refuse_unknown(pairs: list[tuple[str, Any]], where: str) -> None:
    unknown = [name for name, _ in pairs if name not in PARAMETERS and name not in GENERAL]
    if unknown:
        raise InvalidRequest(
            *(
                Issue(
                    f"parameter {name!r} is not supported by {where}; it takes "
                    + ", ".join(PARAMETERS),
                    code="not-supported",
                    expression=(f"{where}?{name}",),
                )
                for name in dict.fromkeys(unknown)
            )
        )


def _single(pairs: list[tuple[str, Any]], name: str, where: str) -> str | None:
    values = [str(value) for key, value in pairs if key == name]
    if len(values) > 1:
        raise InvalidRequest(Issue(f"{name} may be given once", expression=(f"{where}?{name}",)))
    return values[0] if values else None


def _since(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        parse_search("Patient", [("_lastUpdated", f"gt{value}")])
    except InvalidRequest:
        raise InvalidRequest(
            Issue(
                f"_since must be an instant (such as 2026-01-31T09:00:00Z), not {value!r}",
                expression=(f"{where}?_since",),
            )
        ) from None
    return value


def _types(pairs: list[tuple[str, Any]], where: str) -> tuple[str, ...]:
    asked = [
        t.strip()
        for key, value in pairs
        if key == "_type"
        for t in str(value).split(",")
        if t.strip()
    ]
    unknown = [t for t in asked if t not in RESOURCE_TYPES or t in NOT_EXPORTED]
    if unknown:
        raise InvalidRequest(
            Issue(
                f"_type names types that cannot be exported: {', '.join(unknown)}",
                expression=(f"{where}?_type",),
            )
        )
    return tuple(dict.fromkeys(asked))


def _type_filters(
    fhir: FhirRequest, pairs: list[tuple[str, Any]], asked: tuple[str, ...], where: str
) -> dict[str, tuple[SearchQuery, ...]]:
    """Return each _typeFilter (Type?search) as a query, by type; a type's filters are
    alternatives."""
    found: dict[str, list[SearchQuery]] = {}
    for key, value in pairs:
        if key != "_typeFilter":
            continue
        text = str(value)
        place = (f"{where}?_typeFilter",)
        resource_type, mark, query = text.partition("?")
        if not mark or resource_type not in RESOURCE_TYPES:
            raise InvalidRequest(
                Issue(
                    f"_typeFilter {text!r} is not of the form Type?search",
                    expression=place,
                )
            )
        if asked and resource_type not in asked:
            raise InvalidRequest(
                Issue(
                    f"_typeFilter {text!r} filters {resource_type}, which _type does not ask for",
                    expression=place,
                )
            )
        pairs_of_filter = parse_qsl(query, keep_blank_values=True)
        shaping = sorted({n for n, _ in pairs_of_filter if n.split(":")[0] in _NOT_FILTERS})
        if shaping:
            raise InvalidRequest(
                Issue(
                    f"_typeFilter {text!r} uses {', '.join(shaping)}, which choose how results "
                    "are shown, not which: a filter takes search criteria only",
                    expression=place,
                )
            )
        parsed = parse_search(resource_type, pairs_of_filter, strict=True, base_url=fhir.base_url)
        found.setdefault(resource_type, []).append(parsed)
    return {t: tuple(queries) for t, queries in found.items()}


_NOT_FILTERS = frozenset(
    {"_include", "_revinclude", "_sort", "_count", "_elements", "_summary", "_total", "_cursor"}
)


def _group_members(fhir: FhirRequest) -> tuple[str, ...]:
    """Return the ids of the Group's active Patient members (the caller must be able to
    read the Group)."""
    fhir.allow("Group", "read")
    group = fhir.records.read("Group", fhir.path("id"))
    fhir.allow_stored(group)
    resource = orjson.loads(group.content or "{}")
    local_base = fhir.records.base_url or fhir.base_url
    members: list[str] = []
    for member in resource.get("member") or []:
        if member.get("inactive") is True:
            continue
        reference = (member.get("entity") or {}).get("reference")
        if not isinstance(reference, str):
            continue
        target = parse_reference(reference)
        if target is None or target.resource_type != "Patient":
            continue
        if target.base is None or target.base.rstrip("/") in (local_base, fhir.base_url):
            members.append(target.id)
    return tuple(dict.fromkeys(members))


def _allowed(fhir: FhirRequest, types: tuple[str, ...], *, explicit: bool) -> tuple[str, ...]:
    """Return the types the caller may search: one asked for by name that they may not
    is refused (403); of every type, those they may not search are left out."""
    allowed = []
    for resource_type in types:
        if resource_type in NOT_EXPORTED:
            continue
        try:
            fhir.allow(resource_type, "search-type")
        except Forbidden:
            if explicit:
                raise
            continue
        allowed.append(resource_type)
    return tuple(allowed)
