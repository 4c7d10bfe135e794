"""Observation/$lastn: the latest observations of each code for each patient."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bevan.fhir import json_text
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.paging import MAX_COUNT
from bevan.fhir.search import SearchQuery, parse_search
from bevan.records.service import RecordService
from bevan.store.versions import StoredVersion

# $lastn reads every matching Observation, newest first, to keep the latest of each
# code; past this many it asks for a narrower question rather than read on.
MAX_LASTN_READ = 10_000


def latest_observations(
    records: RecordService, query: SearchQuery, max_per_code: int
) -> list[StoredVersion]:
    """Return, for each patient (subject) and code, the latest max_per_code of the
    Observations matching query, newest first within each code.

    "Latest" is by the Observation's effective date (the `date` search parameter); an
    Observation is of the code its first coding names (or its text, without codings).
    """
    if query.resource_type != "Observation":
        raise ValueError("$lastn is an Observation operation")
    scan = replace(
        query,
        count=MAX_COUNT,
        total="none",
        cursor=None,
        sort=parse_search("Observation", [("_sort", "-date")]).sort,
        include=(),
        revinclude=(),
        summary=None,
    )
    kept: dict[tuple[str, Any], list[StoredVersion]] = {}
    read = 0
    with records.reading() as session:
        while True:
            page = records.search(scan, session)
            for stored in page.matches:
                content = json_text.loads(stored.content or "{}")
                group = kept.setdefault((_subject(content), _code(content)), [])
                if len(group) < max_per_code:
                    group.append(stored)
            read += len(page.matches)
            if page.next_cursor is None:
                break
            if read >= MAX_LASTN_READ:
                raise InvalidRequest(
                    Issue(
                        f"$lastn would read more than {MAX_LASTN_READ} Observations; "
                        "name a patient, a code or a category",
                        code="too-costly",
                    )
                )
            scan = replace(scan, cursor=page.next_cursor)
    return [stored for group in kept.values() for stored in group]


def _subject(observation: dict[str, Any]) -> str:
    subject = observation.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference if isinstance(reference, str) else ""


def _code(observation: dict[str, Any]) -> Any:
    code = observation.get("code")
    if not isinstance(code, dict):
        return None
    for coding in code.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code") is not None:
            return (coding.get("system"), coding["code"])
    return code.get("text")
