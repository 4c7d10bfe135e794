"""Page templates: Jinja2 with the NHS.UK frontend's component macros
(`nhsuk-frontend-jinja`), autoescaped, and the filters the pages share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    ChainableUndefined,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    select_autoescape,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse

from bevan.web import presentation
from bevan.web.navigation import navigation_for

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"  # vendor/ within it is fetched by the install step


class Pages:
    """Renders the web app's templates into HTML responses."""

    def __init__(self) -> None:
        self.environment = Environment(
            loader=ChoiceLoader(
                [
                    FileSystemLoader(TEMPLATES),
                    PackageLoader("nhsuk_frontend_jinja", "templates"),
                ]
            ),
            autoescape=select_autoescape(("html", "jinja")),
            # The component templates ask for optional parameters that may not be given.
            undefined=ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters.update(
            {
                "nhs_number": presentation.spaced_nhs_number,
                "day": presentation.day,
                "day_and_time": presentation.day_and_time,
                "time_of_day": presentation.time_of_day,
                "concept": presentation.concept_text,
            }
        )

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        page = context.get("page")
        principal = page.principal if page is not None else None
        text = self.environment.get_template(template).render(
            request=request,
            path=request.url.path,
            navigation=navigation_for(principal.role if principal else None, request.url.path),
            csrf=page.csrf if page is not None else "",
            principal=principal,
            **context,
        )
        return HTMLResponse(text, status_code=status)
