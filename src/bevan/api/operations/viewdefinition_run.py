"""$viewdefinition-run: a SQL on FHIR ViewDefinition's rows, over resources sent inline
or over the stored record, as JSON, NDJSON, CSV or Parquet.

The view comes as `viewResource` (the ViewDefinition itself) or `viewReference` (a
stored Library carrying it: R4 has no ViewDefinition type, so a view is kept as a
Library whose content is the ViewDefinition's JSON, found by its id or canonical url).
A run over the stored record is decided like a search (security/search_limits.py):
analysts may run one over the whole population, patients and devices may not, others
see what their search would. Every answer says what it reflects in X-Bevan-As-Of, and
its audit entry names the view and the rows it gave.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import orjson
from starlette.responses import Response

from bevan.analytics.stored_record import AsOf, RecordSelection, read_stored, selection_query
from bevan.analytics.view_definition import CompiledView, compile_view
from bevan.analytics.view_output import FORMATS, format_named, write_rows
from bevan.api.context import FhirRequest, json_body
from bevan.api.negotiation import check_body_type
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import FhirError, InvalidRequest, Issue, NotFound
from bevan.fhir.ids import is_valid_id
from bevan.fhir.parameters import parameter_pairs
from bevan.fhir.search import parse_search
from bevan.security.audit import patients_in
from bevan.security.search_limits import limited_view_query
from bevan.store.versions import StoredVersion

# A Library's content holding a ViewDefinition says so by this profile in its type.
VIEW_PROFILE = "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition"
KNOWN = frozenset(
    {
        "viewResource",
        "viewReference",
        "resource",
        "patient",
        "group",
        "_since",
        "_limit",
        "_format",
        "header",
    }
)
# Roles whose runs over the whole record are recorded by view and count, not by patient.
POPULATION_ROLES = frozenset({"analyst", "system"})


def viewdefinition_run(fhir: FhirRequest) -> Response:
    """POST $viewdefinition-run with a Parameters body: the view's rows (200)."""
    check_body_type(fhir.request)
    json_body(fhir)  # answers a body that is not JSON with an OperationOutcome
    pairs = parameter_pairs(orjson.loads(fhir.body))
    unknown = sorted({name for name, _ in pairs if name not in KNOWN})
    if unknown:
        raise InvalidRequest(
            Issue(
                f"$viewdefinition-run has no parameter {', '.join(unknown)}",
                expression=tuple(f"Parameters.parameter.where(name='{n}')" for n in unknown),
            )
        )
    view = _compiled(fhir, pairs)
    fmt = _format(_one(pairs, "_format") or "ndjson")
    header = _flag(_one(pairs, "header"), "header")
    limit = _limit(_one(pairs, "_limit"))
    inline = [value for name, value in pairs if name == "resource"]
    if inline:
        if any(name in pairs_names(pairs) for name in ("patient", "group", "_since")):
            raise InvalidRequest(
                Issue(
                    "patient, group and _since choose from the stored record; with inline "
                    "resources, send only the resources wanted",
                    expression=("resource",),
                )
            )
        for index, resource in enumerate(inline):
            if not isinstance(resource, dict) or "resourceType" not in resource:
                raise InvalidRequest(
                    Issue(
                        "a resource parameter must hold a resource",
                        expression=(f"resource[{index}]",),
                    )
                )
        as_of = AsOf(None, now_instant())
        resources: Any = iter(inline)
        fhir.caller.patients |= patients_in(fhir.body)
    else:
        as_of, resources = _stored(fhir, pairs, view)
    rows = view.rows(resources)
    if limit is not None:
        rows = (row for _, row in zip(range(limit), rows, strict=False))
    out = io.BytesIO()
    count = write_rows(view, rows, fmt, out, header=header)
    name = view.name or "(unnamed)"
    where = "inline resources" if inline else "the stored record"
    fhir.caller.summary = (
        f"view {name} over {view.resource} ({where}): {count} rows; as of {as_of.header()}"
    )
    headers = {"X-Bevan-As-Of": as_of.header(), "X-Bevan-Row-Count": str(count)}
    return Response(out.getvalue(), media_type=FORMATS[fmt], headers=headers)


def pairs_names(pairs: list[tuple[str, Any]]) -> set[str]:
    return {name for name, _ in pairs}


def _one(pairs: list[tuple[str, Any]], name: str) -> Any:
    values = [value for n, value in pairs if n == name]
    if len(values) > 1:
        raise InvalidRequest(Issue(f"{name} may be given once", expression=(name,)))
    return values[0] if values else None


def _format(text: Any) -> str:
    fmt = format_named(text) if isinstance(text, str) else None
    if fmt is None:
        raise InvalidRequest(
            Issue(
                f"_format must be json, ndjson, csv or parquet, not {text!r}",
                code="not-supported",
                expression=("_format",),
            )
        )
    return fmt


def _flag(text: Any, name: str) -> bool:
    if text is None:
        return True
    if text not in ("true", "false"):
        raise InvalidRequest(Issue(f"{name} must be true or false", expression=(name,)))
    return bool(text == "true")


def _limit(text: Any) -> int | None:
    if text is None:
        return None
    if not isinstance(text, str) or not text.isdigit() or int(text) < 1:
        raise InvalidRequest(
            Issue(f"_limit must be a whole number above 0, not {text!r}", expression=("_limit",))
        )
    return int(text)


