"""Signing in and out: the browser is sent to the server's own OAuth sign-in page
(authorization code with PKCE) and comes back to /sign-in/callback with a code, which
is exchanged for tokens kept in an HttpOnly session cookie."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bevan.security.oauth_flows import OAuthError
from bevan.web.page_access import PAGE_HEADERS, WebApp
from bevan.web.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_SECONDS,
    PendingSignIn,
    WebSession,
)


def _web(request: Request) -> WebApp:
    web: WebApp = request.app.state.web
    return web


async def sign_in(request: Request) -> Response:
    """GET /sign-in: start a sign-in and send the browser to the sign-in page."""
    web = _web(request)
    if web.sessions.client_id is None:
        return _problem(request, [web.sessions.problem or "signing in is not available"], 503)
    pending, target = web.sessions.start()
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SIGN_IN_COOKIE,
        pending.cookie(),
        max_age=SIGN_IN_SECONDS,
        httponly=True,
        secure=web.sessions.secure,
        samesite="lax",
        path="/sign-in",
    )
    return response


async def callback(request: Request) -> Response:
    """GET /sign-in/callback?code=...&state=...: finish the sign-in."""
    web = _web(request)
    params = request.query_params
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        if params["error"] == "access_denied":
            return RedirectResponse("/", status_code=303)
        return _problem(request, [f"You were not signed in: {reason}"], 400)
    pending = PendingSignIn.from_cookie(request.cookies.get(SIGN_IN_COOKIE))
    code, state = params.get("code"), params.get("state")
    if pending is None or not code or not state:
        return _problem(
            request,
            ["This sign-in was not started in this browser, or took too long. Sign in again."],
            400,
        )
    try:
        session = await anyio.to_thread.run_sync(web.sessions.finish, pending, state, code)
    except OAuthError as error:
        return _problem(
            request, [f"You were not signed in: {error.description}. Sign in again."], 400
        )
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(SESSION_COOKIE, session.cookie(), **web.sessions.cookie_options())  # type: ignore[arg-type]
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


async def sign_out(request: Request) -> Response:
    """POST /sign-out (with the session's CSRF token): revoke the tokens, clear the cookie."""
    web = _web(request)
    session = WebSession.from_cookie(request.cookies.get(SESSION_COOKIE))
    form = await request.form()
    given = form.get("csrf_token")
    if session is not None:
        if not isinstance(given, str) or not web.sessions.check_csrf(session, given):
            return _problem(
                request,
                [
                    "This form has expired or did not come from this site: go back, reload and try again."
                ],
                403,
            )
        await anyio.to_thread.run_sync(web.sessions.end, session)
    response = RedirectResponse(
        "/signed-out", status_code=303, headers={"Cache-Control": "no-store"}
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def signed_out(request: Request) -> Response:
    response = _web(request).pages.render(request, "signed_out.html")
    response.headers.update(PAGE_HEADERS)
    return response


def _problem(request: Request, reasons: list[str], status: int) -> Response:
    response = _web(request).pages.render(request, "problem.html", status, reasons=reasons)
    response.headers.update(PAGE_HEADERS)
    return response
