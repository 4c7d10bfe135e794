"""Bundle shapes: searchset, history and transaction/batch responses."""

from __future__ import annotations

from typing import Any

import orjson

from bevan.fhir.dates import now_instant
from bevan.fhir.ids import new_id


def entry_for(full_url: str, content: str | None, **extra: Any) -> dict[str, Any]:
    """Return a Bundle entry; content is the stored JSON text of the resource.

    The text goes into the Bundle's JSON as it is (an orjson Fragment), not parsed and
    serialised again: for a page of search results that was most of the work of
    answering. Code that needs the resource as a dict parses content itself.
    """
    entry: dict[str, Any] = {"fullUrl": full_url}
    if content is not None:
        entry["resource"] = orjson.Fragment(content)
    entry.update(extra)
    return entry


def bundle(
    bundle_type: str,
    entries: list[dict[str, Any]],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Return a Bundle of bundle_type with entries, total and links (relation, url)."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": bundle_type,
    }
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:
        out["entry"] = entries
    return out
