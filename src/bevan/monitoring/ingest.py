"""Bulk intake for devices: newline-delimited Observations, each line validated, stored
and scored on its own, so a bad line costs only itself and the good ones are committed
before the answer. An all-good intake is one transaction; when some line is refused, the
intake is written again with a savepoint for each line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bevan.fhir import json_text
from bevan.fhir.errors import FhirError, InvalidResource, Issue
from bevan.fhir.validation import validate_resource
from bevan.records.service import RecordService, WriteGuard
from bevan.store.versions import StoredVersion
from bevan.store.writing import WriteSession

# The most lines one request may carry: a device's day, or a hub's few minutes.
MAX_LINES = 50_000


@dataclass
class Intake:
    """What an intake stored, and each refused line (numbered from 1) with why."""

    stored: list[StoredVersion] = field(default_factory=list)
    refused: list[tuple[int, FhirError]] = field(default_factory=list)
    lines: int = 0


def ingest_readings(service: RecordService, body: bytes, guard: WriteGuard | None) -> Intake:
    """Store each non-blank line of body that is a valid Observation the caller may
    write (a line with an id is an update of it, else a create); return the Intake."""
    intake = Intake()
    parsed: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        intake.lines += 1
        try:
            parsed.append((number, _observation(line)))
        except FhirError as error:
            intake.refused.append((number, error))
    if intake.lines > MAX_LINES:
        raise InvalidResource(
            Issue(
                f"send at most {MAX_LINES} lines at a time, not {intake.lines}", code="too-costly"
            )
        )
    if not parsed:
        return intake
    # Each patient's lines together, in the order sent: every intake takes the patients'
    # locks in the same order (no two can wait on each other), and a patient's readings
    # are looked up once.
    parsed.sort(key=lambda line: _subject(line[1]))
    try:
        # Most intakes are all good: one transaction with no savepoint per line, which
        # would flush the rows the writer holds back at every line (benchmarks/virtual_ward.py).
        with service.writing() as session:
            stored = [_write(service, session, dict(r), guard) for _, r in parsed]
        intake.stored = stored
    except FhirError:
        # Some line is refused: everything above was undone; each line on its own now.
        with service.writing() as session:
            for number, resource in parsed:
                try:
                    with session.savepoint():
                        intake.stored.append(_write(service, session, resource, guard))
                except FhirError as error:
                    intake.refused.append((number, error))
    intake.refused.sort(key=lambda refused: refused[0])
    return intake


def _write(
    service: RecordService,
    session: WriteSession,
    resource: dict[str, Any],
    guard: WriteGuard | None,
) -> StoredVersion:
    """Store one line's Observation: an update of it when it has an id, else a create."""
    id = resource.get("id")
    if isinstance(id, str):
        result = service.update_in(session, "Observation", id, resource, guard=guard)
    else:
        result = service.create_in(session, "Observation", resource, guard=guard)
    assert result.stored is not None
    return result.stored


def _subject(resource: dict[str, Any]) -> str:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference if isinstance(reference, str) else ""


def _observation(line: bytes) -> dict[str, Any]:
    try:
        resource = json_text.loads(line)
    except ValueError:
        raise InvalidResource(Issue("the line is not JSON", code="structure")) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise InvalidResource(
            Issue(
                "each line must be one Observation", code="structure", expression=("Observation",)
            )
        )
    validate_resource(resource, "Observation")
    return resource
