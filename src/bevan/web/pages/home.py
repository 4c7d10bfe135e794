"""The start page: where each role begins."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from bevan.web.navigation import AREAS
from bevan.web.page_access import PageRequest


def home(page: PageRequest) -> Response:
    """GET /: the first area the user's role serves, else a page saying there is none."""
    for area in AREAS:
        if page.role in area.roles:
            return RedirectResponse(area.href, status_code=303)
    return page.render("home.html")
