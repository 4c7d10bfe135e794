"""$export: the record written to NDJSON files, one per resource type, a search page at
a time, so memory holds one page however large the export.

Every resource reaches a file through the same search a client could run: the caller's
restrictions (passed in as `limit` and `visible`, decided by security/) join each
query, so an export holds exactly what its caller could have searched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from bevan.bulk.jobs import JobRun
from bevan.fhir.patient_references import holds_patient_data
from bevan.fhir.search import (
    AnyOf,
    Criterion,
    IdMatch,
    ReferenceMatch,
    ReferenceValue,
    SearchQuery,
    parse_search,
)
from bevan.fhir.search_parameters import compartment_parameters
from bevan.records.service import RecordService
from bevan.store.versions import StoredVersion

# Resources read per search page: enough that a page's round trip is a small share of
# its cost, few enough that a page of large resources stays a few megabytes.
PAGE_SIZE = 1000
# Group members whose resources one query asks for at a time.
MEMBERS_PER_QUERY = 200
# Patients an export's audit entry names one by one; beyond this it says it names no more.
MAX_AUDITED_PATIENTS = 10_000
NDJSON = "application/fhir+ndjson"


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the types in order, changed since when, the _typeFilter queries
    by type (ORed), and for a Group export its member patients."""

    level: str  # system | patient | group
    types: tuple[str, ...]
    since: str | None = None
    type_filters: Mapping[str, tuple[SearchQuery, ...]] = field(default_factory=dict)
    members: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CallerLimits:
    """The caller's restrictions: limit narrows a query as their search would be
    narrowed; visible (None: everything) judges each resource found."""

    limit: Callable[[SearchQuery], SearchQuery]
    visible: Callable[[StoredVersion], bool] | None = None


@dataclass(frozen=True)
class ExportFile:
    type: str
    name: str  # the file's name in the job's directory
    count: int


@dataclass
class ExportResult:
    files: list[ExportFile] = field(default_factory=list)
    # The patients whose records the export holds, for its audit entry: every one, or
    # (patients_capped) the first MAX_AUDITED_PATIENTS of them.
    patients: set[str] = field(default_factory=set)
    patients_capped: bool = False

    def note_patients(self, records: RecordService, resource_type: str, ids: list[str]) -> None:
        """Note the patients these resources name (by the index rows of their references)."""
        if resource_type == "Patient":
            self.patients.update(ids)
        elif ids and holds_patient_data(resource_type):
            with records.reading() as session:
                named = session.references_from(resource_type, ids, None, "Patient")
            self.patients.update(id for _, id in named)
        if len(self.patients) >= MAX_AUDITED_PATIENTS:
            self.patients_capped = True

    @property
    def counts(self) -> dict[str, int]:
        return {f.type: f.count for f in self.files}


def export_types(level: str, asked: tuple[str, ...], present: Mapping[str, int]) -> tuple[str, ...]:
    """Return the types an export writes: those asked for (else every type stored),
    for a Patient or Group export only the Patient compartment's, in name order."""
    types = asked or tuple(sorted(t for t, n in present.items() if n))
    if level != "system":
        compartment = set(compartment_parameters("Patient")) | {"Patient"}
        types = tuple(t for t in types if t in compartment)
    return types


def run_export(
    records: RecordService, request: ExportRequest, caller: CallerLimits, run: JobRun
) -> ExportResult:
    """Write one NDJSON file per type with resources (types with none get no file)."""
    result = ExportResult()
    with records.reading() as session:
        present = session.resource_counts()
    expected = sum(present.get(t, 0) for t in request.types)
    done = 0
    for resource_type in request.types:
        name = f"{resource_type}.ndjson"
        path = run.directory / name
        count = 0
        with path.open("wb") as out:
            for page in _pages(records, request, caller, resource_type):
                lines = [_line(v.content) for v in page if v.content is not None]
                out.write(b"".join(lines))
                count += len(lines)
                if not result.patients_capped:
                    result.note_patients(records, resource_type, [v.id for v in page])
                run.progress(_progress(done + count, expected, resource_type))
        done += count
        if count:
            result.files.append(ExportFile(resource_type, name, count))
        else:
            path.unlink()
        run.progress(_progress(done, expected, resource_type), force=True)
    return result


def _line(content: str) -> bytes:
    """Return one NDJSON line of stored JSON text (stored compactly: the replace is only
    a safeguard, as a line break in JSON text can only be whitespace)."""
    if "\n" in content:
        content = content.replace("\r\n", " ").replace("\n", " ")
    return content.encode() + b"\n"


def _progress(done: int, expected: int, resource_type: str) -> str:
    share = f" (about {min(99, 100 * done // expected)}%)" if expected else ""
    return f"{done} resources written{share}; now {resource_type}"


def _pages(
    records: RecordService, request: ExportRequest, caller: CallerLimits, resource_type: str
) -> Iterator[list[StoredVersion]]:
    """Yield the type's resources the export holds, a search page at a time, each once."""
    queries = list(_queries(request, resource_type))
    seen: set[str] | None = set() if len(queries) > 1 else None
    for query in queries:
        limited = caller.limit(query)
        cursor = None
        while True:
            page = records.search(replace(limited, cursor=cursor), visible=caller.visible)
            matches = page.matches
            if seen is not None:
                matches = [v for v in matches if v.id not in seen]
                seen.update(v.id for v in matches)
            if matches:
                yield matches
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def _queries(request: ExportRequest, resource_type: str) -> Iterator[SearchQuery]:
    """Yield the searches whose matches (together) are the type's part of the export."""
    filters = request.type_filters.get(resource_type) or (SearchQuery(resource_type),)
    since: tuple[Criterion, ...] = ()
    if request.since is not None:
        since = parse_search(resource_type, [("_lastUpdated", f"gt{request.since}")]).criteria
    for base in filters:
        query = replace(
            base, count=PAGE_SIZE, total="none", cursor=None, sort=(), include=(), revinclude=()
        ).with_criteria(*since)
        if request.members is None:
            yield query
            continue
        for start in range(0, len(request.members), MEMBERS_PER_QUERY):
            chunk = request.members[start : start + MEMBERS_PER_QUERY]
            yield query.with_criteria(_members_criterion(resource_type, chunk))


def _members_criterion(resource_type: str, patients: tuple[str, ...]) -> Criterion:
    """Return the criterion for resources in these patients' compartments."""
    if resource_type == "Patient":
        return IdMatch(patients)
    params = compartment_parameters("Patient").get(resource_type) or ()
    references = tuple(ReferenceValue(id=p, resource_type="Patient") for p in patients)
    return AnyOf(tuple(ReferenceMatch(param, references) for param in params))
