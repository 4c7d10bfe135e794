"""The request log: one JSON line per request, for operators and their log collectors.

It names the method, the path, the query parameters' names (never their values, which
can be an NHS number or a name), the status, when and how long, who asked (the token's
subject, once the FHIR layer has authenticated it) and a request id, which is also sent
back as `X-Request-Id` so a user's report can be matched to its line. The audit trail,
not this log, is the record of who saw what.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bevan.requests")


def send_request_log_to_stdout() -> None:
    """Write the request log's lines, bare, to stdout (once per process), where log
    collectors expect a service's records; the server's own messages go to stderr."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class RequestLog:
    """ASGI middleware: give each request an id and log one line when it is answered."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500  # if the app fails before it answers
        written = False

        def write() -> None:
            nonlocal written
            if self.enabled and not written:
                written = True
                line = log_line(scope, status, time.perf_counter() - started, request_id)
                log.info(line.decode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                write()  # before the client can see the end of its answer
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            write()


def log_line(scope: Scope, status: int, seconds: float, request_id: str) -> bytes:
    """Return the JSON line for one answered request."""
    query = scope.get("query_string", b"").decode("latin-1")
    names = sorted({name for name, _ in parse_qsl(query, keep_blank_values=True)})
    state = scope.get("state", {})
    return orjson.dumps(
        {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "query": names,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "user": state.get("user_id"),
            "client": scope["client"][0] if scope.get("client") else None,
        }
    )
