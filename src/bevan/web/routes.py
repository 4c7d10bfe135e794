"""The web app's routes, mounted at `/` beside the FHIR API at /fhir.

Each area of the app is a module under `web/pages/`; its routes are listed here. The
FHIR API does not depend on any of this: without the fetched browser assets the pages
render unstyled and the API is unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bevan.web.page_access import PAGE_HEADERS, WebApp, page_endpoint
from bevan.web.pages import break_glass, home, my_record, patient_search, patient_summary, sign_in
from bevan.web.templating import STATIC

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
STAFF = frozenset({"clinician", "nurse", "receptionist"})
PATIENTS = frozenset({"patient"})
PRIVACY = frozenset({"privacy-officer"})


def web_routes() -> list[BaseRoute]:
    """Return the pages, the sign-in flow and the static assets."""
    page = page_endpoint
    return [
        Route("/", page(home.home, interaction=None), methods=["GET"]),
        Route("/sign-in", sign_in.sign_in, methods=["GET"]),
        Route("/sign-in/callback", sign_in.callback, methods=["GET"]),
        Route("/sign-out", sign_in.sign_out, methods=["POST"]),
        Route("/signed-out", sign_in.signed_out, methods=["GET"]),
        # Staff: finding a patient, their summary, breaking the glass.
        Route(
            "/patients",
            page(patient_search.search_form, interaction=None, roles=STAFF),
            methods=["GET"],
        ),
        Route(
            "/patients",
            page(patient_search.search_patients, interaction="search-type", roles=STAFF),
            methods=["POST"],
        ),
        Route(
            "/patients/{patient_id}",
            page(patient_summary.patient_summary, roles=STAFF),
            methods=["GET"],
        ),
        Route(
            "/patients/{patient_id}/break-glass",
            page(break_glass.break_glass_form, interaction=None, roles=STAFF),
            methods=["GET"],
        ),
        Route(
            "/patients/{patient_id}/break-glass",
            page(break_glass.break_glass, roles=STAFF),
            methods=["POST"],
        ),
        # Privacy officers: the break-glass review queue.
        Route(
            "/break-glass/reviews",
            page(break_glass.review_queue, interaction="operation", roles=PRIVACY),
            methods=["GET"],
        ),
        Route(
            "/break-glass/reviews/{grant}",
            page(break_glass.review, interaction="operation", roles=PRIVACY),
            methods=["POST"],
        ),
        # Patients: their own record and who has looked at it.
        Route("/my-record", page(my_record.my_record, roles=PATIENTS), methods=["GET"]),
        Route(
            "/my-record/access",
            page(my_record.access_log, interaction="operation", roles=PATIENTS),
            methods=["GET"],
        ),
        Mount("/assets", StaticFiles(directory=STATIC, check_dir=False), name="assets"),
    ]


def html_not_found(api_not_found: ExceptionHandler, base_path: str) -> ExceptionHandler:
    """Return a 404 handler that answers a browser asking for a page outside the API with
    the web app's "Page not found" page, and everything else as the API does (which
    audits it either way)."""

    async def not_found(request: Request, exc: Exception) -> Response:
        answer = await api_not_found(request, exc)
        path = request.url.path
        outside_api = not path.startswith((base_path + "/", "/auth/", "/.well-known/"))
        if (
            outside_api
            and "text/html" in request.headers.get("accept", "")
            and answer.status_code == 404
        ):
            web: WebApp = request.app.state.web
            page = web.pages.render(
                request, "not_found.html", 404, reasons=["Check the address, or start again."]
            )
            page.headers.update(PAGE_HEADERS)
            return page
        return answer

    return not_found
