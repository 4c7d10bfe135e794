"""The official R4 SearchParameters (generated table) and fast extractors for them.

Expressions are compiled once into small path walkers for the common shapes
(`Type.a.b`, unions with `|`, `.where(resolve() is Type)`), so no FHIRPath engine runs
on the write path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from bevan.fhir.references import parse_reference

# The parameters indexed at write time today; `_id` and `_lastUpdated` live on the
# resource row itself.
INDEXED_CODES = frozenset({"identifier", "subject", "patient"})


@dataclass(frozen=True)
class PathExpression:
    """A compiled `Type.a.b[.where(resolve() is T)]` expression."""

    steps: tuple[str, ...]
    target_type: str | None = None


@dataclass(frozen=True)
class SearchParameter:
    code: str
    type: str
    resource_type: str
    paths: tuple[PathExpression, ...]
    targets: tuple[str, ...] = ()


_WHERE_RESOLVE = re.compile(r"^(?P<path>[\w.]+)\.where\(resolve\(\) is (?P<type>\w+)\)$")
_PLAIN = re.compile(r"^[\w.]+$")


def compile_expression(expression: str, resource_type: str) -> tuple[PathExpression, ...]:
    """Return the path expressions of `expression` that apply to resource_type.

    Shapes this compiler does not know are left out (the search issue widens it).
    """
    out = []
    for part in expression.split("|"):
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        target = None
        match = _WHERE_RESOLVE.match(part)
        if match:
            part, target = match["path"], match["type"]
        if not _PLAIN.match(part):
            continue
        head, _, rest = part.partition(".")
        if head != resource_type or not rest:
            continue
        out.append(PathExpression(tuple(rest.split(".")), target))
    return tuple(out)


@cache
def _all_rows() -> list[dict[str, Any]]:
    text = resources.files("bevan.fhir").joinpath("data/search_parameters.json").read_text()
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


@cache
def search_parameters(resource_type: str) -> dict[str, SearchParameter]:
    """Return every search parameter of resource_type whose expression we can compile."""
    found: dict[str, SearchParameter] = {}
    for row in _all_rows():
        if resource_type not in row["base"] or not row.get("expression"):
            continue
        paths = compile_expression(row["expression"], resource_type)
        if paths:
            found[row["code"]] = SearchParameter(
                row["code"], row["type"], resource_type, paths, tuple(row.get("target", ()))
            )
    return found


@cache
def indexed_parameters(resource_type: str) -> tuple[SearchParameter, ...]:
    """Return the parameters of resource_type whose index rows are written today."""
    params = search_parameters(resource_type)
    return tuple(p for code, p in sorted(params.items()) if code in INDEXED_CODES)


def walk(node: Any, steps: tuple[str, ...]) -> Iterator[Any]:
    """Yield every value at steps below node, flattening lists as FHIRPath does."""
    if not steps:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from walk(item, steps)
        return
    if isinstance(node, dict):
        child = node.get(steps[0])
        if child is not None:
            yield from walk(child, steps[1:])


@dataclass(frozen=True)
class IndexRows:
    """The search index rows of one resource version."""

    tokens: tuple[tuple[str, str | None, str | None], ...] = ()
    references: tuple[tuple[str, str | None, str], ...] = ()


def index_rows(resource: dict[str, Any]) -> IndexRows:
    """Return the index rows for a resource, from its type's indexed parameters."""
    tokens: list[tuple[str, str | None, str | None]] = []
    references: list[tuple[str, str | None, str]] = []
    for param in indexed_parameters(resource["resourceType"]):
        for path in param.paths:
            for value in walk(resource, path.steps):
                if param.type == "token":
                    tokens.extend((param.code, s, c) for s, c in token_values(value))
                elif param.type == "reference":
                    ref = reference_value(value, path.target_type)
                    if ref is not None:
                        references.append((param.code, *ref))
    return IndexRows(tuple(dict.fromkeys(tokens)), tuple(dict.fromkeys(references)))


def token_values(value: Any) -> Iterator[tuple[str | None, str | None]]:
    """Yield (system, code) pairs for an Identifier, Coding, CodeableConcept or code."""
    if isinstance(value, dict):
        if "coding" in value:
            for coding in value["coding"]:
                yield coding.get("system"), coding.get("code")
        elif "value" in value or "system" in value:  # Identifier or ContactPoint
            yield value.get("system"), value.get("value")
        elif "code" in value:
            yield value.get("system"), value.get("code")
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, bool):
        yield None, "true" if value else "false"


def reference_value(value: Any, required_type: str | None) -> tuple[str | None, str] | None:
    """Return (type, id) for a literal Reference, (None, url) for an external one."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    text = value["reference"]
    literal = parse_reference(text)
    if literal is not None and literal.base is None:
        if required_type and literal.resource_type != required_type:
            return None
        return literal.resource_type, literal.id
    if text.startswith("#") or required_type:
        return None
    return None, text
