"""What every page handler receives, and the wrapper that signs it in, checks its form,
runs it, audits it and turns refusals into pages that say why.

A page asks the same questions of the same objects as the FHIR API: it is given the
API's own `FhirRequest` for the signed-in user (role, scopes, relationships,
break-glass), reads through the record service, and its view is audited by the same
trail with the same kind of entry as the API read it stands for.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bevan.api.context import FhirRequest, Services, audit_record, audited, base_url_of
from bevan.api.negotiation import Prefer
from bevan.fhir.errors import FhirError, Forbidden, Gone, NotFound
from bevan.security.access import CLINICAL_ROLES, AccessContext
from bevan.security.tokens import Principal
from bevan.security.users import UserDirectory
from bevan.web.sessions import SESSION_COOKIE, SessionKeeper, SignedOut, WebSession
from bevan.web.templating import Pages

log = logging.getLogger("bevan.web")

# Every page says so: nothing from a patient's record is kept by the browser or a proxy.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class PageRequest:
    """One signed-in page request: who asks, through the API's own access checks."""

    request: Request
    session: WebSession
    principal: Principal
    fhir: FhirRequest
    csrf: str
    pages: Pages
    users: UserNames
    # What the audit entry names: the resource the page stands for, if one.
    resources: tuple[str, ...] = ()
    # The search the page ran, as the API's query string would give it (for the audit).
    query: str | None = None
    form: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.principal.role

    @property
    def access(self) -> AccessContext:
        return self.fhir.caller

    def with_break_glass(self, reason: str) -> None:
        """Let this request break the glass for one patient, with reason (as the API's
        X-Bevan-Break-Glass header does)."""
        self.access.break_glass_reason = reason

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.pages.render(self.request, template, status, page=self, **context)

    def is_partial(self) -> bool:
        """Return True for an htmx request that replaces part of a page."""
        return self.request.headers.get("hx-request") == "true"


PageHandler = Callable[[PageRequest], Response]


def page_endpoint(
    handler: PageHandler,
    *,
    interaction: str | None = "read",
    roles: frozenset[str] | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page handler: resume the session (or send the browser to sign in), check
    the CSRF token of a form, run the handler off the event loop, audit the view as
    interaction (None: the page shows no record), and answer refusals and errors with a
    page that says why. roles limits who may open the page at all."""

    async def endpoint(request: Request) -> Response:
        web: WebApp = request.app.state.web
        services: Services = request.app.state.services
        session = WebSession.from_cookie(request.cookies.get(SESSION_COOKIE))
        try:
            principal, renewed = await anyio.to_thread.run_sync(web.sessions.resume, session)
        except SignedOut:
            return _to_sign_in(request)
        session = renewed or session
        assert session is not None
        access = AccessContext(principal)
        fhir = FhirRequest(
            request, principal, b"", Prefer(), False, base_url_of(request), services, access
        )
        page = PageRequest(
            request,
            session,
            principal,
            fhir,
            web.sessions.csrf_token(session),
            web.pages,
            web.users,
        )
        problem: str | None = None
        try:
            if request.method == "POST":
                form = await request.form()
                page.form = {k: v for k, v in form.items() if isinstance(v, str)}
                given = page.form.get("csrf_token") or request.headers.get("x-csrf-token")
                if not web.sessions.check_csrf(session, given):
                    raise Forbidden(
                        "this form has expired or did not come from this site: "
                        "go back, reload the page and send it again"
                    )
            if roles is not None and principal.role not in roles:
                raise Forbidden(f"this page is not for a {principal.role}")
            response = await anyio.to_thread.run_sync(
                handler, page, limiter=services.offload_limiter
            )
        except FhirError as error:
            problem = "; ".join(i.diagnostics for i in error.issues)
            response = refused_page(page, error)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception(
                "page %s %s failed (reference %s)", request.method, request.url.path, reference
            )
            problem = f"server error, reference {reference}"
            response = page.render("error.html", 500, reference=reference)
        response.headers.update(PAGE_HEADERS)
        if renewed is not None:
            response.set_cookie(SESSION_COOKIE, renewed.cookie(), **web.sessions.cookie_options())  # type: ignore[arg-type]
        if interaction is None:
            return response
        record = audit_record(request, interaction, access, response, problem, names_patients=False)
        record = replace(
            record, resources=page.resources or record.resources, query=page.query or record.query
        )
        return await audited(request, record, response)

    return endpoint


def refused_page(page: PageRequest, error: FhirError) -> HTMLResponse:
    """Return the page that says why a request was refused or could not be answered."""
    reasons = [issue.diagnostics for issue in error.issues]
    if isinstance(error, Forbidden):
        patient_id = page.request.path_params.get("patient_id")
        # The API's refusal tells an API client which header breaks the glass; a page
        # offers the break-glass form instead.
        reasons = [r.split(" If this is an emergency", 1)[0] for r in reasons]
        may_break_glass = (
            patient_id is not None
            and page.role in CLINICAL_ROLES
            and any("legitimate relationship" in r for r in reasons)
        )
        return page.render(
            "refused.html",
            403,
            reasons=reasons,
            break_glass_for=patient_id if may_break_glass else None,
        )
    if isinstance(error, NotFound | Gone):
        return page.render("not_found.html", error.status, reasons=reasons)
    return page.render("problem.html", error.status, reasons=reasons)


def _to_sign_in(request: Request) -> Response:
    if request.headers.get("hx-request") == "true":
        # htmx follows no redirect to another page: tell it to load the sign-in page whole.
        return Response(status_code=200, headers={"HX-Redirect": "/sign-in"})
    return RedirectResponse("/sign-in", status_code=303, headers={"Cache-Control": "no-store"})


class UserNames:
    """Names users as pages show them: their display name, else their username."""

    def __init__(self, directory: UserDirectory) -> None:
        self.directory = directory
        self._known: dict[str, str] = {}

    def display(self, user_id: str) -> str:
        if user_id not in self._known:
            if len(self._known) > 10_000:
                self._known.clear()
            user = self.directory.by_id(user_id)
            self._known[user_id] = (user.display_name or user.username) if user else user_id
        return self._known[user_id]


@dataclass(frozen=True)
class WebApp:
    """What the web routes share: the session keeper, the page templates, user names."""

    sessions: SessionKeeper
    pages: Pages
    users: UserNames
