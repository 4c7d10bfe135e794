"""The ASGI app factory: settings in, a wired application out."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bevan.api.context import Services
from bevan.api.health import health_routes
from bevan.api.loop_reads import LoopReadPolicy
from bevan.api.metrics import RequestMetrics, ServerMetrics, metrics_route
from bevan.api.oauth import oauth_routes
from bevan.api.request_log import RequestLog, send_request_log_to_stdout
from bevan.api.routes import fhir_routes, method_not_allowed, not_found
from bevan.api.sign_in_audit import audited_routes
from bevan.config import Settings
from bevan.fhir.validation import warm_up
from bevan.records.service import RecordService
from bevan.security.access import AccessPolicy
from bevan.security.audit_key import load_audit_key
from bevan.security.client_address import ForwardedHeaders, TrustedProxies
from bevan.security.disabled_accounts import DisabledAccounts
from bevan.security.oauth_clients import ClientRegistry
from bevan.security.revocation import RevocationList
from bevan.security.tokens import TokenAuthority
from bevan.security.trail import AuditTrail
from bevan.security.users import UserDirectory
from bevan.store.access import BreakGlassLedger
from bevan.store.audit import AuditLog
from bevan.store.group import GroupWriter
from bevan.store.record_store import RecordStore


def create_app(
    settings: Settings, store: RecordStore | None = None, *, trail: AuditTrail | None = None
) -> Starlette:
    """Return the Bevan ASGI app for settings (the schema must already be current).

    trail replaces the audit trail written to the database (benchmarks measure the cost
    of auditing with it); there is no setting that turns auditing off.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or RecordStore.from_url(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    records = RecordService(
        store, settings.base_url, referential_integrity=settings.referential_integrity
    )
    revocations = RevocationList.on(store.engine)
    disabled = DisabledAccounts.on(store.engine)
    tokens = TokenAuthority.in_directory(
        settings.data_dir, revocations.is_revoked, disabled.is_disabled
    )
    proxies = TrustedProxies.parse(settings.trusted_proxies)
    services = Services(
        records=records,
        tokens=tokens,
        policy=AccessPolicy(records, BreakGlassLedger(store)),
        trail=trail
        or AuditTrail(
            AuditLog(store.engine, store.write_lock, key=load_audit_key(settings.data_dir))
        ),
        writer=GroupWriter(store),
        loop_reads=LoopReadPolicy(store.read_budget),
        max_body_bytes=settings.max_body_bytes,
        proxies=proxies,
        source=settings.base_url,
        max_patient_body_bytes=settings.max_patient_body_bytes,
    )
    warm_up()
    metrics = ServerMetrics()
    services.writer.observe_batch = metrics.write_batches.observe
    pool = store.engine.pool
    metrics.watch(
        lambda: services.trail.queue_depth,
        lambda: int(getattr(pool, "checkedout", lambda: 0)()),
        lambda: int(getattr(pool, "size", lambda: 0)()),
    )

    def database_ready() -> str | None:
        from bevan.store.migrate import pending  # Alembic: loaded when first asked, not at start

        if pending(store.engine):
            return "the database schema is behind this release: run `bevan db upgrade`"
        return None

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{settings.base_path}/metadata")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.trail.start()
        yield
        services.writer.stop()
        await services.trail.stop()
        store.close()

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            *health_routes(database_ready),
            *metrics_route(metrics, tokens, settings.metrics_allow),
            # Before the FHIR routes: /fhir/.well-known/... would otherwise match Type/id.
            *audited_routes(
                oauth_routes(
                    tokens,
                    UserDirectory.on(store.engine),
                    ClientRegistry.on(store.engine),
                    revocations,
                    settings.base_url,
                )
            ),
            *fhir_routes(settings.base_path),
        ],
        exception_handlers={404: not_found, 405: method_not_allowed},
        lifespan=lifespan,
        # Forwarded headers first, only when there are proxies to believe: otherwise they
        # change nothing, and a request need not pass through it.
        middleware=([Middleware(ForwardedHeaders, proxies=proxies)] if proxies.networks else [])
        + http_middleware(settings, metrics),
    )
    app.state.settings = settings
    app.state.services = services
    return app


def http_middleware(settings: Settings, metrics: ServerMetrics) -> list[Middleware]:
    """Return the middleware around every route, outermost first: the request log (which
    gives each request its id), the request metrics, then CORS for the allowed origins."""
    if settings.request_log:
        send_request_log_to_stdout()
    middleware = [
        Middleware(RequestLog, enabled=settings.request_log),
        Middleware(RequestMetrics, metrics=metrics),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["*"],
                expose_headers=["ETag", "Last-Modified", "Location", "X-Request-Id"],
                max_age=600,
            )
        )
    return middleware


def app_from_environment() -> Starlette:
    """Return the app for BEVAN_* settings (the factory each `serve --workers` process calls)."""
    app = create_app(Settings.from_environment())
    settle_heap()
    return app


# Allocations between collections of the youngest generation (CPython's default: 700),
# and collections of each generation between collections of the next (default: 10).
# A request allocates thousands of short-lived containers (parsed JSON, index rows);
# at the defaults a Bundle's import collected every few entries and walked the older
# generations again and again, a large share of an import's time
# (benchmarks/bundle_import.py). Reference counting still frees everything that is not a cycle at once.
GC_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Exempt what startup built from garbage collection, and collect less often.

    For a long-running process, once its app is built: the schema validator, search
    definitions and compiled statements live as long as the process does.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
