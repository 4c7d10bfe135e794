"""Loading files into the record: transaction/batch Bundles (JSON) and NDJSON resources."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bevan.fhir import json_text
from bevan.fhir.errors import FhirError
from bevan.fhir.validation import validate_resource
from bevan.records.bundles import process_bundle
from bevan.records.referential_integrity import only_unresolved_references
from bevan.records.service import RecordService

NDJSON_BATCH = 500
BASE_URL = "urn:bevan:load"


# Resources stored past which a load refreshes the planner's statistics at its end.
FIRST_STATISTICS_REFRESH = 5_000


@dataclass(frozen=True)
class Refusal:
    """One thing a load refused: the file, the line (None for a whole file or a Bundle
    entry, named in why) and why."""

    path: str
    line: int | None
    why: str

    def __str__(self) -> str:
        return (
            f"{self.path}: line {self.line}: {self.why}"
            if self.line
            else f"{self.path}: {self.why}"
        )


@dataclass
class LoadReport:
    """What a load stored by type, and what it refused (file, line or entry, and why):
    refused as text, one line each; refusals the same, by NDJSON file and line."""

    stored: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    # Lines whose resource was stored already, as it is: counted in stored, not written.
    unchanged: int = 0
    # References that resolve nowhere, kept (referential integrity off, or made by a
    # resource stored before this load), by file and line.
    unresolved: list[str] = field(default_factory=list)

    def count(self, resource_type: str, n: int = 1) -> None:
        self.stored[resource_type] = self.stored.get(resource_type, 0) + n

    def refuse(self, path: Path, line: int | None, why: str) -> None:
        """Record a refused line of an NDJSON file (line None: the whole file)."""
        refusal = Refusal(str(path), line, why)
        self.refusals.append(refusal)
        self.refused.append(str(refusal))

    @property
    def total(self) -> int:
        return sum(self.stored.values())


def expand_paths(paths: list[Path]) -> list[Path]:
    """Return the .json and .ndjson files named, directories expanded in sorted order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".json", ".ndjson")))
        else:
            files.append(path)
    return files


def load_files(
    service: RecordService,
    paths: list[Path],
    progress: Callable[[int], None] = lambda n: None,
    *,
    partial: bool = False,
    workers: int | None = None,
) -> LoadReport:
    """Load every file: NDJSON (.ndjson) in bulk, Bundles (.json) entry by entry;
    progress(n) reports lines and entries handled. Return what was stored and refused.

    Each NDJSON file stands or falls whole: one bad line refuses the file, every bad
    line reported by file and line (partial keeps the good lines). References are
    checked when every file is in, so files may come in any order; one that resolves
    nowhere is reported by file and line, and refused (with its file, unless partial)
    when referential integrity is on. A load stopped part way keeps the files it
    finished, and loading the same files again stores each resource once. workers:
    processes preparing lines beside the writer (default: one per core; 0 for none).

    The planner's statistics are refreshed at the end (with a VACUUM on PostgreSQL):
    without them a connection keeps the plan it made when the tables were nearly empty.
    """
    report = LoadReport()
    ndjson = [p for p in paths if p.suffix == ".ndjson"]
    bundles = [p for p in paths if p.suffix != ".ndjson"]
    if ndjson:
        from bevan.records.bulk_load import load_ndjson

        load_ndjson(service, ndjson, report, progress, partial=partial, workers=workers)
    waiting = Waiting()
    for path in bundles:
        _load_bundle(service, path, report, progress, waiting)
    _load_waiting(service, report, progress, waiting)
    if report.total >= FIRST_STATISTICS_REFRESH:
        service.store.analyse(settle=True)
    return report


@dataclass
class Waiting:
    """What a load put off because it refers to resources not yet stored: transaction
    Bundles, and NDJSON lines (file, line, resource). Each is tried again once every
    file has been read, so a set of files loads whatever order they come in."""

    bundles: list[tuple[Path, dict[str, Any], str]] = field(default_factory=list)
    lines: list[tuple[Path, int, dict[str, Any], str]] = field(default_factory=list)


