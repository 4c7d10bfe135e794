"""The OAuth endpoints under /auth, audited like every FHIR request: each sign-in,
successful or not, each token asked for, each revocation.

A sign-in or a token is a DICOM "Login" event, a revocation a "Logout"; the discovery
document and the sign-in form are plain reads. A failed sign-in names the username
tried, cut short like everything else a caller who has not signed in chooses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bevan.api.context import Services, audited
from bevan.fhir.dates import now_instant
from bevan.security.audit import AuditRecord, bounded, outcome_for
from bevan.security.client_address import client_address
from bevan.security.tokens import Principal, TokenError

USER_ID_LIMIT = 64  # the audit table's user_id column


def _interaction(route: Route, method: str) -> str:
    if route.path.endswith("/revoke"):
        return "logout"
    if route.path.endswith("/token") or (route.path.endswith("/authorize") and method == "POST"):
        return "login"
    return "read"


def _issued_to(services: Services, response: Response) -> Principal | None:
    """Return whom a token answer's access token was issued to (None: none was)."""
    try:
        token = orjson.loads(response.body).get("access_token")
        return services.tokens.verify(token) if isinstance(token, str) else None
    except (orjson.JSONDecodeError, AttributeError, TokenError):
        return None


def _form_field(request: Request, name: str) -> str | None:
    # The form the endpoint parsed, if it parsed one (Starlette keeps it on the request).
    form = getattr(request, "_form", None)
    value = form.get(name) if form is not None else None
    return value if isinstance(value, str) else None


def sign_in_record(request: Request, interaction: str, response: Response) -> AuditRecord:
    """Return the audit record of one request to an OAuth endpoint."""
    services: Services = request.app.state.services
    status = response.status_code
    principal: Principal | None = None
    outcome = outcome_for(status)
    text = ""
    if interaction == "login" and request.url.path.endswith("/token"):
        principal = _issued_to(services, response) if status == 200 else None
        text = "token issued" if principal else f"token refused (HTTP {status})"
    elif interaction == "login":
        location = response.headers.get("location", "")
        username, _ = bounded(_form_field(request, "username"), USER_ID_LIMIT)
        if status == 303 and "code=" in location:
            text = f"signed in as {username!r}"
        else:
            outcome = outcome if outcome != "0" else "4"
            text = f"sign-in failed for {username!r}" if username else "sign-in failed"
    elif interaction == "logout":
        text = "token revoked" if status == 200 else f"revocation refused (HTTP {status})"
    query, query_cut = bounded(request.scope.get("query_string", b"").decode("latin-1") or None)
    path, path_cut = bounded(request.scope.get("path"))
    agent, agent_cut = bounded(request.headers.get("user-agent"))
    request_id, id_cut = bounded(request.headers.get("x-request-id"))
    cut = [
        name
        for name, was_cut in (
            ("query", query_cut),
            ("path", path_cut),
            ("user-agent", agent_cut),
            ("request-id", id_cut),
        )
        if was_cut
    ]
    user_id = None
    if principal is not None:
        user_id = principal.subject
    elif interaction == "login" and outcome == "0":
        user_id = bounded(_form_field(request, "username"), USER_ID_LIMIT)[0]
    return AuditRecord(
        recorded=now_instant(),
        user_id=user_id,
        role=principal.role if principal else None,
        organisation=principal.organisation if principal else None,
        client_address=client_address(request.scope, services.proxies),
        action="E" if interaction in ("login", "logout") else "R",
        interaction=interaction,
        outcome=outcome,
        outcome_text=text,
        http_status=status,
        query=query,
        request_id=request_id,
        source=services.source,
        method=request.method,
        path=path,
        user_agent=agent,
        truncated=tuple(cut),
    )


def _audited_endpoint(
    route: Route, endpoint: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        response = await endpoint(request)
        interaction = _interaction(route, request.method)
        return await audited(request, sign_in_record(request, interaction, response), response)

    return answer


def audited_routes(routes: list[Route]) -> list[Route]:
    """Return the OAuth routes, each answering only once its request is audited."""
    return [
        Route(
            route.path,
            _audited_endpoint(route, route.endpoint),
            methods=sorted(route.methods or ()),
            name=route.name,
        )
        for route in routes
    ]
