"""The ASGI app factory: settings in, a wired application out."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from bevan.api.context import Services
from bevan.api.health import health_routes
from bevan.api.loop_reads import LoopReadPolicy
from bevan.api.metrics import RequestMetrics, ServerMetrics, metrics_route
from bevan.api.oauth import oauth_routes
from bevan.api.request_log import RequestLog, send_request_log_to_stdout
from bevan.api.routes import fhir_routes, method_not_allowed, not_found, websocket_routes
from bevan.api.sign_in_audit import audited_routes
from bevan.bulk.jobs import BulkJobs
from bevan.config import Settings
from bevan.fhir.validation import warm_up
from bevan.monitoring.codes import SYSTEM_PRINCIPAL
from bevan.monitoring.delivery import SubscriptionDelivery
from bevan.monitoring.overdue import OverdueLook, look_for_overdue
from bevan.monitoring.scoring import ScoringOnArrival
from bevan.monitoring.subscriptions import SubscriptionsBesideTheRecord, SubscriptionService
from bevan.records.service import RecordService
from bevan.records.write_rules import WriteRule
from bevan.scheduling.booking import BookingRule
from bevan.scheduling.diary import patient_of
from bevan.scheduling.offer_expiry import end_lapsed_offers_every
from bevan.scheduling.waiting_list import OFFER_ENDED_REASON
from bevan.security.access import AccessPolicy
from bevan.security.audit import AuditRecord
from bevan.security.audit_key import load_audit_key
from bevan.security.client_address import ForwardedHeaders, TrustedProxies
from bevan.security.disabled_accounts import DisabledAccounts
from bevan.security.oauth_clients import ClientRegistry
from bevan.security.oauth_flows import AuthorizationServer
from bevan.security.revocation import RevocationList
from bevan.security.service_audit import SCHEDULER, service_update, system_write_records
from bevan.security.subscriber_access import SubscriberAccess
from bevan.security.tokens import TokenAuthority
from bevan.security.trail import AuditTrail
from bevan.security.users import UserDirectory
from bevan.store.access import BreakGlassLedger
from bevan.store.audit import AuditLog
from bevan.store.bulk_jobs import BulkJobTable
from bevan.store.group import GroupWriter
from bevan.store.record_store import RecordStore
from bevan.store.subscriptions import SubscriptionTable
from bevan.web.page_access import UserNames, WebApp
from bevan.web.routes import html_not_found, web_routes
from bevan.web.sessions import SessionKeeper, session_key
from bevan.web.templating import Pages


def write_rules(settings: Settings) -> list[WriteRule]:
    """Return the rules the services attach to writes of the record (the NEWS2 score
    of a completed set, a slot taken by a booking): every door that writes, the API, the
    loader and the web app, goes through the one RecordService that holds them."""
    return [
        ScoringOnArrival(timedelta(minutes=settings.news2_window_minutes)),
        BookingRule(timedelta(minutes=settings.offer_window_minutes)),
        SubscriptionsBesideTheRecord(),
    ]


log = logging.getLogger("bevan.app")


def overdue_audit(settings: Settings, look: OverdueLook) -> list[AuditRecord]:
    """Return the audit entries of the Tasks an overdue look raised, by the virtual
    ward's system principal."""
    return system_write_records(
        SYSTEM_PRINCIPAL,
        [(f"Task/{task}", patient) for task, patient in look.raised],
        settings.base_url,
        "virtual ward readings overdue",
    )


def record_system_writes(settings: Settings, store: RecordStore, look: OverdueLook) -> None:
    """Audit, now, what an overdue look run outside the server raised."""
    records = overdue_audit(settings, look)
    if records:
        log_ = AuditLog(store.engine, store.write_lock, key=load_audit_key(settings.data_dir))
        AuditTrail(log_).record_sync(records)


async def look_for_overdue_every(
    seconds: float, settings: Settings, records: RecordService, trail: AuditTrail
) -> None:
    """Look for overdue readings every so many seconds, off the event loop, auditing
    each Task raised; a failed look is logged and the next one tried."""
    while True:
        await anyio.sleep(seconds)
        try:
            look = await anyio.to_thread.run_sync(look_for_overdue, records)
            for record in overdue_audit(settings, look):
                await trail.record(record)
        except Exception:
            log.exception("the look for overdue virtual ward readings failed")


