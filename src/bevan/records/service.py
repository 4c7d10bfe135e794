"""The FHIR interactions on the record: create, read, update, patch, delete, history,
search, and their conditional forms. HTTP-free; api/ and the loader call these."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import jsonpatch
import orjson

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM, nhs_numbers_held
from bevan.fhir import fhirpath_patch, json_text
from bevan.fhir.care_dates import within_care_dates
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    MultipleMatches,
    NhsNumberHeld,
    NotFound,
    PreconditionFailed,
    TooCostly,
)
from bevan.fhir.ids import is_valid_id, new_id
from bevan.fhir.limits import (
    MAX_JSON_DEPTH,
    nul_character_at,
    stored_integer,
    too_deep_at,
)
from bevan.fhir.meta import with_meta_added, with_meta_removed
from bevan.fhir.paging import DEFAULT_COUNT
from bevan.fhir.patient_references import patients_named
from bevan.fhir.references import local_references
from bevan.fhir.search import (
    AnyOf,
    Criterion,
    Cursor,
    ReferenceMatch,
    ReferenceValue,
    SearchQuery,
    parse_search,
)
from bevan.fhir.search_parameters import IndexRows, compartment_parameters, index_rows
from bevan.fhir.validation import validate_resource
from bevan.records.referential_integrity import (
    PendingChecks,
    Reference,
    check_deletes,
    check_references,
)
from bevan.records.write_rules import WriteRule, WriteRules, Written
from bevan.store.reading import ReadSession
from bevan.store.record_store import RecordStore
from bevan.store.versions import CurrentRow, StoreConflict, StoredVersion
from bevan.store.writing import WriteSession

_EMPTY_ROWS = IndexRows()
# A cascading delete goes no further than this many resources in one transaction.
CASCADE_LIMIT = 1000

# Asked before every write: (interaction, resource type, current content, new content);
# raises to refuse. The API passes one that applies the caller's access rights.
WriteGuard = Callable[[str, str, dict[str, Any] | None, dict[str, Any] | None], None]

# Narrows a conditional match to what the caller may see: (the search, the interaction
# it serves, checked against the searched type) -> the search as the caller may run it.
# The API passes one for every caller but an unlimited system account, so a match the
# caller may not see is no match at all.
SearchLimit = Callable[[SearchQuery, str], SearchQuery]
_MORE_THAN_ONE = "matches more than one resource"


def conditional_match(
    session: ReadSession,
    query: SearchQuery,
    visible: SearchLimit | None,
    interaction: str,
    too_many: str | Issue,
) -> str | None:
    """Return the id of the one match of a conditional search among what the caller may
    see, or None for none; raise MultipleMatches (412) saying too_many for more than one.
    The one place every conditional interaction matches: update, delete, If-None-Exist,
    a Bundle's ifNoneExist and conditional entries, and conditional references."""
    if visible is not None:
        query = visible(query, interaction)
    ids = session.search_ids(query, limit=2)
    if len(ids) > 1:
        raise MultipleMatches(too_many)
    return ids[0] if ids else None


@dataclass(frozen=True)
class WriteResult:
    """What a write did: 201 created, 200 updated or matched, 204 deleted / nothing."""

    status: int
    stored: StoredVersion | None
    issues: tuple[Issue, ...] = ()

    @property
    def created(self) -> bool:
        return self.status == 201


MAX_INCLUDE_ROUNDS = 4
MAX_INCLUDED = 1000
MAX_EVERYTHING = 10_000


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: the matches, what they include, and where the pages go."""

    matches: list[StoredVersion]
    included: list[StoredVersion]
    total: int | None
    next_cursor: Cursor | None
    previous_cursor: Cursor | None


@dataclass(frozen=True)
class Page:
    """One page of search or history results."""

    versions: list[StoredVersion]
    total: int | None
    next_cursor: str | None


@dataclass(frozen=True)
class PreparedVersion:
    """A version made ready to store: stamped content, its JSON and its index rows."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    resource: dict[str, Any]
    content: str
    rows: IndexRows


# Types only the server writes: an AuditEvent comes from the audit trail alone, so that
# nobody (a system account or a Bundle included) can plant, amend or remove one.
SERVER_WRITTEN_TYPES = frozenset({"AuditEvent"})


