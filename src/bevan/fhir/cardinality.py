"""Required elements: the minimum cardinality of the R4 StructureDefinitions.

The R4 JSON Schema says which elements exist and what they hold, but not which must be
there: an Observation without status or code passes it. The StructureDefinitions say so,
and scripts/generate_fhir_data.py keeps from them only what this walk needs
(data/cardinality.json): per resource and data type, the required elements and the
elements that lead to one. The walk is tolerant of a malformed tree: the schema check
reports those problems, this one reports only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from bevan.fhir.errors import Issue

# path below the type -> (min, max, types); a type "#Type.path" is a contentReference.
Rows = dict[str, tuple[int, str, tuple[str, ...]]]

_EXTENSIONS = ("extension", "modifierExtension")


@cache
def _table() -> dict[str, Rows]:
    text = resources.files("bevan.fhir").joinpath("data/cardinality.json").read_text()
    loaded: dict[str, dict[str, list[Any]]] = json.loads(text)
    return {
        type_name: {path: (row[0], row[1], tuple(row[2])) for path, row in rows.items()}
        for type_name, rows in loaded.items()
    }


@cache
def _children(type_name: str, parent: str) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    """Return (name, min, types) of the walked elements directly below parent."""
    rows = _table().get(type_name, {})
    prefix = f"{parent}." if parent else ""
    found = []
    for path, (low, _, types) in rows.items():
        if path.startswith(prefix) and "." not in path[len(prefix) :]:
            found.append((path[len(prefix) :], low, types))
    return tuple(found)


def missing_elements(
    resource: dict[str, Any], resource_type: str, has_extensions: bool = True
) -> list[Issue]:
    """Return one issue for each required element the resource lacks, wherever it is.

    has_extensions=False skips looking for extensions without a url (the caller knows
    from a scan of the JSON text that there are none).
    """
    issues = list(_walk(resource, resource_type, "", resource_type))
    if has_extensions:
        issues.extend(_extension_issues(resource, resource_type))
    return issues


def _walk(node: Any, type_name: str, parent: str, where: str) -> Iterator[Issue]:
    if not isinstance(node, dict):
        return
    for name, low, types in _children(type_name, parent):
        if name.endswith("[x]"):
            stem = name[:-3]
            present = [
                (key, _choice_type(key[len(stem) :], types))
                for key in node
                if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper()
            ]
            if not present and low > 0:
                yield _required(where, stem, f"{stem}[x]", types)
            for key, chosen in present:
                if chosen is not None:
                    yield from _walk_values(node[key], chosen, "", f"{where}.{key}")
            continue
        if name not in node:
            if low > 0 and f"_{name}" not in node:
                yield _required(where, name, name, types)
            continue
        for type_code in types[:1]:
            below = f"{parent}.{name}" if parent else name
            if type_code in ("BackboneElement", "Element"):
                yield from _walk_values(node[name], type_name, below, f"{where}.{name}")
            elif type_code.startswith("#"):
                target = type_code[1:].split(".", 1)[1]
                yield from _walk_values(node[name], type_name, target, f"{where}.{name}")
            else:
                yield from _walk_values(node[name], type_code, "", f"{where}.{name}")


def _walk_values(value: Any, type_name: str, parent: str, where: str) -> Iterator[Issue]:
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        at = f"{where}[{index}]" if isinstance(value, list) else where
        if type_name == "Resource" or (
            type_name[:1].isupper() and isinstance(item, dict) and "resourceType" in item
        ):
            inner = item.get("resourceType") if isinstance(item, dict) else None
            if isinstance(inner, str) and inner in _table():
                yield from _walk(item, inner, "", at)
            continue
        if type_name in _table():
            yield from _walk(item, type_name, parent, at)


def _choice_type(suffix: str, types: tuple[str, ...]) -> str | None:
    for type_code in types:
        if type_code[:1].upper() + type_code[1:] == suffix:
            return type_code
    return None


def _required(where: str, name: str, shown: str, types: tuple[str, ...]) -> Issue:
    if shown.endswith("[x]"):
        choices = ", ".join(f"{name}{t[:1].upper()}{t[1:]}" for t in types)
        text = f"{where}.{shown} is required: give one of {choices}"
    else:
        text = f"{where}.{name} is required"
    return Issue(text, code="required", expression=(f"{where}.{name}",))


def _extension_issues(node: Any, where: str) -> Iterator[Issue]:
    """Every extension, wherever it sits (also under a primitive's _element), needs a url."""
    if isinstance(node, dict):
        for key, value in node.items():
            at = f"{where}.{key.lstrip('_')}"
            if key in _EXTENSIONS and isinstance(value, list):
                for index, extension in enumerate(value):
                    if isinstance(extension, dict) and "url" not in extension:
                        yield Issue(
                            f"{at}[{index}].url is required: an extension says what it is",
                            code="required",
                            expression=(f"{at}[{index}].url",),
                        )
            if isinstance(value, dict | list):
                yield from _extension_issues(value, at)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _extension_issues(item, f"{where}[{index}]")
