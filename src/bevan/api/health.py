"""`GET /healthz` and `GET /readyz`: is the process up, and can it answer from its database.

Both are for load balancers and orchestrators: unauthenticated, unaudited, and saying
nothing about the record beyond whether it can be reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("bevan.health")


def health_routes(database_ready: Callable[[], str | None]) -> list[Route]:
    """Return the two probe routes; database_ready gives None when the database can be
    used, else a short reason."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "up"})

    async def readyz(request: Request) -> Response:
        try:
            problem = database_ready()
        except Exception as error:  # an unreachable database is the answer, not a fault
            log.warning("readiness check failed: %s", error)
            problem = "the database cannot be reached"
        if problem is not None:
            return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
