"""Transaction and batch Bundles: parse, resolve references, write, answer.

A transaction is all or nothing: every entry is checked and validated before the write
lock is taken, then all writes happen in one database transaction. A batch answers each
entry on its own (a savepoint each), so one bad entry costs only itself.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from bevan.fhir import json_text
from bevan.fhir.bundles import bundle, entry_for
from bevan.fhir.errors import FhirError, Forbidden, InvalidRequest, Issue, NotFound
from bevan.fhir.ids import new_id
from bevan.fhir.limits import is_stored_integer
from bevan.fhir.outcome import operation_outcome
from bevan.fhir.references import conditional_reference, iter_references, rewrite_references
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search import parse_search
from bevan.fhir.validation import validate_resource
from bevan.records.referential_integrity import UNRESOLVED
from bevan.records.service import (
    PreparedVersion,
    RecordService,
    SearchLimit,
    WriteGuard,
    WriteResult,
    conditional_match,
    parse_json,
)
from bevan.store.reading import ReadSession
from bevan.store.versions import StoredVersion
from bevan.store.writing import WriteSession

T = TypeVar("T")
# How a Bundle's writes are run: given a function that opens its own write session,
# run it (here, or on a group-commit writer) and return its result once committed.
Commit = Callable[[Callable[[], T]], T]


def run_here(work: Callable[[], T]) -> T:
    return work()


# Order of processing within a transaction (FHIR R4 3.1.0.11.2).
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    """One entry of a request Bundle, parsed."""

    index: int
    method: str
    resource_type: str
    id: str | None
    query: str | None
    version: str | None
    full_url: str | None
    resource: dict[str, Any] | None
    if_none_exist: str | None
    if_match: int | None
    url: str
    response: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    matched: StoredVersion | None = None  # the existing resource an ifNoneExist found
    prepared: PreparedVersion | None = None  # the version to write, made ready


@dataclass(frozen=True)
class BundleAccess:
    """The caller's rights, applied to every entry: writes through guard, reads through
    read_check, ifNoneExist, conditional references and conditional writes through
    visible; searches inside Bundles only for callers with no restrictions (None)."""

    guard: WriteGuard
    read_check: Callable[[StoredVersion], None]
    visible: SearchLimit | None = None


def process_bundle(
    service: RecordService,
    body: Any,
    base_url: str,
    access: BundleAccess | None = None,
    commit: Commit[dict[str, Any]] = run_here,
) -> dict[str, Any]:
    """Return the response Bundle for a transaction or batch request Bundle; its writes
    run through commit."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest(
            Issue(
                "POST to the base URL takes a Bundle of type transaction or batch",
                expression=("Bundle",),
            )
        )
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(
            Issue(
                f"Bundle.type must be transaction or batch to be processed here, not {kind!r}",
                expression=("Bundle.type",),
            )
        )
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list):
        raise InvalidRequest(Issue("Bundle.entry must be an array", expression=("Bundle.entry",)))
    if kind == "transaction":
        return _transaction(service, raw_entries, base_url, access, commit)
    return commit(lambda: _batch(service, raw_entries, base_url, access))


# --- parsing ------------------------------------------------------------------------------


