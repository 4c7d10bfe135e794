"""Loading files into the record: transaction/batch Bundles (JSON) and NDJSON resources."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


# Resources stored before the first refresh of the planner's statistics (then at each
# doubling): by then a scan of a whole table costs more than an index lookup.
FIRST_STATISTICS_REFRESH = 5_000


@dataclass
class LoadReport:
    """What a load stored, and what it refused (file, line or entry, and why)."""

    stored: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def count(self, resource_type: str, n: int = 1) -> None:
        self.stored[resource_type] = self.stored.get(resource_type, 0) + n

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
) -> LoadReport:
    """Load every file; progress(n) reports resources handled. Bad items are reported,
    never half-stored: a transaction Bundle stands or falls whole.

    The planner's statistics are refreshed each time the load has doubled what it
    stored, and at its end (with a VACUUM on PostgreSQL): on PostgreSQL a connection
    keeps the plan it made for a statement that ran when a table was nearly empty (a
    scan of the whole table, then cheapest) until statistics change, and without
    autovacuum nothing else changes them.
    """
    report = LoadReport()
    next_refresh = FIRST_STATISTICS_REFRESH

    def handled(n: int) -> None:
        nonlocal next_refresh
        progress(n)
        if report.total >= next_refresh:
            service.store.analyse()
            next_refresh = 2 * report.total

    waiting = Waiting()
    for path in paths:
        if path.suffix == ".ndjson":
            _load_ndjson(service, path, report, handled, waiting)
        else:
            _load_bundle(service, path, report, handled, waiting)
    _load_waiting(service, report, handled, waiting)
    # What came after the last refresh (up to half the load) is counted too: a type
    # loaded last would otherwise look nearly absent to the planner. On PostgreSQL the
    # new rows are vacuumed as well (see RecordStore.analyse).
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


def _load_ndjson(
    service: RecordService,
    path: Path,
    report: LoadReport,
    progress: Callable[[int], None],
    waiting: Waiting,
) -> None:
    _load_resources(service, path, _ndjson_lines(path, report), report, progress, waiting)


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


def _ndjson_lines(path: Path, report: LoadReport) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json_text.loads(line)
            except orjson.JSONDecodeError as error:
                report.refused.append(
                    f"{path}: line {line_number}, column {error.colno}: {error.msg}"
                )


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
