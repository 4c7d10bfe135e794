"""`GET /metrics`: the server's counters in Prometheus text format (prometheus_client).

Requests are counted by route (the route's pattern, `/fhir/{type}/{id}`, never a
resource id or a query) and status, with latency histograms; group-commit batch sizes,
the audit queue's depth and the database pool's checked-out connections are read when
scraped. Each worker process keeps its own figures: with `--workers N` a scrape
reaches one of them.

Only a system-role token may read them, or a scraper at an address the operator allows
(`BEVAN_METRICS_ALLOW`): route names and rates say how the service is used.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bevan.api.context import authenticate
from bevan.api.responses import error_response
from bevan.fhir.errors import FhirError, Forbidden, Issue
from bevan.security.tokens import TokenAuthority

# Group commits hold from one write to the writer's batch limit.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServerMetrics:
    """The figures one server process exposes, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bevan_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "bevan_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route pattern and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.write_batches = Histogram(
            "bevan_group_commit_batch_size",
            "Writes committed together in one group-commit transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.audit_queue = Gauge(
            "bevan_audit_queue_depth",
            "Audit entries waiting for the audit writer's next commit.",
            registry=self.registry,
        )
        self.pool_in_use = Gauge(
            "bevan_database_pool_connections_in_use",
            "Database connections checked out of the store's pool.",
            registry=self.registry,
        )
        self.pool_size = Gauge(
            "bevan_database_pool_size",
            "Connections the store's pool keeps open.",
            registry=self.registry,
        )

    def watch(
        self,
        audit_queue_depth: Callable[[], int],
        pool_in_use: Callable[[], int],
        pool_size: Callable[[], int],
    ) -> None:
        """Read the gauges from these functions whenever the metrics are scraped."""
        self.audit_queue.set_function(audit_queue_depth)
        self.pool_in_use.set_function(pool_in_use)
        self.pool_size.set_function(pool_size)

    def exposition(self) -> bytes:
        """Return every figure in the Prometheus text format."""
        return generate_latest(self.registry)


def route_pattern(scope: Scope) -> str:
    """Return the pattern of the route that answered (`/fhir/{type}/{id}`), or
    "unmatched": a label must not carry ids or grow with every new path."""
    params = scope.get("path_params")
    if scope.get("endpoint") is None or params is None:
        return "unmatched"
    values = {str(value): name for name, value in params.items()}
    segments = [
        "{" + values[segment] + "}" if segment in values else segment
        for segment in scope["path"].split("/")
    ]
    return "/".join(segments)


class RequestMetrics:
    """ASGI middleware: count each request and time it, by route pattern and status."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route, method = route_pattern(scope), scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


def allowed_networks(
    addresses: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Return the networks of BEVAN_METRICS_ALLOW (single addresses become /32 or /128)."""
    return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)


def metrics_route(
    metrics: ServerMetrics, tokens: TokenAuthority, allow: Iterable[str]
) -> list[Route]:
    """Return the `/metrics` route: system tokens and allowed addresses only."""
    networks = allowed_networks(allow)

    def from_allowed_address(request: Request) -> bool:
        if request.client is None or not networks:
            return False
        try:
            address = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        return any(address in network for network in networks)

    async def exposition(request: Request) -> Response:
        if not from_allowed_address(request):
            try:
                principal = authenticate(request, tokens)
                if principal.role != "system":
                    raise Forbidden(
                        Issue("the metrics are for the system role only", code="forbidden")
                    )
            except FhirError as error:
                return error_response(error)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", exposition, methods=["GET"])]
