"""`_summary` and `_elements`: the parts of a resource a client asked for, marked SUBSETTED."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_MANDATORY = ("resourceType", "id", "meta")


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Return the top-level elements `_summary=true` keeps for resource_type."""
    text = resources.files("bevan.fhir").joinpath("data/summary_elements.json").read_text()
    table: dict[str, list[str]] = json.loads(text)
    return frozenset(table.get(resource_type, ("id", "meta")))


def summarise(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """Return resource reduced for `_summary=mode` (true, text, data; false: unchanged)."""
    if mode in ("false", "count"):
        return resource
    if mode == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif mode == "text":
        kept = {k: v for k, v in resource.items() if k in (*_MANDATORY, "text")}
    else:
        wanted = summary_elements(resource["resourceType"])
        kept = {k: v for k, v in resource.items() if k in _MANDATORY or k in wanted}
    return _mark_subsetted(kept) if kept != resource else resource


def select_elements(resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """Return resource with only the named top-level elements (choice names match their
    typed forms: `value` keeps valueQuantity), plus resourceType, id and meta."""
    kept = {}
    for key, value in resource.items():
        base = key.lstrip("_")
        if key in _MANDATORY or any(
            base == e or (base.startswith(e) and base[len(e) : len(e) + 1].isupper())
            for e in elements
        ):
            kept[key] = value
    return _mark_subsetted(kept)


def _mark_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return {**resource, "meta": meta}
