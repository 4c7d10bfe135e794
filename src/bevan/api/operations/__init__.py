"""The FHIR operations this server answers, in one table: the router dispatches by it
and the CapabilityStatement lists it, so neither can claim what the other lacks.

Each operation's handler lives in a file named after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from bevan.api.context import FhirRequest, Handler
from bevan.api.operations import (
    audit,
    break_glass,
    bulk_import,
    everything,
    export,
    generate_slots,
    ingest,
    lastn,
    meta,
    meta_add,
    meta_delete,
    validate,
    viewdefinition_run,
    virtual_ward,
    waitlist_statistics,
)
from bevan.fhir.errors import Issue, MethodNotAllowed, NotFound

LEVELS = ("system", "type", "instance")
HL7 = "http://hl7.org/fhir/OperationDefinition"
BEVAN = "https://bevan.nhs.uk/fhir/OperationDefinition"
BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"


@dataclass(frozen=True)
class Operation:
    """One operation: where it is answered, by what, and what it is."""

    name: str  # without the $
    handlers: Mapping[str, Handler]  # by level: system, type, instance
    definition: str  # the canonical URL of its OperationDefinition
    documentation: str
    types: tuple[str, ...] = ()  # the resource types it applies to; () for every type
    methods: tuple[str, ...] = ("GET", "POST")
    parameters: tuple[tuple[str, str], ...] = field(default=())  # (name, what it does)
    affects_state: bool = False
    offload: bool = False  # may take long: answered off the event loop
    # False: the handler names the patients its answer touched (the audit scans no bodies)
    audit_scans_bodies: bool = True

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(level for level in LEVELS if level in self.handlers)

    def applies_to(self, resource_type: str) -> bool:
        return not self.types or resource_type in self.types


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "everything",
        {"type": everything.everyone, "instance": everything.everything},
        f"{HL7}/Patient-everything",
        "A patient's whole record, paged: the Patient, everything in its compartment and "
        "what those refer to (by type, every patient).",
        types=("Patient",),
        parameters=(
            ("start", "only care on or after this date (resources with no date of care stay)"),
            ("end", "only care on or before this date"),
            ("_since", "only resources changed since this instant"),
            ("_type", "only these resource types (comma-separated)"),
            ("_count", "resources per page"),
        ),
        offload=True,
    ),
    Operation(
        "lastn",
        {"type": lastn.lastn},
        f"{HL7}/Observation-lastn",
        "The latest Observations of each code for each patient, as a searchset.",
        types=("Observation",),
        methods=("GET",),
        parameters=(
            ("max", "how many of each code (default 1)"),
            ("patient", "whose Observations (or subject)"),
            ("category", "which categories (vital-signs, laboratory, ...)"),
            ("code", "which codes"),
            ("(search)", "any other Observation search parameter"),
        ),
        offload=True,
    ),
    Operation(
        "ingest",
        {"type": ingest.ingest},
        f"{BEVAN}/Observation-ingest",
        "Readings in bulk (application/fhir+ndjson, one Observation a line), each line "
        "validated, stored and scored with NEWS2 on its own; the OperationOutcome lists "
        "every refused line by number and why.",
        types=("Observation",),
        methods=("POST",),
        affects_state=True,
    ),
    Operation(
        "virtual-ward",
        {"system": virtual_ward.worklist_of},
        f"{BEVAN}/virtual-ward",
        "The virtual ward's worklist: each enrolled patient the caller may read, with the "
        "latest NEWS2 score, band, trend, time since the last set, what the set in progress "
        "lacks, the overdue flag and open Tasks, highest risk first.",
        methods=("GET",),
        parameters=(("organization", "the ODS code (or Organization id) of the responsible team"),),
        offload=True,
    ),
    Operation(
        "validate",
        {"type": validate.validate, "instance": validate.validate},
        f"{HL7}/Resource-validate",
        "Checks a resource as a create, update or delete would, storing nothing; the "
        "OperationOutcome lists every problem.",
        parameters=(
            ("resource", "the resource to check (or the body itself)"),
            ("mode", "create, update or delete"),
            ("profile", "a profile to check against (only the base R4 definitions are known)"),
        ),
    ),
    Operation(
        "meta",
        {"system": meta.meta, "type": meta.meta, "instance": meta.meta},
        f"{HL7}/Resource-meta",
        "A resource's meta; by type or for the system, the tags, security labels and "
        "profiles in use (system accounts only).",
        methods=("GET", "POST"),
        offload=True,
    ),
    Operation(
        "meta-add",
        {"instance": meta_add.meta_add},
        f"{HL7}/Resource-meta-add",
        "Adds tags, security labels and profiles to a resource, as a new version.",
        methods=("POST",),
        parameters=(("meta", "a Meta holding what to add"),),
        affects_state=True,
    ),
    Operation(
        "meta-delete",
        {"instance": meta_delete.meta_delete},
        f"{HL7}/Resource-meta-delete",
        "Removes tags, security labels and profiles from a resource, as a new version.",
        methods=("POST",),
        parameters=(("meta", "a Meta holding what to remove"),),
        affects_state=True,
    ),
    Operation(
        "generate-slots",
        {"instance": generate_slots.generate_slots_operation},
        f"{BEVAN}/Schedule-generate-slots",
        "Makes a diary's free Slots from a template (by default a week of 15-minute slots, "
        "09:00-12:00 and 14:00-17:00 Monday to Friday, Europe/London), in one "
        "transaction; a time that already has a slot is left alone.",
        types=("Schedule",),
        methods=("POST",),
        parameters=(
            ("start", "the first day (YYYY-MM-DD), required"),
            ("days", "how many days from start (1-31, default 7)"),
            ("session", "HH:MM-HH:MM, repeatable (default 09:00-12:00 and 14:00-17:00)"),
            ("minutes", "each slot's length (5-240, default 15)"),
            ("weekdays", "mon,tue,... (default mon-fri)"),
            ("patientBookable", "true (default): patients may book the slots themselves"),
        ),
        affects_state=True,
    ),
    Operation(
        "waitlist-statistics",
        {"type": waitlist_statistics.waitlist_statistics},
        f"{BEVAN}/Appointment-waitlist-statistics",
        "Each service's waiting list: people waiting, their median wait so far in days, "
        "slots held on offer, and slots whose time passed while free (counts only; not "
        "for patients or devices).",
        types=("Appointment",),
        methods=("GET",),
        parameters=(("service-type", "one service (system|code, or code)"),),
        offload=True,
    ),
    Operation(
        "audit",
        {"instance": audit.access_log},
        f"{BEVAN}/Patient-audit",
        "Who accessed a patient's record, newest first (the patient, or a privacy officer).",
        types=("Patient",),
        methods=("GET",),
        parameters=(("_count", "entries per page"),),
    ),
    Operation(
        "export",
        {"system": export.export, "type": export.export, "instance": export.export},
        f"{BULK}/export",
        "FHIR Bulk Data export to NDJSON files, asynchronously (Prefer: respond-async; poll "
        "the Content-Location): the whole system, every patient (Patient/$export), one "
        "(Patient/[id]/$export) or a Group's members (Group/[id]/$export), holding what the "
        "caller could search.",
        types=("Patient", "Group"),
        parameters=(
            ("_type", "only these resource types (comma-separated)"),
            ("_since", "only resources changed after this instant"),
            ("_typeFilter", "Type?search: only the resources of Type that match (repeatable)"),
            ("_outputFormat", "application/fhir+ndjson (the default and only format)"),
        ),
    ),
    Operation(
        "import",
        {"system": bulk_import.bulk_import},
        f"{BEVAN}/import",
        "Loads NDJSON (one body, or several files as multipart/form-data) into the record, "
        "asynchronously like $export; the final report gives counts by type and every "
        "refused line by file and line number (system accounts only).",
        methods=("POST",),
        affects_state=False,  # loaded in the background, through the record's loader
        offload=True,
    ),
    Operation(
        "viewdefinition-run",
        {"system": viewdefinition_run.viewdefinition_run},
        "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run",
        "A SQL on FHIR ViewDefinition's rows over resources sent inline or over the stored "
        "record (analysts: the whole population); X-Bevan-As-Of says what they reflect.",
        methods=("POST",),
        parameters=(
            ("viewResource", "the ViewDefinition"),
            ("viewReference", "a stored Library holding one (Library/id or its url)"),
            ("resource", "resources to run over instead of the stored record"),
            ("patient", "only this patient's resources (repeatable)"),
            ("group", "only the resources of this Group's patients"),
            ("_since", "only resources changed since this instant"),
            ("_limit", "at most this many rows"),
            ("_format", "ndjson (default), json, csv or parquet"),
            ("header", "csv: whether to write the header line (default true)"),
        ),
        offload=True,
        audit_scans_bodies=False,
    ),
    Operation(
        "break-glass",
        {"system": break_glass.break_glass_queue},
        f"{BEVAN}/break-glass",
        "Break-glass grants awaiting review (privacy officers); POST $break-glass/[grant] "
        'with {"outcome": ...} closes one.',
        methods=("GET",),
        parameters=(("all", "true: every grant, reviewed or not"),),
    ),
)

_BY_NAME = {operation.name: operation for operation in OPERATIONS}


def operation_named(name: str) -> Operation | None:
    """Return the operation called name (without the $), or None."""
    return _BY_NAME.get(name)


def _level(path_params: Mapping[str, str]) -> str:
    if "id" in path_params:
        return "instance"
    return "type" if "type" in path_params else "system"


def _requested(request: Request) -> Operation | None:
    operation = operation_named(request.path_params.get("operation", ""))
    if operation is None or _level(request.path_params) not in operation.handlers:
        return None
    return operation


def offloaded(request: Request) -> bool:
    """Return True if the operation asked for may take long (route flag)."""
    operation = _requested(request)
    return operation is not None and operation.offload


def names_patients(request: Request) -> bool:
    """Return True unless the operation names, itself, the patients it touched (route flag)."""
    operation = _requested(request)
    return operation is None or operation.audit_scans_bodies


def writes(request: Request) -> bool:
    """Return True if the operation asked for changes the record (route flag)."""
    operation = _requested(request)
    return operation is not None and operation.affects_state


def dispatch(fhir: FhirRequest) -> Response:
    """Return the answer of the operation the path names, by its entry in the table;
    raise NotFound (not-supported) for one not answered there."""
    params = fhir.request.path_params
    name = params["operation"]
    level = _level(params)
    resource_type = params.get("type")
    place = "/".join(p for p in (resource_type, "[id]" if level == "instance" else None) if p)
    where = f"{place}/${name}" if place else f"${name}"
    operation = operation_named(name)
    if operation is None:
        raise NotFound(
            Issue(f"the operation ${name} is not supported by this server", code="not-supported")
        )
    if (
        level not in operation.handlers
        or resource_type is not None
        and not operation.applies_to(resource_type)
    ):
        raise NotFound(
            Issue(
                f"the operation ${name} is not supported at {where}; it is answered at "
                + ", ".join(_places(operation)),
                code="not-supported",
            )
        )
    if fhir.request.method not in operation.methods:
        raise MethodNotAllowed(
            f"{where} is answered to {' or '.join(operation.methods)}, not {fhir.request.method}"
        )
    return operation.handlers[level](fhir)


def _places(operation: Operation) -> list[str]:
    types = "|".join(operation.types) if operation.types else "[type]"
    shapes = {"system": "", "type": f"{types}/", "instance": f"{types}/[id]/"}
    return [f"{shapes[level]}${operation.name}" for level in operation.levels]