def refuse_server_written(resource_type: str) -> None:
    """Return None, or refuse (405) a client's write of a type only the server writes."""
    if resource_type in SERVER_WRITTEN_TYPES:
        raise MethodNotAllowed(
            Issue(
                f"{resource_type} resources are written by the server's audit trail alone; "
                "they cannot be created, changed or deleted through the API",
                code="not-supported",
                expression=(resource_type,),
            )
        )


def _check_id(resource_type: str, id: str) -> None:
    if not is_valid_id(id):
        raise InvalidRequest(
            Issue(
                f"{id!r} is not a valid id: 1-64 letters, digits, '-' or '.'",
                expression=(f"{resource_type}.id",),
            )
        )


# The content one history page holds before it stops and links to the next: far more
# than a page of ordinary resources, a few versions of the largest.
HISTORY_PAGE_BYTES = 1024 * 1024


# A total for a caller who may not see every match is counted by judging each match, up
# to this many; beyond it no total is given rather than one that counts hidden records.
JUDGED_TOTAL_LIMIT = 10_000


class RecordService:
    """The record's FHIR interactions over a RecordStore."""

    def __init__(
        self,
        store: RecordStore,
        base_url: str | None = None,
        *,
        referential_integrity: bool = True,
        rules: Sequence[WriteRule] = (),
    ) -> None:
        self.store = store
        # What other services attach to writes (bevan.records.write_rules)
        self.rules = WriteRules(rules)
        # This server's FHIR base: absolute references under it are indexed as local.
        self.base_url = base_url.rstrip("/") if base_url else None
        self.referential_integrity = referential_integrity
        self._pending: dict[int, PendingChecks] = {}  # by id() of a session checking at its end

    @contextmanager
    def checks_at_end(
        self,
        session: WriteSession,
        where: Callable[[tuple[str, str]], str | None] = lambda source: None,
    ) -> Iterator[None]:
        """Check the references and deletes of the writes in the block together, when it
        ends without error; where(source) places each issue (a Bundle entry)."""
        key = _session_key(session)
        if not self.referential_integrity or key in self._pending:
            yield
            return
        pending = PendingChecks()
        self._pending[key] = pending
        try:
            yield
        finally:
            del self._pending[key]
        check_references(session, pending.references, where)
        check_deletes(session, pending.deleted, where)

    # --- sessions -------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[WriteSession]:
        with self.store.write() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[ReadSession]:
        with self.store.read() as session:
            yield session

    # --- reads ----------------------------------------------------------------------

    def read(
        self, resource_type: str, id: str, session: ReadSession | None = None
    ) -> StoredVersion:
        """Return the current version; NotFound if never stored, Gone if deleted."""
        _check_id(resource_type, id)
        if session is None:
            with self.reading() as session:
                stored = session.current(resource_type, id)
        else:
            stored = session.current(resource_type, id)
        if stored is None:
            raise NotFound(f"{resource_type}/{id} is not known")
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {stored.version_id})")
        return stored

    def vread(
        self, resource_type: str, id: str, version: str, session: ReadSession | None = None
    ) -> StoredVersion:
        _check_id(resource_type, id)
        if not version.isascii() or not version.isdigit():
            raise NotFound(f"{resource_type}/{id} has no version {version!r}")
        number = stored_integer(version, f"{resource_type}/{id}/_history", "a version id")
        if session is None:
            with self.reading() as session:
                stored = session.version(resource_type, id, number)
        else:
            stored = session.version(resource_type, id, number)
        if stored is None:
            raise NotFound(f"{resource_type}/{id} has no version {version}")
        if stored.deleted:
            raise Gone(f"{resource_type}/{id} version {version} is the record of its deletion")
        return stored

    def history(
        self,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: str | None = None,
        count: int = DEFAULT_COUNT,
        before: int | None = None,
        max_bytes: int = HISTORY_PAGE_BYTES,
        visible: Callable[[StoredVersion], bool] | None = None,
    ) -> Page:
        """Return a page of versions changed at or after the instant since, newest
        first; before (the previous page's cursor) continues a previous page. Versions
        visible refuses are left out, and a total then given only if it can leave them
        out too.

        A page ends at count versions, or sooner, once the versions on it hold more than
        max_bytes of content: a resource rewritten many times at megabytes a version
        would otherwise be read, held and sent whole, a thousand versions to a page.
        """
        with self.reading() as session:
            if resource_type is not None and id is not None:
                _check_id(resource_type, id)
                if session.current(resource_type, id) is None:
                    raise NotFound(f"{resource_type}/{id} is not known")
            versions = session.history(
                resource_type,
                id,
                since=since,
                before_seq=before,
                count=count + 1,
                max_bytes=max_bytes,
            )
            total = session.history_total(resource_type, id, since) if before is None else None
        page: list[StoredVersion] = []
        size = 0
        for version in versions:
            if len(page) == count or size > max_bytes:
                break
            page.append(version)
            size += len(version.content or "")
        next_cursor = str(page[-1].seq) if page and len(versions) > len(page) else None
        if visible is not None:
            shown = [v for v in page if visible(v)]
            if len(shown) < len(page) and total is not None:
                total = total - (len(page) - len(shown)) if next_cursor is None else None
            page = shown
        return Page(page, total, next_cursor)

    def search(
        self,
        query: SearchQuery,
        session: ReadSession | None = None,
        *,
        visible: Callable[[StoredVersion], bool] | None = None,
    ) -> SearchPage:
        """Return a page of current resources matching query, with what it includes (only
        what visible allows, if given)."""
        if session is None:
            with self.reading() as session:
                return self._search(query, session, visible)
        return self._search(query, session, visible)

    def _search(
        self,
        query: SearchQuery,
        session: ReadSession,
        visible: Callable[[StoredVersion], bool] | None = None,
    ) -> SearchPage:
        # Counting every match costs as much as finding them all, so without _total a
        # total is given only when the first page already holds every match.
        counted = (
            query.total in ("accurate", "estimate") or query.summary == "count" or query.count == 0
        )
        total = session.count(query) if counted else None
        judged = False
        if visible is not None and total:
            total = self._visible_total(session, query, visible, total)
            judged = True
        if query.count == 0 or query.summary == "count":
            return SearchPage([], [], total, None, None)
        hits = session.search(query, limit=query.count + 1)
        backwards = query.cursor is not None and query.cursor.before
        more = len(hits) > query.count
        if total is None and query.total == "default" and query.cursor is None and not more:
            total = len(hits)
        if more:
            hits = hits[1:] if backwards else hits[: query.count]
        next_cursor = previous_cursor = None
        if hits and (more and not backwards or backwards):
            last = hits[-1]
            next_cursor = Cursor(last.sort_values, last.rid)
        if hits and query.cursor is not None and (not backwards or more):
            first = hits[0]
            previous_cursor = Cursor(first.sort_values, first.rid, before=True)
        shown: list[StoredVersion] = (
            list(hits) if visible is None else [v for v in hits if visible(v)]
        )
        if len(shown) < len(hits) and total is not None and not judged:
            # A total must not count what the caller may not see; it can be corrected
            # only when this page holds every match.
            whole = query.cursor is None and not more
            total = total - (len(hits) - len(shown)) if whole else None
        included = self._included(session, query, shown, visible)
        return SearchPage(shown, included, total, next_cursor, previous_cursor)

    @staticmethod
    def _visible_total(
        session: ReadSession,
        query: SearchQuery,
        visible: Callable[[StoredVersion], bool],
        total: int,
    ) -> int | None:
        """Return how many of the total matches the caller may see, judging each (a
        count is a read of every match); None, so that no total is given, when there are
        more matches than JUDGED_TOTAL_LIMIT to judge."""
        if total > JUDGED_TOTAL_LIMIT:
            return None
        every = replace(query, cursor=None, sort=(), include=(), revinclude=(), count=total)
        return sum(1 for hit in session.search(every, limit=total) if visible(hit))

    def _included(
        self,
        session: ReadSession,
        query: SearchQuery,
        matches: list[StoredVersion],
        visible: Callable[[StoredVersion], bool] | None = None,
    ) -> list[StoredVersion]:
        """Return the resources _include and _revinclude bring in (with :iterate); what
        visible refuses is left out as if it did not exist, so :iterate never goes on
        from it either."""
        if not query.include and not query.revinclude:
            return []
        seen = {(m.resource_type, m.id) for m in matches}
        included: list[StoredVersion] = []
        frontier = list(matches)
        for round_number in range(MAX_INCLUDE_ROUNDS):
            found: list[StoredVersion] = []
            for spec in query.include:
                if round_number > 0 and not spec.iterate:
                    continue
                ids = [v.id for v in frontier if v.resource_type == spec.source_type]
                if ids:
                    targets = session.references_from(
                        spec.source_type, ids, spec.param, spec.target_type
                    )
                    found.extend(session.current_many(t for t in targets if t not in seen))
            for spec in query.revinclude:
                if round_number > 0 and not spec.iterate:
                    continue
                for target_type in {v.resource_type for v in frontier}:
                    ids = [v.id for v in frontier if v.resource_type == target_type]
                    found.extend(
                        session.referencing(
                            spec.source_type, spec.param, target_type, ids, MAX_INCLUDED
                        )
                    )
            fresh = []
            for version in found:
                key = (version.resource_type, version.id)
                if key not in seen:
                    seen.add(key)
                    if visible is None or visible(version):
                        fresh.append(version)
            included.extend(fresh)
            if not fresh or len(included) >= MAX_INCLUDED:
                break
            frontier = fresh
        return included[:MAX_INCLUDED]

    def compartment_criterion(self, compartment: str, id: str, resource_type: str) -> Criterion:
        """Return the criterion putting resource_type in compartment/id (404 if none can be)."""
        params = compartment_parameters(compartment).get(resource_type)
        if not params:
            raise NotFound(f"{resource_type} resources are not part of a {compartment} compartment")
        return AnyOf(
            tuple(
                ReferenceMatch(p, (ReferenceValue(id=id, resource_type=compartment),))
                for p in params
            )
        )

    def everything(
        self,
        patient_id: str,
        *,
        since: str | None = None,
        types: tuple[str, ...] = (),
        count: int = 100,
        position: int | None = None,
        visible: Callable[[StoredVersion], bool] | None = None,
        care_start: str | None = None,
        care_end: str | None = None,
    ) -> Page:
        """Return a page of Patient/id, everything in its compartment, and what those
        reference (only what visible allows, if given; changed at or after the instant
        since; with the instants care_start or care_end, only what records care in that
        period, or no date of care at all). position (the previous page's cursor) is
        where the page starts."""
        low, high = care_start, care_end
        with self.reading() as session:
            patient = self.read("Patient", patient_id, session)
            members: dict[tuple[str, str], StoredVersion] = {("Patient", patient.id): patient}
            params = compartment_parameters("Patient")
            if types:
                params = {t: p for t, p in params.items() if t in types}
            inside = session.compartment("Patient", patient_id, params, MAX_EVERYTHING)
            for _, version in inside:
                members[(version.resource_type, version.id)] = version
            referenced = session.versions_referenced(
                [rid for rid, _ in inside], "Patient", patient_id
            )
            for version in referenced:
                key = (version.resource_type, version.id)
                if key not in members and (not types or version.resource_type in types):
                    members[key] = version
        ordered = sorted(
            members.values(), key=lambda v: (v.resource_type != "Patient", v.resource_type, v.id)
        )
        if types and "Patient" not in types:
            ordered = [v for v in ordered if v.resource_type != "Patient"]
        if since is not None:
            ordered = [v for v in ordered if v.last_updated >= since]
        if low is not None or high is not None:
            ordered = [
                v
                for v in ordered
                if v.content is None or within_care_dates(json_text.loads(v.content), low, high)
            ]
        if visible is not None:
            ordered = [v for v in ordered if visible(v)]
        start = position or 0
        page = ordered[start : start + count]
        next_cursor = str(start + count) if start + count < len(ordered) else None
        return Page(page, len(ordered), next_cursor)

    # --- writes ---------------------------------------------------------------------

    def create(
        self,
        resource: Any,
        *,
        if_none_exist: str | None = None,
        guard: WriteGuard | None = None,
        visible: SearchLimit | None = None,
    ) -> WriteResult:
        """Create with a server-assigned id (or return the one match of if_none_exist)."""
        resource_type = validate_resource(resource)
        with self.writing() as session:
            return self.create_in(
                session,
                resource_type,
                resource,
                if_none_exist=if_none_exist,
                guard=guard,
                visible=visible,
            )

    def create_in(
        self,
        session: WriteSession,
        resource_type: str,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        id: str | None = None,
        guard: WriteGuard | None = None,
        prepared: PreparedVersion | None = None,
        visible: SearchLimit | None = None,
    ) -> WriteResult:
        """Create inside session; the resource is already validated (and may be prepared)."""
        refuse_server_written(resource_type)
        if if_none_exist:
            query = parse_search(resource_type, if_none_exist, strict=True)
            session.lock(f"{resource_type}?{if_none_exist}")
            match = conditional_match(
                session,
                query,
                visible,
                "create",
                f"If-None-Exist {if_none_exist!r} matches more than one {resource_type}",
            )
            if match is not None:
                return WriteResult(200, session.current(resource_type, match))
        new = id or new_id()
        stored = self._write(session, resource_type, new, resource, None, guard, prepared)
        return WriteResult(201, stored)

    def update(
        self,
        resource_type: str,
        id: str,
        resource: Any,
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        """Update (or create with this client id); If-Match makes it conditional."""
        validate_resource(resource, resource_type)
        self.check_body_id(resource_type, id, resource)
        with self.writing() as session:
            return self.update_in(
                session, resource_type, id, resource, if_match=if_match, guard=guard
            )

    @staticmethod
    def check_body_id(resource_type: str, id: str, resource: dict[str, Any]) -> None:
        _check_id(resource_type, id)
        body_id = resource.get("id")
        if body_id is None:
            raise InvalidResource(
                Issue(
                    f"an update must carry the id {id!r} in the body as well as in the URL",
                    code="required",
                    expression=(f"{resource_type}.id",),
                )
            )
        if body_id != id:
            raise InvalidResource(
                Issue(
                    f"the body's id {body_id!r} differs from the id {id!r} in the URL",
                    expression=(f"{resource_type}.id",),
                )
            )

    def update_in(
        self,
        session: WriteSession,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
        prepared: PreparedVersion | None = None,
    ) -> WriteResult:
        refuse_server_written(resource_type)
        current = session.current_row(resource_type, id)
        if if_match is not None:
            if current is None or current.deleted:
                raise PreconditionFailed(
                    f"If-Match version {if_match} given, but {resource_type}/{id} does not exist"
                )
            if current.version_id != if_match:
                raise PreconditionFailed(
                    f"{resource_type}/{id} is at version {current.version_id}, not {if_match}: "
                    "someone else changed it; read it again and reapply your change"
                )
        if current is not None and current.deleted and guard is not None:
            # Unlimited system accounts (no guard) restore and migrate records as they are.
            self._check_reuse(session, resource_type, id, current.version_id, resource)
        stored = self._write(session, resource_type, id, resource, current, guard, prepared)
        created = current is None or current.deleted
        return WriteResult(201 if created else 200, stored)

    def _check_reuse(
        self, session: ReadSession, resource_type: str, id: str, tombstone: int, new: dict[str, Any]
    ) -> None:
        """Refuse to bring a deleted id back as another patient's record: its history
        (still read through vread and _history) would then show in that patient's record."""
        last = session.version(resource_type, id, tombstone - 1) if tombstone > 1 else None
        if last is None or last.content is None:
            return
        before = patients_named(json_text.loads(last.content), self.base_url)
        after = patients_named(new, self.base_url)
        if (before.ids, before.nhs_numbers) != (after.ids, after.nhs_numbers):
            raise Conflict(
                Issue(
                    f"{resource_type}/{id} was deleted, and its id cannot be reused for a record "
                    "about a different patient; create the new record with a new id",
                    code="conflict",
                    expression=(f"{resource_type}.id",),
                )
            )

    def conditional_update(
        self,
        resource_type: str,
        search: str,
        resource: Any,
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
        visible: SearchLimit | None = None,
    ) -> WriteResult:
        """Update the one match of search, or create if none (spec: conditional update).
        A match the caller may not see (visible) counts as none."""
        validate_resource(resource, resource_type)
        with self.writing() as session:
            return self.conditional_update_in(
                session, resource_type, search, resource, if_match, guard, visible
            )

    def conditional_update_in(
        self,
        session: WriteSession,
        resource_type: str,
        search: str,
        resource: dict[str, Any],
        if_match: int | None = None,
        guard: WriteGuard | None = None,
        visible: SearchLimit | None = None,
    ) -> WriteResult:
        refuse_server_written(resource_type)
        query = parse_search(resource_type, search, strict=True)
        session.lock(f"{resource_type}?{search}")
        match = conditional_match(
            session, query, visible, "update", f"{resource_type}?{search} {_MORE_THAN_ONE}"
        )
        body_id = resource.get("id")
        if match is not None:
            if body_id is not None and body_id != match:
                raise InvalidResource(
                    Issue(
                        f"the body's id {body_id!r} differs from the matching {resource_type}/{match}",
                        expression=(f"{resource_type}.id",),
                    )
                )
            resource["id"] = match
            return self.update_in(
                session, resource_type, match, resource, if_match=if_match, guard=guard
            )
        if body_id is not None:
            _check_id(resource_type, body_id)
            if session.current_row(resource_type, body_id) not in (None,):
                raise Conflict(f"{resource_type}/{body_id} exists but does not match {search!r}")
        return self.create_in(session, resource_type, resource, id=body_id, guard=guard)

    def patch(
        self,
        resource_type: str,
        id: str,
        operations: Any,
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        """Apply a JSON Patch (a list) or FHIRPath Patch (a Parameters) and store the result."""
        if not isinstance(operations, list | dict):
            raise InvalidRequest(Issue("a JSON Patch body must be a JSON array of operations"))
        with self.writing() as session:
            return self.patch_in(
                session, resource_type, id, operations, if_match=if_match, guard=guard
            )

    def patch_in(
        self,
        session: WriteSession,
        resource_type: str,
        id: str,
        operations: list[Any] | dict[str, Any],
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        """Apply a JSON Patch, or a FHIRPath Patch when given a Parameters, and store it."""
        refuse_server_written(resource_type)
        stored = self.read(resource_type, id, session)
        if if_match is not None and stored.version_id != if_match:
            raise PreconditionFailed(
                f"{resource_type}/{id} is at version {stored.version_id}, not {if_match}"
            )
        current = json_text.loads(stored.content or "{}")
        if isinstance(operations, dict):
            patched = fhirpath_patch.apply(current, operations)
        else:
            patched = self._json_patched(current, operations)
        validate_resource(patched, resource_type)
        if patched.get("id") != id:
            raise InvalidResource(
                Issue(
                    "a patch may not change the resource's id", expression=(f"{resource_type}.id",)
                )
            )
        row = session.current_row(resource_type, id)
        written = self._write(session, resource_type, id, patched, row, guard)
        return WriteResult(200, written)

    @staticmethod
    def _json_patched(current: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
        try:
            patched: dict[str, Any] = jsonpatch.apply_patch(current, operations)
        except (
            jsonpatch.JsonPatchException,
            jsonpatch.JsonPointerException,
            TypeError,
            KeyError,
            ValueError,
        ) as error:
            raise InvalidRequest(
                Issue(f"the JSON Patch could not be applied: {error}", code="processing")
            ) from None
        if not isinstance(patched, dict):
            raise InvalidRequest(
                Issue("the JSON Patch did not leave a resource", code="processing")
            )
        return patched

    def delete(
        self,
        resource_type: str,
        id: str,
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
        cascade: bool = False,
    ) -> WriteResult:
        """Delete (write a tombstone); deleting what is absent or deleted is a no-op.

        cascade deletes, in the same transaction, every current resource that refers to it
        (and what refers to those); without it, a resource still referred to is kept (409).
        """
        _check_id(resource_type, id)
        with self.writing() as session:
            if not cascade:
                return self.delete_in(session, resource_type, id, if_match=if_match, guard=guard)
            with self.checks_at_end(session):
                result = self.delete_in(session, resource_type, id, if_match=if_match, guard=guard)
                for referrer in self._referrers_closure(session, resource_type, id):
                    self.delete_in(session, *referrer, guard=guard)
            return result

    @staticmethod
    def _referrers_closure(
        session: WriteSession, resource_type: str, id: str
    ) -> list[tuple[str, str]]:
        """Return every current resource that refers to resource_type/id, directly or
        through others that do, up to CASCADE_LIMIT (more is refused as too costly)."""
        found: dict[tuple[str, str], None] = {}
        queue = [(resource_type, id)]
        while queue:
            for referrer in session.referrers(*queue.pop()):
                if referrer not in found and referrer != (resource_type, id):
                    found[referrer] = None
                    queue.append(referrer)
                    if len(found) > CASCADE_LIMIT:
                        raise TooCostly(
                            f"deleting {resource_type}/{id} would cascade to more than "
                            f"{CASCADE_LIMIT} resources; delete them in smaller steps"
                        )
        return list(found)

    def delete_in(
        self,
        session: WriteSession,
        resource_type: str,
        id: str,
        *,
        if_match: int | None = None,
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        refuse_server_written(resource_type)
        current = session.current_row(resource_type, id)
        if if_match is not None and (current is None or current.version_id != if_match):
            raise PreconditionFailed(
                f"{resource_type}/{id} is not at version {if_match}; nothing was deleted"
            )
        if current is None or current.deleted:
            return WriteResult(204, None)
        if guard is not None:
            guard("delete", resource_type, self._content(session, resource_type, id), None)
        version = current.version_id + 1
        if resource_type == "Patient":
            session.release_nhs_numbers(id)
        session.write_version(
            resource_type,
            id,
            version_id=version,
            last_updated=now_instant(),
            content=None,
            rows=_EMPTY_ROWS,
            current=current,
        )
        if self.referential_integrity:
            pending = self._pending.get(_session_key(session))
            if pending is not None:
                pending.deleted.append((resource_type, id))
            else:
                check_deletes(session, [(resource_type, id)])
        tombstone = session.current(resource_type, id)
        if self.rules and tombstone is not None:
            self.rules.written(self, Written(session, tombstone, None))
        return WriteResult(204, tombstone)

    def conditional_delete(
        self,
        resource_type: str,
        search: str,
        *,
        guard: WriteGuard | None = None,
        visible: SearchLimit | None = None,
    ) -> WriteResult:
        """Delete the one match of search (more than one: 412; one the caller may not
        see, by visible, counts as none)."""
        refuse_server_written(resource_type)
        query = parse_search(resource_type, search, strict=True)
        if not query.criteria:
            raise InvalidRequest(Issue("a conditional delete needs at least one search parameter"))
        with self.writing() as session:
            match = conditional_match(
                session, query, visible, "delete", f"{resource_type}?{search} {_MORE_THAN_ONE}"
            )
            if match is None:
                return WriteResult(204, None)
            return self.delete_in(session, resource_type, match, guard=guard)

    def change_meta(
        self,
        resource_type: str,
        id: str,
        *,
        add: dict[str, list[Any]] | None = None,
        remove: dict[str, list[Any]] | None = None,
        guard: WriteGuard | None = None,
    ) -> WriteResult:
        """Add or remove tags, security labels and profiles ($meta-add, $meta-delete): a
        new version if that changed anything, else the current one, unchanged."""
        with self.writing() as session:
            stored = self.read(resource_type, id, session)
            current: dict[str, Any] = json_text.loads(stored.content or "{}")
            meta = current.get("meta") or {}
            changed = with_meta_added(meta, add or {})
            changed = with_meta_removed(changed, remove or {})
            if changed == meta:
                if guard is not None:  # nothing to write, but the caller must be one who could
                    guard("update", resource_type, current, current)
                return WriteResult(200, stored)
            updated = {**current, "meta": changed}
            validate_resource(updated, resource_type)
            row = session.current_row(resource_type, id)
            return WriteResult(200, self._write(session, resource_type, id, updated, row, guard))

    def meta_in_use(self, resource_type: str | None = None) -> dict[str, list[Any]]:
        """Return the tags, security labels and profiles current resources carry."""
        with self.reading() as session:
            return session.meta_in_use(resource_type)

    @staticmethod
    def _content(session: ReadSession, resource_type: str, id: str) -> dict[str, Any] | None:
        stored = session.current(resource_type, id)
        if stored is None or stored.content is None:
            return None
        loaded: dict[str, Any] = json_text.loads(stored.content)
        return loaded

    # --- a version made ready, then written (the one place one is written) ------------

    def prepare(
        self, resource_type: str, id: str, resource: dict[str, Any], version: int
    ) -> PreparedVersion:
        """Return resource stamped as the given version of resource_type/id, with its JSON
        and index rows. Touches no database, so Bundles prepare their entries before they
        queue for the writer; resource itself is left as it was."""
        last_updated = now_instant()
        meta = resource.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["versionId"] = str(version)
        meta["lastUpdated"] = last_updated
        # resourceType, id and meta lead, as people expect to read them
        stamped = {"resourceType": resource_type, "id": id, "meta": meta}
        stamped.update((k, v) for k, v in resource.items() if k not in stamped)
        if self.rules:
            self.rules.preparing(resource_type, stamped)
        return PreparedVersion(
            resource_type,
            id,
            version,
            last_updated,
            stamped,
            json_text.dumps(stamped).decode(),
            index_rows(stamped, self.base_url),
        )

    def _write(
        self,
        session: WriteSession,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        current: CurrentRow | None,
        guard: WriteGuard | None = None,
        prepared: PreparedVersion | None = None,
    ) -> StoredVersion:
        """Store resource as the next version after current. A prepared version is used
        as it is when it is that version of this resource; otherwise it is made here."""
        refuse_server_written(resource_type)
        if guard is not None:
            exists = current is not None and not current.deleted
            old = self._content(session, resource_type, id) if exists else None
            guard("update" if exists else "create", resource_type, old, resource)
        if resource_type == "Patient":
            self._claim_nhs_numbers(session, id, resource)
        version = 1 if current is None else current.version_id + 1
        if prepared is None or (prepared.resource_type, prepared.id, prepared.version) != (
            resource_type,
            id,
            version,
        ):
            prepared = self.prepare(resource_type, id, resource, version)
        resource.clear()
        resource.update(prepared.resource)
        try:
            seq = session.write_version(
                resource_type,
                id,
                version_id=version,
                last_updated=prepared.last_updated,
                content=prepared.content,
                rows=prepared.rows,
                current=current,
            )
        except StoreConflict as error:
            raise Conflict(str(error)) from None
        if self.referential_integrity:
            self._check_references(session, resource_type, id, prepared.resource)
        stored = StoredVersion(
            resource_type, id, version, prepared.last_updated, False, prepared.content, seq
        )
        if self.rules:
            self.rules.written(self, Written(session, stored, prepared.resource))
        return stored

    def _check_references(
        self, session: WriteSession, resource_type: str, id: str, resource: dict[str, Any]
    ) -> None:
        """Refuse (422) a reference to a resource of this server that does not exist."""
        references = [
            Reference((resource_type, id), path, text, target)
            for path, text, target in local_references(resource, self.base_url)
        ]
        pending = self._pending.get(_session_key(session))
        if pending is not None:
            pending.references.extend(references)
        else:
            check_references(session, references)

    @staticmethod
    def _claim_nhs_numbers(session: WriteSession, id: str, patient: dict[str, Any]) -> None:
        """Refuse a Patient whose NHS number another active Patient holds (409)."""
        holder_id = session.claim_nhs_numbers(id, nhs_numbers_held(patient))
        if holder_id is None:
            return
        index = next(
            i
            for i, identifier in enumerate(patient.get("identifier") or ())
            if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM
        )
        holder = session.current("Patient", holder_id)
        raise NhsNumberHeld(
            Issue(
                "another record holds this NHS number; one Patient per NHS number",
                code="duplicate",
                expression=(f"Patient.identifier[{index}].value",),
            ),
            holder_id=holder_id,
            holder=json_text.loads(holder.content) if holder and holder.content else None,
        )


def _session_key(session: WriteSession) -> int:
    """Return the key a session's pending checks are kept under while it is open."""
    return id(session)


def reindex(
    service: RecordService, progress: Callable[[int], None] = lambda n: None, batch: int = 500
) -> int:
    """Rebuild every live resource's index rows from the current search parameters;
    return how many were reindexed. Each batch is its own transaction."""
    after, done = 0, 0
    while True:
        with service.writing() as session:
            rows = session.live_resources(after, batch)
            for rid, resource_type, content in rows:
                session.replace_index_rows(
                    rid, resource_type, index_rows(json_text.loads(content), service.base_url)
                )
        if not rows:
            return done
        after = rows[-1][0]
        done += len(rows)
        progress(len(rows))


def parse_json(body: bytes, where: str = "") -> Any:
    """Return the JSON value of body, or raise InvalidRequest naming line and column."""
    place = f" in {where}" if where else ""
    try:
        value = json_text.loads(body, max_depth=MAX_JSON_DEPTH)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            Issue(
                f"the body{place} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
                code="structure",
            )
        ) from None
    except json_text.TooDeep as error:
        deepest = too_deep_at(error.value, _root(error.value))
        raise InvalidRequest(
            Issue(
                f"the body{place} is refused: {error}",
                code="too-costly",
                expression=(deepest,) if deepest else (),
            )
        ) from None
    # Only an escaped NUL can reach a string (JSON text holds no raw control
    # characters), so most bodies are never walked.
    if b"\\u0000" in body:
        found = nul_character_at(value, _root(value))
        if found is not None:
            raise InvalidRequest(
                Issue(
                    "FHIR strings may not hold the NUL character (U+0000)",
                    code="value",
                    expression=(found,),
                )
            )
    return value


def _root(value: Any) -> str:
    """Return the FHIRPath a parsed body's elements are named under: its resource type."""
    root = value.get("resourceType") if isinstance(value, dict) else None
    return root if isinstance(root, str) and root.isidentifier() else "$this"