def _parse_entry(index: int, raw: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(Issue("each entry must be a JSON object", expression=(where,)))
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidRequest(
            Issue("the entry has no request", code="required", expression=(f"{where}.request",))
        )
    method = request.get("method")
    if not isinstance(method, str) or method not in _ORDER:
        raise InvalidRequest(
            Issue(
                f"request.method {method!r} is not one of GET, HEAD, POST, PUT, PATCH, DELETE",
                expression=(f"{where}.request.method",),
            )
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(
            Issue(
                "the entry's request has no url",
                code="required",
                expression=(f"{where}.request.url",),
            )
        )
    if url.startswith(base_url):
        url = url[len(base_url) :]
    path, _, query = url.lstrip("/").partition("?")
    parts = path.split("/")
    resource_type = parts[0]
    if resource_type not in RESOURCE_TYPES:
        raise InvalidRequest(
            Issue(
                f"{resource_type!r} in request.url is not an R4 resource type",
                expression=(f"{where}.request.url",),
            )
        )
    id = parts[1] if len(parts) > 1 and parts[1] else None
    version = parts[3] if len(parts) == 4 and parts[2] == "_history" else None
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise InvalidRequest(
            Issue(
                f"a {method} entry needs a resource",
                code="required",
                expression=(f"{where}.resource",),
            )
        )
    full_url = _optional_text(raw, "fullUrl", where)
    if_none_exist = _optional_text(request, "ifNoneExist", f"{where}.request")
    if_match_text = _optional_text(request, "ifMatch", f"{where}.request")
    if_match = None
    if if_match_text:
        if_match = parse_etag(if_match_text, f"{where}.request.ifMatch")
    return Entry(
        index=index,
        method=method,
        resource_type=resource_type,
        id=id,
        query=query or None,
        version=version,
        full_url=full_url,
        resource=resource if isinstance(resource, dict) else None,
        if_none_exist=if_none_exist,
        if_match=if_match,
        url=url,
        where=where,
    )


def _optional_text(element: dict[str, Any], name: str, where: str) -> str | None:
    """Return element[name] if it is a string, None if it is absent or null; raise
    InvalidRequest (placed at where.name) for any other JSON type."""
    value = element.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(
        Issue(
            f"{name} must be a string, not {_json_type(value)}",
            code="structure",
            expression=(f"{where}.{name}",),
        )
    )


def _json_type(value: Any) -> str:
    """Return the JSON name of value's type, for saying what was sent instead."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_etag(value: str, where: str = "If-Match") -> int:
    """Return the version in an ETag such as W/"3" (or a bare 3)."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not is_stored_integer(text):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidRequest(
            Issue(f'{shown!r} is not a version ETag such as W/"3"', expression=(where,))
        )
    return int(text)


# --- transaction --------------------------------------------------------------------------


def _transaction(
    service: RecordService,
    raw_entries: list[Any],
    base_url: str,
    access: BundleAccess | None,
    commit: Commit[dict[str, Any]],
) -> dict[str, Any]:
    """Check and prepare every entry on a read snapshot, then write them all in one
    transaction, on the writer commit hands it to.

    Preparing (references rewritten, each new version's JSON and index rows made) is
    most of the work and needs no write lock, so it runs beside other writers. Before
    writing, every ifNoneExist and conditional reference is asked again; if any answer
    has changed in between, the entries are prepared once more inside the transaction.
    """
    entries = _checked_entries(service, raw_entries, base_url)
    visible = access.visible if access is not None else None
    with service.reading() as snapshot:
        answers = _plan(service, snapshot, entries, visible)

    def write() -> dict[str, Any]:
        nonlocal entries
        with service.writing() as session:
            if not _still_holds(session, entries, answers, visible):
                entries = _checked_entries(service, raw_entries, base_url)
                _plan(service, session, entries, visible)
            _write_entries(service, session, entries, base_url, access)
        return bundle("transaction-response", [e.response for e in entries])

    return commit(write)


def _checked_entries(service: RecordService, raw_entries: list[Any], base_url: str) -> list[Entry]:
    """Parse and validate every entry (no database needed); refuse duplicates."""
    entries = [_parse_entry(i, raw, base_url) for i, raw in enumerate(raw_entries)]
    for entry in entries:
        if entry.resource is not None and entry.method in ("POST", "PUT"):
            try:
                validate_resource(entry.resource, entry.resource_type)
            except FhirError as error:
                raise error.at(f"{entry.where}.resource") from None
            if entry.method == "PUT" and entry.id is not None:
                try:
                    service.check_body_id(entry.resource_type, entry.id, entry.resource)
                except FhirError as error:
                    raise error.at(f"{entry.where}.resource") from None
    _refuse_duplicates(entries)
    return entries


@dataclass(frozen=True)
class _Answers:
    """What a plan read from the database: the ifNoneExist matches by entry index and
    the target of each conditional reference."""

    matches: dict[int, str | None]
    conditional: dict[str, str]


def _plan(
    service: RecordService,
    session: ReadSession,
    entries: list[Entry],
    visible: SearchLimit | None = None,
) -> _Answers:
    """Give each new resource its id, answer ifNoneExist, rewrite references and
    prepare every version to be written; return what was read to decide it."""
    resolver = _References(session, visible)
    matches: dict[int, str | None] = {}
    for entry in entries:
        if entry.method == "POST":
            if entry.if_none_exist:
                match = _conditional_match(
                    session, entry.resource_type, entry.if_none_exist, entry.where, visible
                )
                matches[entry.index] = match.id if match is not None else None
                if match is not None:
                    entry.matched = match
                    entry.id = match.id
                    if entry.full_url:
                        resolver.map(entry.full_url, f"{entry.resource_type}/{match.id}")
                    continue
            entry.id = new_id()
            if entry.full_url:
                resolver.map(entry.full_url, f"{entry.resource_type}/{entry.id}")
        elif entry.method == "PUT" and entry.full_url and entry.id:
            resolver.map(entry.full_url, f"{entry.resource_type}/{entry.id}")
    with_bodies = [e for e in entries if e.resource is not None and e.matched is None]
    rewritten = resolver.rewrite(
        [e.resource for e in with_bodies], [f"{e.where}.resource" for e in with_bodies]
    )
    for entry, resource in zip(with_bodies, rewritten, strict=True):
        entry.resource = resource
        if entry.method == "POST":
            version = 1
        elif entry.method == "PUT" and entry.id:
            current = session.current(entry.resource_type, entry.id)
            version = 1 if current is None else current.version_id + 1
        else:
            continue
        assert entry.id is not None
        entry.prepared = service.prepare(entry.resource_type, entry.id, resource, version)
    return _Answers(matches, dict(resolver.conditional))


def _still_holds(
    session: WriteSession,
    entries: list[Entry],
    answers: _Answers,
    visible: SearchLimit | None = None,
) -> bool:
    """Return True if every ifNoneExist and conditional reference still answers as
    when the entries were prepared (asked again under the write lock)."""
    for entry in entries:
        if entry.index in answers.matches:
            assert entry.if_none_exist is not None
            match = _conditional_match(
                session, entry.resource_type, entry.if_none_exist, entry.where, visible
            )
            if (match.id if match is not None else None) != answers.matches[entry.index]:
                return False
            entry.matched = match
    resolver = _References(session, visible)
    return all(resolver.replace(text) == target for text, target in answers.conditional.items())


def _write_entries(
    service: RecordService,
    session: WriteSession,
    entries: list[Entry],
    base_url: str,
    access: BundleAccess | None,
) -> None:
    for entry in entries:
        if entry.matched is not None:
            if access is not None:
                access.read_check(entry.matched)
            entry.response = _response(WriteResult(200, entry.matched), base_url)
    # Each entry's references are checked with all the others' at the end: an entry may
    # refer to one written after it, or delete something along with all that refers to it.
    written: dict[tuple[str, str], str] = {}
    with service.checks_at_end(session, written.get):
        for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
            if entry.response:
                continue
            try:
                entry.response = _perform(
                    service, session, entry, base_url, in_transaction=True, access=access
                )
            except FhirError as error:
                raise error.at(entry.where) if not _has_place(error) else error from None
            written.update(_written_by(entry))


def _written_by(entry: Entry) -> dict[tuple[str, str], str]:
    """Return {(type, id): where} for what an entry wrote, to place issues found later."""
    if entry.method == "DELETE" and entry.id:
        return {(entry.resource_type, entry.id): f"{entry.where}.request.url"}
    location = (entry.response or {}).get("response", {}).get("location", "")
    parts = location.split("/")
    if len(parts) >= 2:
        return {(parts[0], parts[1]): f"{entry.where}.resource"}
    return {}


def _has_place(error: FhirError) -> bool:
    return all(
        issue.expression and issue.expression[0].startswith("Bundle.") for issue in error.issues
    )


def _refuse_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("PUT", "DELETE", "PATCH") and entry.id:
            key = f"{entry.resource_type}/{entry.id}"
            if key in seen:
                raise InvalidRequest(
                    Issue(
                        f"{key} appears in entries {seen[key]} and {entry.index}; a transaction may change a resource once",
                        expression=(f"{entry.where}.request.url",),
                    )
                )
            seen[key] = entry.index


def _conditional_match(
    session: ReadSession,
    resource_type: str,
    query: str,
    where: str,
    visible: SearchLimit | None = None,
) -> StoredVersion | None:
    parsed = parse_search(resource_type, query, strict=True)
    if isinstance(session, WriteSession):
        session.lock(f"{resource_type}?{query}")
    too_many = Issue(
        f"ifNoneExist {query!r} matches more than one {resource_type}",
        code="multiple-matches",
        expression=(f"{where}.request.ifNoneExist",),
    )
    try:
        match = conditional_match(session, parsed, visible, "create", too_many)
    except FhirError as error:
        raise error.at(f"{where}.request.ifNoneExist") if not _has_place(error) else error from None
    return session.current(resource_type, match) if match is not None else None


class _References:
    """Rewrites urn:uuid / fullUrl references and resolves conditional references."""

    def __init__(self, session: ReadSession, visible: SearchLimit | None = None) -> None:
        self.session = session
        self.visible = visible
        self.targets: dict[str, str] = {}
        self.conditional: dict[str, str] = {}
        self.failed: str | None = None

    def map(self, full_url: str, target: str) -> None:
        self.targets[full_url] = target

    def rewrite(self, resources: list[Any], wheres: list[str]) -> list[Any]:
        """Return resources with every reference resolved; errors name the entry."""
        try:
            rewritten: list[Any] = rewrite_references(resources, self.replace)
            return rewritten
        except FhirError as error:
            where = self._entry_holding(resources, wheres)
            raise error.at(where) from None

    def replace(self, text: str) -> str | None:
        target = self.targets.get(text)
        if target is not None:
            return target
        conditional = conditional_reference(text)
        if conditional is None:
            return None
        cached = self.conditional.get(text)
        if cached is not None:
            return cached
        self.failed = text
        resource_type, query = conditional
        parsed = parse_search(resource_type, query, strict=True)
        # A conditional reference searches its type, as the caller might have directly.
        match = conditional_match(
            self.session,
            parsed,
            self.visible,
            "search-type",
            Issue(
                f"the conditional reference {text!r} matches more than one resource",
                code="multiple-matches",
            ),
        )
        if match is None:
            raise NotFound(
                Issue(
                    f"the conditional reference {text!r} matches no resource: what it names "
                    f"{UNRESOLVED}",
                    code="not-found",
                )
            )
        target = f"{resource_type}/{match}"
        self.conditional[text] = target
        self.failed = None
        return target

    def _entry_holding(self, resources: list[Any], wheres: list[str]) -> str:
        for resource, where in zip(resources, wheres, strict=True):
            if any(ref["reference"] == self.failed for ref in iter_references(resource)):
                return where
        return "Bundle.entry"


def _perform(
    service: RecordService,
    session: WriteSession,
    entry: Entry,
    base_url: str,
    *,
    in_transaction: bool,
    access: BundleAccess | None = None,
) -> dict[str, Any]:
    """Carry out one entry inside session and return its response entry."""
    guard = access.guard if access is not None else None
    visible = access.visible if access is not None else None
    if entry.method == "POST":
        assert entry.resource is not None
        result = service.create_in(
            session,
            entry.resource_type,
            entry.resource,
            if_none_exist=None if in_transaction else entry.if_none_exist,
            id=entry.id if in_transaction else None,
            guard=guard,
            prepared=entry.prepared,
            visible=visible,
        )
        return _response(result, base_url)
    if entry.method == "PUT":
        assert entry.resource is not None
        if entry.id:
            result = service.update_in(
                session,
                entry.resource_type,
                entry.id,
                entry.resource,
                if_match=entry.if_match,
                guard=guard,
                prepared=entry.prepared,
            )
        elif entry.query:
            result = service.conditional_update_in(
                session,
                entry.resource_type,
                entry.query,
                entry.resource,
                entry.if_match,
                guard,
                visible,
            )
        else:
            raise InvalidRequest(
                Issue(
                    "a PUT entry's url must name Type/id or Type?search",
                    expression=(f"{entry.where}.request.url",),
                )
            )
        return _response(result, base_url)
    if entry.method == "PATCH":
        if not entry.id:
            raise InvalidRequest(
                Issue(
                    "a PATCH entry's url must name Type/id",
                    expression=(f"{entry.where}.request.url",),
                )
            )
        operations = _patch_operations(entry)
        return _response(
            service.patch_in(
                session,
                entry.resource_type,
                entry.id,
                operations,
                if_match=entry.if_match,
                guard=guard,
            ),
            base_url,
        )
    if entry.method == "DELETE":
        if entry.id:
            result = service.delete_in(
                session, entry.resource_type, entry.id, if_match=entry.if_match, guard=guard
            )
        elif entry.query:
            parsed = parse_search(entry.resource_type, entry.query, strict=True)
            match = conditional_match(
                session,
                parsed,
                visible,
                "delete",
                Issue(
                    f"{entry.url} matches more than one resource",
                    code="multiple-matches",
                    expression=(f"{entry.where}.request.url",),
                ),
            )
            result = (
                service.delete_in(session, entry.resource_type, match, guard=guard)
                if match is not None
                else WriteResult(204, None)
            )
        else:
            raise InvalidRequest(
                Issue(
                    "a DELETE entry's url must name Type/id or Type?search",
                    expression=(f"{entry.where}.request.url",),
                )
            )
        return {"response": {"status": "204 No Content"}}
    # GET / HEAD
    if entry.id and entry.version:
        stored = service.vread(entry.resource_type, entry.id, entry.version, session)
    elif entry.id:
        stored = service.read(entry.resource_type, entry.id, session)
    else:
        if access is not None:
            raise Forbidden(
                Issue(
                    "searches inside Bundles are for system accounts; search with GET instead",
                    code="forbidden",
                    expression=(f"{entry.where}.request.url",),
                )
            )
        query = parse_search(entry.resource_type, entry.query or "")
        page = service.search(query, session)
        found = bundle(
            "searchset",
            [
                entry_for(
                    f"{base_url}/{v.resource_type}/{v.id}", v.content, search={"mode": "match"}
                )
                for v in page.matches
            ],
            total=page.total,
        )
        return {"resource": found, "response": {"status": "200 OK"}}
    if access is not None:
        access.read_check(stored)
    return _response(WriteResult(200, stored), base_url, with_resource=True)


def _patch_operations(entry: Entry) -> list[Any] | dict[str, Any]:
    # In a Bundle a JSON Patch travels as a Binary whose data is the base64 patch;
    # a FHIRPath Patch travels as the Parameters itself.
    resource = entry.resource
    if resource and resource.get("resourceType") == "Parameters":
        return resource
    if resource and resource.get("resourceType") == "Binary" and "data" in resource:
        data = resource["data"]
        operations = None
        if isinstance(data, str):
            try:
                operations = parse_json(base64.b64decode(data))
            except ValueError:  # not base64
                operations = None
            except InvalidRequest as error:  # not JSON, too deep, or holding a NUL
                raise InvalidRequest(
                    Issue(
                        f"the JSON Patch in this entry's Binary is refused: {error}",
                        expression=(f"{entry.where}.resource.data",),
                    )
                ) from None
        if isinstance(operations, list):
            return operations
    raise InvalidRequest(
        Issue(
            "a PATCH entry carries a FHIRPath Patch Parameters, or a Binary whose data is"
            " a base64 JSON Patch array",
            expression=(f"{entry.where}.resource",),
        )
    )


_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


def _response(result: WriteResult, base_url: str, *, with_resource: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(result.status, str(result.status))}
    out: dict[str, Any] = {}
    stored = result.stored
    if stored is not None:
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        response["etag"] = f'W/"{stored.version_id}"'
        response["lastModified"] = stored.last_updated
        out["fullUrl"] = f"{base_url}/{stored.resource_type}/{stored.id}"
        if with_resource and stored.content is not None:
            out["resource"] = json_text.loads(stored.content)
    out["response"] = response
    return out


# --- batch --------------------------------------------------------------------------------


def _batch(
    service: RecordService, raw_entries: list[Any], base_url: str, access: BundleAccess | None
) -> dict[str, Any]:
    responses: list[dict[str, Any]] = []
    with service.writing() as session:
        resolver = _References(session, access.visible if access is not None else None)
        for index, raw in enumerate(raw_entries):
            try:
                entry = _parse_entry(index, raw, base_url)
                if entry.resource is not None and entry.method in ("POST", "PUT"):
                    validate_resource(entry.resource, entry.resource_type)
                with session.savepoint():
                    if entry.resource is not None:
                        entry.resource = resolver.rewrite(
                            [entry.resource], [f"{entry.where}.resource"]
                        )[0]
                    response = _perform(
                        service, session, entry, base_url, in_transaction=False, access=access
                    )
                if entry.full_url and entry.method in ("POST", "PUT") and "fullUrl" in response:
                    resolver.map(entry.full_url, response["fullUrl"][len(base_url) + 1 :])
                responses.append(response)
            except FhirError as error:
                placed = (
                    error.at(f"Bundle.entry[{index}].resource") if not _has_place(error) else error
                )
                responses.append(
                    {
                        "response": {
                            "status": f"{error.status} {_reason(error.status)}",
                            "outcome": operation_outcome(*placed.issues),
                        }
                    }
                )
    return bundle("batch-response", responses)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
