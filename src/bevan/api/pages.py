"""One builder for every paged answer: a searchset or history Bundle with its self,
next and previous links (search, history, `$everything`, `$audit`, AuditEvent)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from bevan.api.responses import fhir_json
from bevan.fhir.bundles import bundle


def page_links(
    path: str,
    applied: Iterable[tuple[str, str]],
    *,
    next_cursor: str | None = None,
    previous_cursor: str | None = None,
    cursor: str = "_cursor",
) -> list[tuple[str, str]]:
    """Return a page's links: self (path with the parameters applied), then next and
    previous (the same parameters, with the cursor named cursor in place of any given)."""
    applied = list(applied)
    links = [("self", f"{path}?{urlencode(applied)}" if applied else path)]
    kept = [(name, value) for name, value in applied if name != cursor]
    for relation, value in (("next", next_cursor), ("previous", previous_cursor)):
        if value is not None:
            links.append((relation, f"{path}?{urlencode([*kept, (cursor, value)])}"))
    return links


def page_bundle(
    bundle_type: str,
    entries: list[dict[str, Any]],
    *,
    path: str,
    applied: Iterable[tuple[str, str]],
    total: int | None = None,
    next_cursor: str | None = None,
    previous_cursor: str | None = None,
    cursor: str = "_cursor",
    pretty: bool = False,
) -> Response:
    """Return the answer holding one page: a Bundle of bundle_type with its entries,
    total and links (see page_links)."""
    links = page_links(
        path, applied, next_cursor=next_cursor, previous_cursor=previous_cursor, cursor=cursor
    )
    return fhir_json(bundle(bundle_type, entries, total=total, links=links), pretty=pretty)
