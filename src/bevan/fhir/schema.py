"""The R4 JSON Schema as data: element names and types, for compiling paths."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

# Where an inlined primitive's schema is shared by several types, the first named wins.
_PRIMITIVE_PREFERENCE = ("string", "uri", "code", "dateTime", "date", "instant", "decimal")


@cache
def definitions() -> dict[str, Any]:
    """Return the schema's definitions by name (loaded once)."""
    text = resources.files("bevan.fhir").joinpath("data/r4.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)["definitions"]
    return loaded


@cache
def _primitive_signatures() -> dict[str, str]:
    found: dict[str, str] = {}
    names = [n for n in definitions() if n[:1].islower()]
    names.sort(
        key=lambda n: (_PRIMITIVE_PREFERENCE.index(n) if n in _PRIMITIVE_PREFERENCE else 99, n)
    )
    for name in names:
        found.setdefault(json.dumps(definitions()[name], sort_keys=True), name)
    return found


def type_of(property_schema: dict[str, Any]) -> str:
    """Return the FHIR type name of a property's schema ($ref, array items or inlined)."""
    if "items" in property_schema:
        return type_of(property_schema["items"])
    ref = property_schema.get("$ref")
    if ref:
        return str(ref.rsplit("/", 1)[-1])
    if "enum" in property_schema:
        return "code"
    return _primitive_signatures().get(json.dumps(property_schema, sort_keys=True), "string")


@cache
def element_types(type_name: str) -> dict[str, str]:
    """Return {JSON property: FHIR type} for a complex type or resource (no _primitives)."""
    definition = definitions().get(type_name, {})
    return {
        name: type_of(schema)
        for name, schema in definition.get("properties", {}).items()
        if not name.startswith("_")
    }


def is_resource_list(type_name: str) -> bool:
    return type_name in ("ResourceList", "Resource")
