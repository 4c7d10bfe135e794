"""OAuth 2.0 and SMART App Launch over HTTP: the sign-in pages and the routes.

- `GET /auth/authorize` shows a sign-in form; `POST /auth/authorize` checks the password
  and sends the browser back to the application with a one-time code.
- `POST /auth/token` exchanges a code, a refresh token or a confidential client's
  credentials for a short-lived access token.
- Past the sign-in limits the sign-in page answers 429 with Retry-After, and each
  failure is audited as one.
- `POST /auth/revoke` ends a refresh token or an access token (RFC 7009).
- `/.well-known/smart-configuration` describes all this to SMART applications.

The rules (scopes, clients, revocation, the flows) are in `security/`.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bevan.security.oauth_clients import ClientRegistry
from bevan.security.oauth_flows import (
    AuthorizationRequest,
    AuthorizationServer,
    OAuthError,
    RedirectedError,
    UntrustedRequest,
    with_query,
)
from bevan.security.revocation import RevocationList
from bevan.security.scopes import ResourceScope
from bevan.security.sign_in_throttle import Throttled
from bevan.security.tokens import TokenAuthority
from bevan.security.users import UserDirectory


def describe_scope(scope: str) -> str:
    """Return a plain-English line for a scope, for the sign-in page."""
    words = {
        "launch/patient": "know which patient's record you are looking at",
        "offline_access": "keep access after you close it (until you sign out, at most 8 hours)",
        "online_access": "keep access while you are using it",
        "openid": "know who you are",
        "fhirUser": "know who you are",
    }
    if scope in words:
        return words[scope]
    parsed = ResourceScope.parse(scope)
    if parsed is None:
        return scope
    verbs = [
        verb
        for letter, verb in zip(
            "cruds", ("create", "read", "update", "delete", "search"), strict=True
        )
        if letter in parsed.permissions
    ]
    action = ", ".join(verbs[:-1]) + (" and " if len(verbs) > 1 else "") + verbs[-1]
    what = "all records" if parsed.type == "*" else f"{parsed.type} records"
    whose = {
        "patient": "for one patient",
        "user": "that you are allowed to see",
        "system": "across the whole system",
    }[parsed.context]
    line = f"{action} {what} {whose}"
    return line[0].upper() + line[1:]


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_FORM_TYPE = "application/x-www-form-urlencoded"

_STYLE = """
body{font-family:Arial,sans-serif;font-size:19px;line-height:1.5;color:#212b32;
background:#f0f4f5;margin:0;padding:16px}
main{max-width:540px;margin:32px auto;background:#fff;padding:24px 32px;border-radius:4px}
h1{font-size:32px;margin:0 0 16px}
label{display:block;font-weight:bold;margin-top:16px}
input{font-size:19px;padding:8px;width:100%;box-sizing:border-box;border:2px solid #4c6272}
input:focus,button:focus{outline:4px solid #ffeb3b;outline-offset:0;box-shadow:0 4px 0 #212b32}
button{font-size:19px;padding:12px 16px;margin:24px 16px 0 0;border:0;border-radius:4px;
cursor:pointer}
.sign-in{background:#007f3b;color:#fff}.cancel{background:#4c6272;color:#fff}
.error{border:4px solid #d5281b;padding:16px;margin-bottom:16px}
.error h2{margin:0 0 8px;font-size:24px}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} - Bevan</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def sign_in_page(
    request: AuthorizationRequest,
    *,
    username: str = "",
    error: str | None = None,
    status: int | None = None,
) -> HTMLResponse:
    """Return the sign-in form for an authorization request."""
    e = html.escape
    name = e(request.client.name)
    scopes = "".join(f"<li>{e(describe_scope(s))}</li>" for s in request.scope.split())
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in request.parameters.items()
    )
    invalid = ' aria-invalid="true" aria-describedby="sign-in-error"' if error else ""
    problem = (
        '<div class="error" role="alert" id="sign-in-error">'
        f"<h2>There is a problem</h2><p>{e(error)}</p></div>"
        if error
        else ""
    )
    body = f"""<h1>Sign in</h1>
{problem}<p><strong>{name}</strong> is asking to:</p>
<ul>{scopes}</ul>
<form method="post" action="authorize">
{hidden}
<label for="username">Username</label>
<input id="username" name="username" type="text" value="{e(username)}" autocomplete="username"
 autocapitalize="none" spellcheck="false" required{invalid}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required{invalid}>
<button class="sign-in" type="submit" name="action" value="sign-in">Sign in</button>
<button class="cancel" type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</form>"""
    return _page(f"Sign in to {request.client.name}", body, status or (401 if error else 200))


def _untrusted_page(reason: str) -> HTMLResponse:
    body = (
        "<h1>This sign-in link does not work</h1>"
        f"<p>{html.escape(reason)}</p>"
        "<p>Go back to the application and try again. If it keeps happening, tell the "
        "people who run the application.</p>"
    )
    return _page("Sign-in link does not work", body, 400)


def _error_redirect(error: RedirectedError) -> RedirectResponse:
    target = with_query(
        error.redirect_uri,
        error=error.error,
        error_description=error.description,
        state=error.state,
    )
    return RedirectResponse(target, status_code=303, headers=_NO_STORE)


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.basic_challenge:
        headers["WWW-Authenticate"] = 'Basic realm="bevan"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _root_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _form(request: Request) -> tuple[dict[str, str], list[str]]:
    """Return a urlencoded form's fields and the names given more than once."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise OAuthError("invalid_request", f"send the parameters as {_FORM_TYPE}")
    form = await request.form()
    fields: dict[str, str] = {}
    repeated: list[str] = []
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key in fields:
            repeated.append(key)
        fields[key] = value
    return fields, repeated


def oauth_routes(
    authority: TokenAuthority,
    users: UserDirectory,
    clients: ClientRegistry,
    revocations: RevocationList,
    base_url: str,
    server: AuthorizationServer | None = None,
) -> list[Route]:
    """Return the routes for sign-in, tokens, revocation and SMART discovery.

    base_url is this server's FHIR base (e.g. https://bevan.example.nhs.uk/fhir): the
    `aud` SMART applications must name, and the path the FHIR-relative discovery
    document lives under. server, if given, is the authorization server to answer with
    (the web app exchanges its own codes with the same one). Mount these before the
    FHIR routes.
    """
    server = server or AuthorizationServer(authority, users, clients, revocations, base_url)
    base_path = urlsplit(base_url).path.rstrip("/")

    def fhir_base(request: Request) -> str:
        return _root_of(request) + base_path

    async def authorize_form(request: Request) -> Response:
        parameters = dict(request.query_params)
        repeated = [k for k in parameters if len(request.query_params.getlist(k)) > 1]
        try:
            checked = await run_in_threadpool(
                server.authorization_request, parameters, repeated, fhir_base(request)
            )
        except UntrustedRequest as error:
            return _untrusted_page(str(error))
        except RedirectedError as error:
            return _error_redirect(error)
        return sign_in_page(checked)

    async def authorize_submit(request: Request) -> Response:
        try:
            fields, repeated = await _form(request)
        except OAuthError as error:
            return _untrusted_page(error.description)
        try:
            checked = await run_in_threadpool(
                server.authorization_request, fields, repeated, fhir_base(request)
            )
            if fields.get("action") == "cancel":
                raise RedirectedError(
                    checked.redirect_uri, checked.state, "access_denied", "the user cancelled"
                )
            username = fields.get("username", "")
            address = request.client.host if request.client else None
            redirect = await run_in_threadpool(
                server.sign_in, checked, username, fields.get("password", ""), address
            )
        except UntrustedRequest as error:
            return _untrusted_page(str(error))
        except RedirectedError as error:
            return _error_redirect(error)
        except Throttled as error:
            page = sign_in_page(checked, username=username, error=str(error), status=429)
            page.headers["Retry-After"] = str(error.retry_after)
            return page
        if redirect is None:
            page = sign_in_page(
                checked,
                username=username,
                error="The username or password is not right, or the account cannot sign in here.",
            )
            return page
        return RedirectResponse(redirect, status_code=303, headers=_NO_STORE)

    async def token(request: Request) -> Response:
        try:
            fields, repeated = await _form(request)
            if repeated:
                raise OAuthError("invalid_request", f"parameters given more than once: {repeated}")
            issued = await run_in_threadpool(
                server.token, fields, request.headers.get("authorization")
            )
        except OAuthError as error:
            return _oauth_error(error)
        return JSONResponse(issued.json(), headers=_NO_STORE)

    async def revoke(request: Request) -> Response:
        try:
            fields, _ = await _form(request)
            await run_in_threadpool(server.revoke, fields, request.headers.get("authorization"))
        except OAuthError as error:
            return _oauth_error(error)
        return Response(status_code=200, headers=_NO_STORE)

    async def smart_configuration(request: Request) -> Response:
        return JSONResponse(
            server.smart_configuration(_root_of(request)),
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return [
        Route("/auth/authorize", authorize_form, methods=["GET"]),
        Route("/auth/authorize", authorize_submit, methods=["POST"]),
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/revoke", revoke, methods=["POST"]),
        Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route(f"{base_path}/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
    ]
