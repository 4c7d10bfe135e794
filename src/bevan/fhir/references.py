"""References between resources: parsing, and finding every reference in a resource."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from bevan.fhir.resource_types import RESOURCE_TYPES

_RELATIVE = re.compile(
    r"(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


@dataclass(frozen=True)
class LiteralReference:
    """A reference to Type/id (optionally at a version, optionally on another server)."""

    resource_type: str
    id: str
    version: str | None = None
    base: str | None = None


@lru_cache(maxsize=65_536)
def parse_reference(text: str) -> LiteralReference | None:
    """Return the Type/id a reference string names, or None (urn:, #contained, query).

    Remembered: a record names the same patient, encounter and practitioners again and
    again.
    """
    match = _RELATIVE.fullmatch(text)
    if match is None or match["type"] not in RESOURCE_TYPES:
        return None
    return LiteralReference(match["type"], match["id"], match["version"], match["base"])


def conditional_reference(text: str) -> tuple[str, str] | None:
    """Return (type, query) for a conditional reference such as Patient?identifier=x|y."""
    resource_type, mark, query = text.partition("?")
    if mark and resource_type in RESOURCE_TYPES:
        return resource_type, query
    return None


def rewrite_references(value: Any, replace: Callable[[str], str | None]) -> Any:
    """Return value (any JSON) with each Reference.reference passed through replace.

    replace returns the new text, or None to keep it. value itself is left as it was:
    only the objects and arrays on the way to a changed reference are copied, so the
    rest is shared: far cheaper than serialising, substituting and parsing the whole
    again, which transaction Bundles do for every entry (benchmarks/bundle_import.py).
    """
    return _rewritten(value, replace)


def _rewritten(node: Any, replace: Callable[[str], str | None]) -> Any:
    copy: Any = None  # made on the first change below node
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str):
            new = replace(reference)
            if new is not None and new != reference:
                copy = dict(node)
                copy["reference"] = new
        children: Iterable[tuple[Any, Any]] = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return node
    for key, child in children:
        if isinstance(child, dict | list):
            changed = _rewritten(child, replace)
            if changed is not child:
                copy = type(node)(node) if copy is None else copy
                copy[key] = changed
    return node if copy is None else copy


def iter_references(node: Any) -> Iterator[dict[str, Any]]:
    """Yield every Reference-shaped dict (one with a string `reference`) in a resource.

    Contained resources are walked too: their references resolve the same way.
    """
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            if isinstance(value, dict | list):
                yield from iter_references(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                yield from iter_references(item)


def local_references(
    resource: dict[str, Any], base_url: str | None
) -> list[tuple[str, str, LiteralReference]]:
    """Return (FHIRPath, text, target) of each reference in resource to this server: a
    relative Type/id, or an absolute URL under base_url.

    Not included: contained (#id), urn: and conditional references, references to other
    servers, and everything inside a Bundle (its entries refer to one another by fullUrl).
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type == "Bundle":
        return []
    base = base_url.rstrip("/") if base_url else None
    found: list[tuple[str, str, LiteralReference]] = []
    for path, text in _references_with_paths(resource, resource_type):
        target = parse_reference(text)
        if target is None or (target.base is not None and target.base != base):
            continue
        found.append((path, text, target))
    return found


def _references_with_paths(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str):
            yield f"{path}.reference", reference
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _references_with_paths(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _references_with_paths(item, f"{path}[{index}]")
