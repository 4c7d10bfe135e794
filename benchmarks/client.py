"""A cheap asyncio FHIR client: one aiohttp session, a keep-alive pool, timings per request."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from benchmarks.measure import Latencies, Refusals

FHIR_JSON = "application/fhir+json"
T = TypeVar("T")


class StopLoad(Exception):
    """The timed window is over; the client issues no further requests."""


class FhirClient:
    """Sends requests to a FHIR base URL and records latency and refusals for each one.

    Requests whose status is 300 or more are counted in `refusals` with their
    OperationOutcome text; every answered request is timed under its operation name.
    """

    def __init__(self, base_url: str, token: str, connections: int) -> None:
        self.base_url = base_url
        self.connections = connections
        self.latencies = Latencies()
        self.refusals = Refusals()
        self.stop_at: float | None = None
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": FHIR_JSON,
            "Content-Type": FHIR_JSON,
        }
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FhirClient:
        connector = aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=900),
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        operation: str,
        method: str,
        path: str,
        body: bytes | None = None,
        label: str | None = None,
    ) -> tuple[int, bytes]:
        """Return (status, body) of one request; status 0 if no answer came back.

        Refusals are counted under label (default: the method and the path's first part).
        """
        if self.stop_at is not None and time.perf_counter() >= self.stop_at:
            raise StopLoad
        assert self._session is not None, "use FhirClient as an async context manager"
        label = label or f"{method} {path.split('/', 1)[0] or '/'}"
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, f"{self.base_url}/{path}" if path else self.base_url, data=body
            ) as answer:
                payload = await answer.read()
                status = answer.status
        except (TimeoutError, aiohttp.ClientError) as error:
            self.refusals.add_failure(label, error)
            return 0, b""
        self.latencies.add(operation, time.perf_counter() - started)
        if status >= 300:
            self.refusals.add(label, status, payload)
        return status, payload


async def report_progress(
    describe: Callable[[float], str], interval: float, started: float
) -> None:
    """Print describe(elapsed seconds) to stderr every interval seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        print(describe(time.perf_counter() - started), file=sys.stderr, flush=True)


def run_event_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Return main()'s result, run on uvloop when it is installed (it costs less CPU)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
