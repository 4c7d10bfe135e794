"""What every FHIR handler receives, and the wrapper that turns errors into outcomes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import orjson
from anyio import CapacityLimiter
from starlette.requests import Request
from starlette.responses import Response

from bevan.api.loop_reads import LoopReadPolicy
from bevan.api.negotiation import Prefer, check_response_format, parse_prefer, wants_pretty
from bevan.api.responses import error_response, internal_error_response
from bevan.bulk.jobs import BulkJobs
from bevan.config import DEFAULT_MAX_PATIENT_BODY
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import (
    FhirError,
    Gone,
    InvalidRequest,
    Issue,
    NhsNumberHeld,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from bevan.fhir.ids import is_valid_id
from bevan.fhir.patient_references import patients_named
from bevan.fhir.search import Criterion, SearchQuery
from bevan.monitoring.delivery import SubscriptionDelivery
from bevan.monitoring.subscriptions import SubscriptionService
from bevan.records.bundles import BundleAccess
from bevan.records.service import RecordService, SearchLimit, WriteGuard, parse_json
from bevan.security.access import AccessContext, AccessPolicy
from bevan.security.audit import (
    AuditRecord,
    action_for,
    bounded,
    outcome_for,
    patients_in,
)
from bevan.security.client_address import TrustedProxies, client_address
from bevan.security.search_limits import limited_search
from bevan.security.tokens import Principal, TokenAuthority, TokenError
from bevan.security.trail import AuditNotRecorded, AuditTrail
from bevan.store.group import GroupWriter
from bevan.store.versions import StoredVersion

log = logging.getLogger("bevan.api")

# Offloaded requests (searches, Bundles, history) run on at most this many threads; the
# rest wait their turn on the event loop. Python runs one thread at a time, so more
# threads add switching and database connections, not speed.
OFFLOAD_THREADS = 8

# A write whose body is larger than this does not join the group commit: it is parsed,
# validated and written on a thread of its own, in its own transaction, so the small
# writes queued behind it are not held while one writer thread works through it (see
# benchmarks/RESULTS.md: a 5 MB write held every other write for seconds).
LARGE_WRITE_BYTES = 128 * 1024
# Roles acting for one person, whose bodies are held to max_patient_body_bytes.
PERSONAL_ROLES = frozenset({"patient", "device"})


@dataclass(frozen=True)
class Services:
    """What the app factory wires together for the handlers."""

    records: RecordService
    tokens: TokenAuthority
    policy: AccessPolicy
    trail: AuditTrail
    writer: GroupWriter
    loop_reads: LoopReadPolicy
    max_body_bytes: int
    max_patient_body_bytes: int = DEFAULT_MAX_PATIENT_BODY
    offload_limiter: CapacityLimiter = field(
        default_factory=lambda: CapacityLimiter(OFFLOAD_THREADS)
    )
    # Offloaded Bundles and large writes run one at a time: two on one interpreter only
    # take turns, and the one writing would wait on the other at every database call.
    bundle_limiter: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(1))
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    # The server's own base URL, named as the audit source (not the client's Host header).
    source: str = ""
    # Subscriptions and their delivery (monitoring/), when the app has them.
    subscriptions: SubscriptionService | None = None
    delivery: SubscriptionDelivery | None = None
    # Asynchronous bulk requests ($export, $import); None where they are not served.
    bulk: BulkJobs | None = None

    def body_limit(self, principal: Principal | None) -> int:
        """Return the largest body principal may send: a patient's or a device's is
        bounded more tightly than staff's and systems'."""
        if principal is not None and principal.role in PERSONAL_ROLES:
            return min(self.max_patient_body_bytes, self.max_body_bytes)
        return self.max_body_bytes


@dataclass(frozen=True)
class FhirRequest:
    """A FHIR request after authentication and body reading."""

    request: Request
    principal: Principal | None
    body: bytes
    prefer: Prefer
    pretty: bool
    base_url: str
    services: Services
    access: AccessContext | None = None

    @property
    def records(self) -> RecordService:
        return self.services.records

    # --- access control (every handler asks before it answers) ----------------------------

    @property
    def caller(self) -> AccessContext:
        if self.access is None:
            raise Unauthorized(
                Issue("this request needs an Authorization: Bearer token", code="login")
            )
        return self.access

    def allow(self, resource_type: str, interaction: str) -> None:
        """Refuse (403) an interaction the caller's role or scopes never allow on a type."""
        self.services.policy.check_type(self.caller, resource_type, interaction)

    def allow_stored(self, stored: StoredVersion, interaction: str = "read") -> None:
        """Refuse (403) a stored resource the caller may not see."""
        if stored.content is not None and not self.unlimited():
            self.services.policy.check_resource(
                self.caller, orjson.loads(stored.content), interaction
            )

    def allow_patient(self, patient_id: str) -> None:
        self.services.policy.check_patient(self.caller, patient_id)

    def saw(self, found: Iterable[StoredVersion]) -> None:
        """Note the patients whose records an answer shows, for its audit entry."""
        caller = self.caller
        base = self.records.base_url
        for stored in found:
            if stored.content is not None:
                caller.patients |= patients_named(orjson.loads(stored.content), base).ids

    def may_see(self, stored: StoredVersion) -> bool:
        """Return True if the caller may read this stored version (its type, scopes,
        patients and sensitivity): what includes, $everything and history may show."""
        if stored.content is None or self.unlimited():
            return True
        return self.services.policy.may_see(self.caller, orjson.loads(stored.content))

    def may_see_version(self, stored: StoredVersion, current: StoredVersion | None) -> bool:
        """Return True if the caller may see an old version: judged as itself, under the
        current version's sensitivity labels (a record restricted now is restricted in
        every version)."""
        if stored.content is None or self.unlimited():
            return True
        return self.services.policy.may_see(
            self.caller, self.services.policy.under_current_labels(stored, current)
        )

    def current(self, resource_type: str, id: str) -> StoredVersion | None:
        """Return the live version of a resource, or None if it is deleted or unknown."""
        try:
            return self.records.read(resource_type, id)
        except (NotFound, Gone):
            return None

    def allow_version(self, stored: StoredVersion, current: StoredVersion | None) -> None:
        """Refuse (403) an old version the caller may not see (see may_see_version)."""
        if stored.content is None or self.unlimited():
            return
        self.services.policy.check_resource(
            self.caller, self.services.policy.under_current_labels(stored, current), "read"
        )

    def restrictions(self, resource_type: str) -> tuple[Criterion, ...]:
        return self.services.policy.search_restrictions(self.caller, resource_type)

    def visible(self, query: SearchQuery, interaction: str = "search-type") -> SearchQuery:
        """Return query as the caller may run it for interaction: its type's restrictions
        ANDed on and every chain and `_has` limited the same way (403 for a type they may
        not search, or may not use for interaction)."""
        if self.unlimited():
            return query
        return limited_search(self.services.policy, self.caller, query, interaction)

    def search_limit(self) -> SearchLimit | None:
        """Return what narrows conditional matches to what the caller may see (None for
        an unlimited system account)."""
        return None if self.unlimited() else self.visible

    def unlimited(self) -> bool:
        """Return True for a system account whose scopes allow everything."""
        caller = self.caller
        return caller.role == "system" and bool(_UNLIMITED & set(caller.principal.scope.split()))

    def write_guard(self, interaction_hint: str | None = None) -> WriteGuard | None:
        """Return the guard the record service asks before each write (None for an
        unlimited system account: nothing to check, and no current version to load)."""
        if self.unlimited():
            return None
        policy, caller = self.services.policy, self.caller

        def guard(
            interaction: str,
            resource_type: str,
            old: dict[str, Any] | None,
            new: dict[str, Any] | None,
        ) -> None:
            policy.check_type(caller, resource_type, interaction_hint or interaction)
            if old is not None:
                policy.check_resource(caller, old, interaction)
            if new is not None:
                policy.check_resource(caller, new, interaction)
            policy.check_edit(caller, old, new)

        return guard

    def bundle_access(self) -> BundleAccess | None:
        """The rights applied to each Bundle entry (None: a system account's, unlimited)."""
        guard = self.write_guard()
        if guard is None:
            return None

        def read_check(stored: StoredVersion) -> None:
            self.allow(stored.resource_type, "read")
            # The entry may be a vread: judged under the current version's labels too.
            self.allow_version(stored, self.current(stored.resource_type, stored.id))

        return BundleAccess(guard, read_check, self.search_limit())

    def path(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value


Handler = Callable[[FhirRequest], Response]

_UNLIMITED = frozenset({"system/*.*", "system/*.cruds", "system/*.cruds*"})


_DEFAULT_PORTS = {"http": 80, "https": 443}


def base_url_of(request: Request) -> str:
    """Return the FHIR base URL as the client addressed it (…/fhir): its Host header,
    else the server's address. Read from the ASGI scope: building `request.url` (a
    parsed URL) for this cost more than the rest of reading a small resource."""
    scope = request.scope
    scheme = scope.get("scheme", "http")
    root = None
    for key, value in scope["headers"]:
        if key == b"host":
            root = f"{scheme}://{value.decode('latin-1')}"
            break
    if root is None:
        host, port = scope.get("server") or ("localhost", _DEFAULT_PORTS.get(scheme, 80))
        shown = "" if port == _DEFAULT_PORTS.get(scheme) else f":{port}"
        root = f"{scheme}://{host}{shown}"
    base_path: str = request.app.state.settings.base_path
    return root + base_path


def fhir_endpoint(
    handler: Handler,
    *,
    interaction: str,
    public: bool = False,
    offload: bool | Callable[[Request], bool] = False,
    writes: bool | Callable[[Request], bool] = False,
    one_at_a_time: bool = False,
    names_patients: bool | Callable[[Request], bool] = True,
    serves: frozenset[str] = frozenset(),
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a synchronous handler: authenticate, read the body, run it, audit it, and
    answer every failure with an OperationOutcome (never a bare 500).

    Single-resource interactions run on the event loop: they are quick, and handing
    them to a thread cost far more than the read itself (benchmarks/crud.py shows it in
    read throughput). Work that can take long (searches, Bundles,
    history, $everything) is offloaded to the thread pool so it does not hold up everyone
    else; a read of that kind may first be tried on the loop (see Services.loop_reads).

    Every request, allowed or refused, is audited before its answer is sent; if the
    audit entry cannot be written, the answer is an error instead. The entry names every
    patient the request's body or answer names, unless names_patients is False (the
    audit trail's own listings, which name patients without touching their records).
    serves names media types the handler answers with besides FHIR JSON (Bulk Data's
    NDJSON files), which a client's Accept header may ask for.
    """

    async def endpoint(request: Request) -> Response:
        pretty = wants_pretty(request)
        services: Services = request.app.state.services
        access: AccessContext | None = None
        problem: str | None = None
        body = b""
        try:
            principal = None if public else authenticate(request, services.tokens)
            if principal is not None:
                request.state.user_id = principal.subject  # for the request log
                access = AccessContext(principal, request.headers.get("x-bevan-break-glass"))
            check_response_format(request, serves)
            body = await read_body(request, services.body_limit(principal))
            fhir_request = FhirRequest(
                request,
                principal,
                body,
                parse_prefer(request),
                pretty,
                base_url_of(request),
                services,
                access,
            )
            if _applies(writes, request) and len(body) > LARGE_WRITE_BYTES:
                response = await anyio.to_thread.run_sync(
                    handler, fhir_request, limiter=services.bundle_limiter
                )
            elif _applies(writes, request):
                response = await services.writer.run(lambda: handler(fhir_request))
            elif _applies(offload, request):
                quick = services.loop_reads.try_on_the_loop(request, lambda: handler(fhir_request))
                if quick is not None:
                    response = quick
                else:
                    limiter = services.bundle_limiter if one_at_a_time else services.offload_limiter
                    response = await anyio.to_thread.run_sync(
                        handler, fhir_request, limiter=limiter
                    )
            else:
                response = handler(fhir_request)
        except FhirError as error:
            if isinstance(error, NhsNumberHeld) and _may_read_holder(services, access, error):
                error = error.naming_holder()
            problem = "; ".join(i.diagnostics for i in error.issues)
            response = error_response(error, pretty=pretty)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception(
                "request %s %s failed (reference %s)", request.method, request.url.path, reference
            )
            problem = f"server error, reference {reference}"
            response = internal_error_response(reference)
        record = audit_record(
            request,
            interaction,
            access,
            response,
            problem,
            body,
            names_patients=_applies(names_patients, request),
        )
        return await audited(request, record, response)

    return endpoint


async def audited(request: Request, record: AuditRecord, response: Response) -> Response:
    """Return response once its audit record is committed, else a 503 withholding it."""
    services: Services = request.app.state.services
    try:
        await services.trail.record(record)
    except AuditNotRecorded:
        log.exception("request %s %s could not be audited", request.method, request.url.path)
        return error_response(
            FhirError(
                Issue(
                    "the request could not be audited, so its answer is withheld; try again",
                    code="transient",
                    severity="fatal",
                ),
                status=503,
            )
        )
    return response


def _may_read_holder(services: Any, access: AccessContext | None, error: NhsNumberHeld) -> bool:
    """Return True if the caller may read the Patient holding an NHS number they gave."""
    if access is None or error.holder is None:
        return False
    try:
        return bool(services.policy.may_see(access, error.holder))
    except FhirError:  # any refusal while asking means no
        return False


def _applies(flag: bool | Callable[[Request], bool], request: Request) -> bool:
    """Return a route flag's answer for this request (a constant or a predicate)."""
    return flag(request) if callable(flag) else flag


def audit_record(
    request: Request,
    interaction: str,
    access: AccessContext | None,
    response: Response,
    problem: str | None,
    body: bytes = b"",
    *,
    names_patients: bool = True,
) -> AuditRecord:
    """Return the audit entry for one answered request.

    What a caller chose (the query, the path, the user agent, the request id, the
    diagnostics that echo them) is cut short when the caller is not authenticated or was
    refused, and the entry says so: a stranger's requests cannot grow the trail by more
    than a little each.
    """
    services: Services = request.app.state.services
    status = response.status_code
    principal = access.principal if access is not None else None
    params = request.path_params
    resources: tuple[str, ...] = ()
    location = response.headers.get("location")
    if location and "/fhir/" in location:
        resources = (location.split("/fhir/", 1)[1].split("/_history", 1)[0],)
    elif "type" in params and is_valid_id(params.get("id", "")):
        resources = (f"{params['type']}/{params['id']}",)
    patients = set(access.patients) if access is not None else set()
    if params.get("type") == "Patient" and is_valid_id(params.get("id", "")):
        patients.add(params["id"])
    if names_patients and status < 400:
        patients |= patients_in(body)
        patients |= patients_in(getattr(response, "body", b"") or b"")
    patient_id = next(iter(patients)) if len(patients) == 1 else None
    broke_glass = bool(access and access.broke_glass_for)
    query = request.scope.get("query_string", b"").decode("latin-1")
    if request.method == "POST" and request.scope.get("path", "").endswith("/_search") and body:
        query = (
            f"{query}&{body.decode('utf-8', 'replace')}"
            if query
            else body.decode("utf-8", "replace")
        )
    texts: dict[str, str | None] = {
        "query": query or None,
        "path": request.scope.get("path"),
        "user-agent": request.headers.get("user-agent"),
        "request-id": request.headers.get("x-request-id"),
        "outcome": problem or "",
    }
    truncated: list[str] = []
    if principal is None or status in (401, 403, 404, 405, 413, 414):
        for name, text in texts.items():
            texts[name], cut = bounded(text)
            if cut:
                truncated.append(name)
    return AuditRecord(
        recorded=now_instant(),
        user_id=principal.subject if principal else None,
        role=principal.role if principal else None,
        organisation=principal.organisation if principal else None,
        client_address=client_address(request.scope, services.proxies),
        action=action_for(interaction),
        interaction=interaction,
        outcome=outcome_for(status),
        outcome_text=texts["outcome"] or (access.summary if access and status < 400 else "") or "",
        http_status=status,
        resources=resources,
        query=texts["query"],
        patient_id=patient_id,
        other_patients=tuple(sorted(patients)) if patient_id is None else (),
        purpose_of_use="ETREAT" if broke_glass else "TREAT",
        break_glass_reason=access.break_glass_reason if broke_glass and access else None,
        request_id=texts["request-id"],
        source=services.source or base_url_of(request),
        method=request.method,
        path=texts["path"],
        user_agent=texts["user-agent"],
        truncated=tuple(truncated),
    )


def authenticate(request: Request, tokens: TokenAuthority) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(Issue("this request needs an Authorization: Bearer token", code="login"))
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(Issue("the Authorization header must be 'Bearer <token>'", code="login"))
    try:
        return tokens.verify(token.strip())
    except TokenError as error:
        raise Unauthorized(Issue(str(error), code="login")) from None


async def read_body(request: Request, limit: int) -> bytes:
    """Return the request body, refusing (413) anything over limit before reading it all."""
    if request.method in ("GET", "HEAD", "DELETE"):
        return b""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return f"the body is larger than this server accepts from you ({size}); split it into smaller requests"


def json_body(fhir: FhirRequest) -> Any:
    """Return the parsed JSON body, or raise InvalidRequest if it is empty or not JSON."""
    if not fhir.body.strip():
        raise InvalidRequest(
            Issue("the request has no body; send a FHIR resource as JSON", code="required")
        )
    return parse_json(fhir.body)
