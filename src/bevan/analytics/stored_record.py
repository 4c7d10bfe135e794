"""The resources a view reads from the stored record, page by page, with their "as of".

A view over the record reads the current versions of its resource type through the
record service's search, in keyset pages, so whatever narrows a search (the caller's
restrictions, a patient's compartment, `_lastUpdated`) narrows a view the same way.
The change sequence is read first: every change up to it is reflected in the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import orjson

from bevan.fhir.dates import now_instant
from bevan.fhir.errors import FhirError, InvalidRequest, Issue
from bevan.fhir.search import AnyOf, Criterion, IdMatch, SearchQuery, parse_search
from bevan.records.service import RecordService
from bevan.store.versions import StoredVersion

PAGE_SIZE = 1000


@dataclass(frozen=True)
class AsOf:
    """What a view's output reflects: every change up to seq, read at time."""

    seq: int | None  # None: the view ran over resources given inline, not the record
    time: str

    def header(self) -> str:
        """Return the value of the X-Bevan-As-Of header."""
        return f"seq={self.seq}; time={self.time}" if self.seq is not None else f"time={self.time}"


@dataclass(frozen=True)
class RecordSelection:
    """Which stored resources of a type a view reads: all, or some patients', changed since."""

    resource_type: str
    patients: tuple[str, ...] = ()
    for_patients: bool = False  # True: only those patients' (even if none are named)
    since: str | None = None


def selection_query(records: RecordService, selection: RecordSelection) -> SearchQuery:
    """Return the search that finds a selection's resources (InvalidRequest naming the
    parameter at fault)."""
    criteria: list[Criterion] = []
    if selection.since is not None:
        try:
            since = parse_search(
                selection.resource_type, [("_lastUpdated", f"ge{selection.since}")]
            )
        except FhirError as error:
            raise InvalidRequest(
                Issue(f"_since must be an instant, not {selection.since!r}", expression=("_since",))
            ) from error
        criteria.extend(since.criteria)
    if selection.for_patients:
        criteria.append(_patients_criterion(records, selection))
    return SearchQuery(selection.resource_type, tuple(criteria), count=PAGE_SIZE, total="none")


def _patients_criterion(records: RecordService, selection: RecordSelection) -> Criterion:
    if not selection.patients:
        return IdMatch(("-",))  # a group with no patients: nothing
    if selection.resource_type == "Patient":
        return IdMatch(tuple(sorted(set(selection.patients))))
    try:
        parts = [
            records.compartment_criterion("Patient", patient, selection.resource_type)
            for patient in sorted(set(selection.patients))
        ]
    except FhirError:
        raise InvalidRequest(
            Issue(
                f"{selection.resource_type} resources belong to no patient, so a view of them "
                "cannot be limited to patients",
                expression=("patient",),
            )
        ) from None
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


def read_stored(
    records: RecordService,
    query: SearchQuery,
    visible: Callable[[StoredVersion], bool] | None = None,
    on_page: Callable[[Sequence[StoredVersion]], None] | None = None,
) -> tuple[AsOf, Iterator[dict[str, object]]]:
    """Return the as-of of a read of query's matches, and the matching resources.

    The change sequence is taken before the first page, so it is never later than what
    the rows reflect. on_page sees each page's versions (for the audit, or progress).
    """
    with records.reading() as session:
        seq = session.last_seq()
    as_of = AsOf(seq, now_instant())

    def resources() -> Iterator[dict[str, object]]:
        page_query = query
        while True:
            page = records.search(page_query, visible=visible)
            if on_page is not None:
                on_page(page.matches)
            for version in page.matches:
                if version.content is not None:
                    yield orjson.loads(version.content)
            if page.next_cursor is None:
                return
            page_query = replace(query, cursor=page.next_cursor)

    return as_of, resources()