def _compiled(fhir: FhirRequest, pairs: list[tuple[str, Any]]) -> CompiledView:
    given = _one(pairs, "viewResource")
    reference = _one(pairs, "viewReference")
    if (given is None) == (reference is None):
        raise InvalidRequest(
            Issue(
                "give the view once: as viewResource (a ViewDefinition) or viewReference "
                "(a stored Library holding one)",
                code="required",
                expression=("viewResource",),
            )
        )
    if given is not None:
        definition = given
        if isinstance(definition, dict) and definition.get("resourceType") not in (
            "ViewDefinition",
            None,
        ):
            definition = _view_in_library(definition, "viewResource")
    else:
        definition = _view_in_library(_stored_library(fhir, reference), "viewReference")
    try:
        return compile_view(definition)
    except FhirError as error:
        raise error.at("viewResource" if given is not None else "viewReference") from None


def _stored_library(fhir: FhirRequest, reference: Any) -> dict[str, Any]:
    """Return the Library a viewReference names (by Library/id or by canonical url)."""
    text = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(text, str) or not text:
        raise InvalidRequest(
            Issue(
                "viewReference must be a Reference or a canonical url",
                expression=("viewReference",),
            )
        )
    fhir.allow("Library", "read")
    stored: StoredVersion | None
    if text.startswith("Library/"):
        stored = fhir.current("Library", text.removeprefix("Library/").split("/_history")[0])
    else:
        url, _, version = text.partition("|")
        criteria = [("url", url), *([("version", version)] if version else [])]
        fhir.allow("Library", "search-type")
        page = fhir.records.search(
            fhir.visible(parse_search("Library", [*criteria, ("_count", "2")])),
            visible=fhir.may_see,
        )
        stored = page.matches[0] if page.matches else None
        if len(page.matches) > 1:
            raise InvalidRequest(
                Issue(f"more than one Library has the url {text}", expression=("viewReference",))
            )
    if stored is None or stored.content is None:
        raise NotFound(Issue(f"there is no stored view {text}", expression=("viewReference",)))
    fhir.allow_stored(stored)
    library: dict[str, Any] = orjson.loads(stored.content)
    return library


def _view_in_library(library: Any, place: str) -> Any:
    """Return the ViewDefinition a Library carries in its content."""
    if not isinstance(library, dict) or library.get("resourceType") != "Library":
        raise InvalidRequest(
            Issue("a view must be a ViewDefinition, or a Library holding one", expression=(place,))
        )
    for attachment in library.get("content") or []:
        data = attachment.get("data") if isinstance(attachment, dict) else None
        if not isinstance(data, str):
            continue
        try:
            found = orjson.loads(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            continue
        if isinstance(found, dict) and found.get("resourceType") == "ViewDefinition":
            return found
    raise InvalidRequest(
        Issue(
            "the Library holds no ViewDefinition: put its JSON, base64-encoded, in "
            "content.data (contentType application/json)",
            expression=(f"{place}.content",),
        )
    )


def _stored(
    fhir: FhirRequest, pairs: list[tuple[str, Any]], view: CompiledView
) -> tuple[AsOf, Any]:
    """Return the as-of and the stored resources the view reads, as the caller may see them."""
    patients = [_patient_id(v) for n, v in pairs if n == "patient"]
    group = _one(pairs, "group")
    if group is not None:
        patients.extend(_group_patients(fhir, group))
    selection = RecordSelection(
        view.resource,
        tuple(patients),
        for_patients=bool(patients) or group is not None,
        since=_one(pairs, "_since"),
    )
    query = selection_query(fhir.records, selection)
    policy, caller = fhir.services.policy, fhir.caller
    query = limited_view_query(policy, caller, query)
    names_patients = selection.for_patients or caller.role not in POPULATION_ROLES

    def visible(stored: StoredVersion) -> bool:
        return stored.content is None or policy.may_analyse(caller, orjson.loads(stored.content))

    def seen(page: Any) -> None:
        if names_patients:
            for stored in page:
                if stored.content is not None:
                    caller.patients |= patients_in(stored.content.encode())

    return read_stored(fhir.records, query, None if fhir.unlimited() else visible, seen)


def _patient_id(value: Any) -> str:
    text = value.get("reference") if isinstance(value, dict) else value
    if isinstance(text, str):
        id = text.removeprefix("Patient/")
        if is_valid_id(id) and (id != text or "/" not in text):
            return id
    raise InvalidRequest(
        Issue(
            "patient must be a Reference to a Patient (Patient/id), or a Patient id",
            expression=("patient",),
        )
    )


def _group_patients(fhir: FhirRequest, value: Any) -> list[str]:
    text = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(text, str) or not text.startswith("Group/"):
        raise InvalidRequest(
            Issue("group must be a Reference to a Group (Group/id)", expression=("group",))
        )
    policy, caller = fhir.services.policy, fhir.caller
    # A group is a cohort: whoever may run the view over the record may use one.
    policy.check_analytics(caller, "Group")
    stored = fhir.current("Group", text.removeprefix("Group/"))
    if stored is None or stored.content is None:
        raise NotFound(Issue(f"there is no {text}", expression=("group",)))
    group = orjson.loads(stored.content)
    if not fhir.unlimited() and not policy.may_analyse(caller, group):
        raise NotFound(Issue(f"there is no {text}", expression=("group",)))
    members = group.get("member") or []
    found = []
    for member in members:
        reference = (member.get("entity") or {}).get("reference", "")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            found.append(reference.removeprefix("Patient/"))
    return found