def record_service(settings: Settings, store: RecordStore) -> RecordService:
    """Return the record service for settings over store, with the services' write rules."""
    return RecordService(
        store,
        settings.base_url,
        referential_integrity=settings.referential_integrity,
        rules=write_rules(settings),
    )


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
    records = record_service(settings, store)
    revocations = RevocationList.on(store.engine)
    disabled = DisabledAccounts.on(store.engine)
    tokens = TokenAuthority.in_directory(
        settings.data_dir, revocations.is_revoked, disabled.is_disabled
    )
    proxies = TrustedProxies.parse(settings.trusted_proxies)
    policy = AccessPolicy(records, BreakGlassLedger(store))
    trail = trail or AuditTrail(
        AuditLog(store.engine, store.write_lock, key=load_audit_key(settings.data_dir))
    )
    subscriptions = SubscriptionService(
        SubscriptionTable(store), settings.subscription_endpoints, settings.base_url
    )
    delivery = SubscriptionDelivery(
        subscriptions,
        records,
        SubscriberAccess(
            policy,
            trail,
            disabled=disabled.is_disabled,
            revoked=revocations.is_revoked,
            source=settings.base_url,
        ),
        retry_seconds=settings.subscription_retry_seconds,
        attempts=settings.subscription_attempts,
    )
    services = Services(
        records=records,
        tokens=tokens,
        policy=policy,
        trail=trail,
        writer=GroupWriter(store),
        loop_reads=LoopReadPolicy(store.read_budget),
        max_body_bytes=settings.max_body_bytes,
        proxies=proxies,
        source=settings.base_url,
        max_patient_body_bytes=settings.max_patient_body_bytes,
        subscriptions=subscriptions,
        delivery=delivery,
        bulk=BulkJobs(
            BulkJobTable(store),
            settings.bulk_directory,
            retention_seconds=settings.bulk_retention_hours * 3600,
        ),
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

    users = UserDirectory.on(store.engine)
    clients = ClientRegistry.on(store.engine)
    authorization = AuthorizationServer(tokens, users, clients, revocations, settings.base_url)
    # The web app signs people in as a client of this same authorization server.
    web = WebApp(
        SessionKeeper(
            authorization,
            tokens,
            clients,
            settings.base_url.removesuffix(settings.base_path),
            session_key(settings.data_dir),
        ),
        Pages(),
        UserNames(users),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.trail.start()
        delivery.start()
        async with anyio.create_task_group() as background:
            if settings.overdue_check_seconds > 0:
                background.start_soon(
                    look_for_overdue_every,
                    settings.overdue_check_seconds,
                    settings,
                    records,
                    services.trail,
                )
            expiry = start_offer_expiry(settings, services)
            yield
            if expiry is not None:
                expiry.cancel()
            background.cancel_scope.cancel()
        delivery.stop()
        services.writer.stop()
        await services.trail.stop()
        store.close()

    app = Starlette(
        routes=[
            *health_routes(database_ready),
            *metrics_route(metrics, tokens, settings.metrics_allow),
            # Before the FHIR routes: /fhir/.well-known/... would otherwise match Type/id.
            *audited_routes(
                oauth_routes(tokens, users, clients, revocations, settings.base_url, authorization)
            ),
            *fhir_routes(settings.base_path),
            *websocket_routes(settings.base_path),
            # The web app, at /: after the API, whose routes are matched first.
            *web_routes(),
        ],
        exception_handlers={
            404: html_not_found(not_found, settings.base_path),
            405: method_not_allowed,
        },
        lifespan=lifespan,
        # Forwarded headers first, only when there are proxies to believe: otherwise they
        # change nothing, and a request need not pass through it.
        middleware=([Middleware(ForwardedHeaders, proxies=proxies)] if proxies.networks else [])
        + http_middleware(settings, metrics),
    )
    app.state.settings = settings
    app.state.services = services
    app.state.web = web
    return app


def start_offer_expiry(settings: Settings, services: Services) -> asyncio.Task[None] | None:
    """Start the round that ends lapsed waiting-list offers (each audited as the
    scheduler), unless settings turn it off."""
    if settings.offer_check_seconds <= 0:
        return None

    async def audit(ended: list[dict[str, Any]]) -> None:
        for task in ended:
            await services.trail.record(
                service_update(
                    SCHEDULER,
                    (f"Task/{task['id']}", str((task.get("focus") or {}).get("reference"))),
                    patient_of(task),
                    OFFER_ENDED_REASON,
                    services.source,
                )
            )

    return asyncio.create_task(
        end_lapsed_offers_every(
            settings.offer_check_seconds, services.records, services.writer.run, audit
        )
    )


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