def _load_waiting(
    service: RecordService,
    report: LoadReport,
    progress: Callable[[int], None],
    waiting: Waiting,
) -> None:
    """Try what waited again, round after round while a round stores something; what
    still refers to nothing stored is refused with the reason it was first given."""
    while waiting.bundles or waiting.lines:
        before = report.total
        bundles, lines = waiting.bundles, waiting.lines
        waiting.bundles, waiting.lines = [], []
        for path, body, _ in bundles:
            _load_bundle_body(service, path, body, report, progress, waiting)
        by_file: dict[Path, list[tuple[int, dict[str, Any]]]] = {}
        for path, line_number, resource, _ in lines:
            by_file.setdefault(path, []).append((line_number, resource))
        for path, batch in by_file.items():
            _write_batch(service, path, batch, report, waiting)
            progress(len(batch))
        if report.total == before:
            report.refused.extend(why for _, _, why in waiting.bundles)
            report.refused.extend(why for _, _, _, why in waiting.lines)
            return


def _load_bundle(
    service: RecordService,
    path: Path,
    report: LoadReport,
    progress: Callable[[int], None],
    waiting: Waiting,
) -> None:
    try:
        body = json_text.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        report.refused.append(f"{path}: line {error.lineno}, column {error.colno}: {error.msg}")
        return
    if not (
        isinstance(body, dict)
        and body.get("resourceType") == "Bundle"
        and body.get("type") in ("transaction", "batch")
    ):
        _load_resources(service, path, [(1, body)], report, progress, waiting)  # one resource
        return
    _load_bundle_body(service, path, body, report, progress, waiting)


def _load_bundle_body(
    service: RecordService,
    path: Path,
    body: dict[str, Any],
    report: LoadReport,
    progress: Callable[[int], None],
    waiting: Waiting,
) -> None:
    try:
        response = process_bundle(service, body, BASE_URL)
    except FhirError as error:
        why = f"{path}: " + "; ".join(_describe(i) for i in error.issues)
        if only_unresolved_references(error.issues):
            waiting.bundles.append((path, body, why))
        else:
            report.refused.append(why)
        return
    entries = body.get("entry", [])
    for index, (request_entry, answer) in enumerate(
        zip(entries, response.get("entry", []), strict=False)
    ):
        status = answer.get("response", {}).get("status", "")
        if status.startswith("2"):
            resource = request_entry.get("resource") or {}
            report.count(resource.get("resourceType", "?"))
        else:
            issues = answer["response"].get("outcome", {}).get("issue", [])
            why = "; ".join(i.get("diagnostics", "") for i in issues)
            report.refused.append(f"{path}: entry {index}: {status}: {why}")
    progress(len(entries))


def _load_resources(
    service: RecordService,
    path: Path,
    lines: Iterable[tuple[int, Any]],
    report: LoadReport,
    progress: Callable[[int], None],
    waiting: Waiting,
) -> None:
    batch: list[tuple[int, dict[str, Any]]] = []
    for line_number, resource in lines:
        try:
            validate_resource(resource)
        except FhirError as error:
            report.refused.append(
                f"{path}: line {line_number}: " + "; ".join(_describe(i) for i in error.issues)
            )
            continue
        batch.append((line_number, resource))
        if len(batch) >= NDJSON_BATCH:
            _write_batch(service, path, batch, report, waiting)
            progress(len(batch))
            batch = []
    if batch:
        _write_batch(service, path, batch, report, waiting)
        progress(len(batch))


def _write_batch(
    service: RecordService,
    path: Path,
    batch: list[tuple[int, dict[str, Any]]],
    report: LoadReport,
    waiting: Waiting,
) -> None:
    """Write validated resources in one transaction: with an id, as update-or-create."""
    with service.writing() as session:
        for line_number, resource in batch:
            resource_type = resource["resourceType"]
            try:
                with session.savepoint():
                    if resource.get("id"):
                        service.update_in(session, resource_type, resource["id"], resource)
                    else:
                        service.create_in(session, resource_type, resource)
                report.count(resource_type)
            except FhirError as error:
                why = f"{path}: line {line_number}: " + "; ".join(
                    _describe(i) for i in error.issues
                )
                if only_unresolved_references(error.issues):
                    waiting.lines.append((path, line_number, resource, why))
                else:
                    report.refused.append(why)


def _describe(issue: Any) -> str:
    where = f" at {', '.join(issue.expression)}" if issue.expression else ""
    return f"{issue.diagnostics}{where}"
