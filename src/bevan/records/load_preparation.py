"""The work of a load that needs no database: NDJSON lines parsed, validated, stamped as
first versions, their index rows, NHS numbers and references found.

It runs in worker processes (records/loader.py) while the loader's own process writes,
so the load uses every core; what it returns is plain values that cross between
processes cheaply. A line is either a BulkResource or a refusal naming its line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bevan.clinical.nhs_number import nhs_numbers_held
from bevan.fhir import json_text
from bevan.fhir.errors import FhirError, InvalidResource, Issue
from bevan.fhir.ids import is_valid_id
from bevan.fhir.limits import MAX_JSON_DEPTH
from bevan.fhir.references import local_references, parse_reference
from bevan.fhir.validation import validate_resource
from bevan.records.service import SERVER_WRITTEN_TYPES, PreparedVersion, prepare_version
from bevan.store.bulk import BulkResource

# Lines a worker prepares at a time: enough that handing them over costs little beside
# the work, few enough that the writer soon has something to write.
CHUNK_LINES = 1000
CHUNK_BYTES = 2 * 1024 * 1024
# A line without an id is given one made from its text, so loading the same file again
# stores it once.
_LINE_IDS = uuid.UUID("6f0d5c8e-6a53-4c0f-9a55-1b2de0a3c7e1")


@dataclass
class PreparedChunk:
    """What a chunk of lines became: resources ready to store, and refused lines."""

    resources: list[BulkResource] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    lines: int = 0


def read_chunks(path: Path) -> Iterator[list[tuple[int, bytes]]]:
    """Return the non-blank lines of an NDJSON file (numbered from 1) a chunk at a time,
    streamed: a file of any size is held a chunk at a time."""
    chunk: list[tuple[int, bytes]] = []
    size = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            chunk.append((number, line))
            size += len(line)
            if len(chunk) >= CHUNK_LINES or size >= CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def prepare_chunk(file: int, base_url: str | None, lines: list[tuple[int, bytes]]) -> PreparedChunk:
    """Return each line of file (its number in the load) as a resource or a refusal."""
    prepared = PreparedChunk(lines=len(lines))
    for number, line in lines:
        try:
            prepared.resources.append(prepare_line(file, number, line, base_url))
        except FhirError as error:
            prepared.refused.append((number, describe(error.issues)))
        except (orjson.JSONDecodeError, json_text.TooDeep) as error:
            prepared.refused.append((number, f"not a JSON resource: {error}"))
    return prepared


def prepare_line(file: int, number: int, line: bytes, base_url: str | None) -> BulkResource:
    """Return one NDJSON line as a first version ready to store; raise FhirError if refused."""
    # Nesting deeper than the limit needs more brackets than the limit: most lines have
    # fewer, and counting them costs far less than walking the parsed value.
    deep = line.count(b"{") + line.count(b"[") > MAX_JSON_DEPTH
    resource: Any = json_text.loads(line, max_depth=MAX_JSON_DEPTH if deep else None)
    resource_type = validate_resource(resource)
    if resource_type in SERVER_WRITTEN_TYPES:
        raise _refused(f"{resource_type} resources are written by the server's audit trail alone")
    id = resource.get("id")
    if id is None:
        id = str(uuid.uuid5(_LINE_IDS, line.strip().decode("utf-8", "replace")))
    elif not isinstance(id, str) or not is_valid_id(id):
        raise _refused(f"{id!r} is not a valid id: 1-64 letters, digits, '-' or '.'")
    version = prepare_version(resource_type, id, resource, 1, base_url)
    return bulk_resource(version, base_url, file, number)


def bulk_resource(
    version: PreparedVersion, base_url: str | None, file: int, line: int
) -> BulkResource:
    """Return a prepared version as the store's bulk writer takes it."""
    references = _local_targets(version.content, version.resource, base_url)
    return BulkResource(
        resource_type=version.resource_type,
        id=version.id,
        version_id=version.version,
        last_updated=version.last_updated,
        content=version.content,
        rows=tuple((table, tuple(rows)) for table, rows in version.rows.tables()),
        nhs_numbers=(
            nhs_numbers_held(version.resource) if version.resource_type == "Patient" else ()
        ),
        references=tuple(sorted(references)),
        file=file,
        line=line,
    )


# Every "reference" string in compact JSON: what local_references finds by walking the
# resource, found in its text instead (the walk was a large share of preparing a line).
_REFERENCE_TEXT = re.compile(r'"reference":"([^"\\]*)"')


def _local_targets(
    content: str, resource: dict[str, Any], base_url: str | None
) -> set[tuple[str, str]]:
    """Return the (type, id) of each resource on this server that resource refers to."""
    if resource["resourceType"] == "Bundle" or "\\" in content:
        return {(t.resource_type, t.id) for _, _, t in local_references(resource, base_url)}
    base = base_url.rstrip("/") if base_url else None
    found = set()
    for text in _REFERENCE_TEXT.findall(content):
        target = parse_reference(text)
        if target is not None and (target.base is None or target.base == base):
            found.add((target.resource_type, target.id))
    return found


def reference_path(line: bytes, target: tuple[str, str], base_url: str | None) -> str:
    """Return the FHIRPath of a line's reference to target (type, id), for a report."""
    resource = json_text.loads(line)
    for path, _, found in local_references(resource, base_url):
        if (found.resource_type, found.id) == target:
            return path
    return str(resource.get("resourceType", "?"))


def _refused(text: str) -> FhirError:
    return InvalidResource(Issue(text))


def describe(issues: Any) -> str:
    """Return issues as one line of text, each with the FHIRPath of its element."""
    parts = []
    for issue in issues:
        where = f" at {', '.join(issue.expression)}" if issue.expression else ""
        parts.append(f"{issue.diagnostics}{where}")
    return "; ".join(parts)
