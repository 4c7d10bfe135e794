"""The websocket of websocket-channel subscriptions, as R4 describes it: connect to
`[base]/$subscription-websocket` with the same `Authorization: Bearer` token as any
request, send `bind [id]` for each of one's own websocket Subscriptions, and receive
`bound [id]`, then `ping [id]` each time a resource its criteria match (and that the
subscriber may read) is written. Binding makes a requested subscription active.

A connection without a valid token is refused before it opens (HTTP 403); a bind the
caller may not make is answered `error [id] [why]` (an unknown id and another user's
read the same). The connection, each bind and each ping are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import anyio.to_thread
from starlette.websockets import WebSocket, WebSocketDisconnect

from bevan.api.context import Services
from bevan.fhir.dates import now_instant
from bevan.fhir.errors import FhirError, Unauthorized
from bevan.security.audit import AuditRecord
from bevan.security.client_address import client_address
from bevan.security.subscriber_access import check_subscriber, may_manage
from bevan.security.tokens import Principal, TokenError

PATH = "$subscription-websocket"


def _principal(websocket: WebSocket, services: Services) -> Principal:
    header = websocket.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this websocket needs an Authorization: Bearer token")
    try:
        return services.tokens.verify(token.strip())
    except TokenError as error:
        raise Unauthorized(str(error)) from None


async def _audit(
    websocket: WebSocket,
    services: Services,
    principal: Principal | None,
    interaction: str,
    status: int,
    outcome: str,
    resources: tuple[str, ...] = (),
) -> None:
    await services.trail.record(
        AuditRecord(
            recorded=now_instant(),
            user_id=principal.subject if principal else None,
            role=principal.role if principal else None,
            organisation=principal.organisation if principal else None,
            client_address=client_address(websocket.scope, services.proxies),
            action="R" if interaction == "read" else "E",
            interaction=interaction,
            outcome="0" if status < 400 else "4",
            outcome_text=outcome,
            http_status=status,
            resources=resources,
            source=services.source,
            method="GET",
            path=websocket.scope.get("path"),
            user_agent=websocket.headers.get("user-agent"),
        )
    )


async def subscription_websocket(websocket: WebSocket) -> None:
    """Serve one websocket: binds in, pings out, until either side closes it."""
    services: Services = websocket.app.state.services
    try:
        principal = _principal(websocket, services)
        check_subscriber(principal, "read")
    except FhirError as refused:
        reason = "; ".join(issue.diagnostics for issue in refused.issues)
        await _audit(websocket, services, None, "operation", refused.status, reason)
        await websocket.close(code=1008, reason=reason[:120])
        return
    await websocket.accept()
    await _audit(websocket, services, principal, "operation", 101, "subscription websocket opened")
    loop = asyncio.get_running_loop()
    outgoing: asyncio.Queue[str] = asyncio.Queue()

    def sink(text: str) -> None:  # called by the delivery thread
        loop.call_soon_threadsafe(outgoing.put_nowait, text)

    bound: set[str] = set()
    sender = asyncio.create_task(_send_all(websocket, outgoing))
    try:
        while True:
            message = (await websocket.receive_text()).strip()
            command, _, id = message.partition(" ")
            if command != "bind" or not id.strip():
                await websocket.send_text(f"error {message[:64]} expected 'bind [id]'")
                continue
            id = id.strip()
            problem = await anyio.to_thread.run_sync(_bind, services, principal, id, sink)
            await _audit(
                websocket,
                services,
                principal,
                "read",
                404 if problem else 200,
                problem or f"bound to Subscription/{id}",
                (f"Subscription/{id}",),
            )
            if problem:
                await websocket.send_text(f"error {id} {problem}")
                continue
            bound.add(id)
            await websocket.send_text(f"bound {id}")
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        if services.delivery is not None:
            for id in bound:
                services.delivery.unbind(id, sink)


def _bind(
    services: Services, principal: Principal, id: str, sink: Callable[[str], None]
) -> str | None:
    """Bind sink to the caller's websocket subscription id; return why not, or None."""
    subscriptions, delivery = services.subscriptions, services.delivery
    assert subscriptions is not None and delivery is not None
    stored = subscriptions.table.get(id)
    if stored is None or not may_manage(principal, stored.owner):
        return f"Subscription/{id} is not known"
    subscription = subscriptions.live_one(stored)
    if subscription is None:
        return f"Subscription/{id} is {stored.status}, not requested or active"
    if subscription.channel != "websocket":
        return f"Subscription/{id} is a {subscription.channel}, not a websocket subscription"
    # What each ping is about is judged then, as a read by the subscription's owner.
    delivery.bind(id, sink)
    if subscription.status == "requested":
        subscriptions.mark(id, subscription.version_id, "active")
    return None


async def _send_all(websocket: WebSocket, outgoing: asyncio.Queue[str]) -> None:
    while True:
        await websocket.send_text(await outgoing.get())
