"""Every official R4 SearchParameter, compiled, and the index rows it gives a resource.

The table of parameters is generated from ../shared/fhir-r4 (scripts/generate_fhir_data.py);
each expression is compiled once (fhir/paths.py) into JSON paths with known types, so the
write path walks dictionaries instead of interpreting FHIRPath. Values become index rows
in the shape of the store's tables, one kind per parameter type.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, TypeGuard

from bevan.clinical.units import canonical_quantity
from bevan.fhir.dates import instant_range
from bevan.fhir.paths import (
    CompiledPath,
    NotCompiled,
    Step,
    compile_part,
    compile_relative,
    evaluate,
    split_union,
)
from bevan.fhir.references import parse_reference
from bevan.fhir.resource_types import RESOURCE_TYPES

# _id and _lastUpdated are columns of the resource row, not index rows.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})
NOT_SUPPORTED = frozenset({"_text", "_content", "_query", "_filter", "_list", "_type"})

LOWEST_INSTANT = "0001-01-01T00:00:00.000Z"
HIGHEST_INSTANT = "9999-12-31T23:59:59.999Z"


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the parameter it follows and its relative paths."""

    type: str
    paths: tuple[CompiledPath, ...]


@dataclass(frozen=True)
class SearchParameter:
    code: str
    type: str  # number date string token reference composite quantity uri special
    resource_type: str
    paths: tuple[CompiledPath, ...] = ()
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    special: Callable[[dict[str, Any]], list[Any]] | None = None
    compiled: bool = True  # False: the expression is outside the compiled subset


@cache
def _rows() -> list[dict[str, Any]]:
    text = resources.files("bevan.fhir").joinpath("data/search_parameters.json").read_text()
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


@cache
def _by_url() -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in _rows()}


def _deceased(resource: dict[str, Any]) -> list[Any]:
    # Patient.deceased.exists() and Patient.deceased != false
    flag = resource.get("deceasedBoolean")
    return [flag is True or "deceasedDateTime" in resource]


def _position(resource: dict[str, Any]) -> list[Any]:
    # Location.position: a point only when both coordinates are numbers
    position = resource.get("position")
    if not isinstance(position, dict):
        return []
    latitude, longitude = position.get("latitude"), position.get("longitude")
    if not (_is_number(latitude) and _is_number(longitude)):
        return []
    return [(float(latitude), float(longitude))]


def _is_number(value: Any) -> TypeGuard[int | float | Decimal]:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


_SPECIAL: dict[tuple[str, str], Callable[[dict[str, Any]], list[Any]]] = {
    ("Patient", "deceased"): _deceased,
    ("Location", "near"): _position,
}

# The number rows a position is kept in (a latitude and a longitude row, indexed by value
# as any number is, so a search can look up a band of latitudes first).
NEAR_LATITUDE = "near$latitude"
NEAR_LONGITUDE = "near$longitude"


@cache
def search_parameters(resource_type: str) -> dict[str, SearchParameter]:
    """Return every search parameter of resource_type by code."""
    if resource_type not in RESOURCE_TYPES:
        return {}
    found: dict[str, SearchParameter] = {}
    for row in _rows():
        bases = row["base"]
        generic = "Resource" in bases or "DomainResource" in bases
        if resource_type not in bases and not generic:
            continue
        code = row["code"]
        if code in RESOURCE_COLUMNS or code in NOT_SUPPORTED or not row.get("expression"):
            continue
        expression = row["expression"]
        if generic:
            expression = expression.replace("Resource.", f"{resource_type}.")
        found[code] = _compile(row, code, resource_type, expression)
    return found


def _compile(
    row: dict[str, Any], code: str, resource_type: str, expression: str
) -> SearchParameter:
    param_type = row["type"]
    targets = tuple(row.get("target", ()))
    special = _SPECIAL.get((resource_type, code))
    if special is not None:
        return SearchParameter(code, param_type, resource_type, special=special)
    paths: list[CompiledPath] = []
    try:
        for part in split_union(expression):
            compiled = compile_part(part, resource_type)
            if compiled is not None:
                paths.append(compiled)
    except NotCompiled:
        return SearchParameter(code, param_type, resource_type, targets=targets, compiled=False)
    if param_type != "composite":
        return SearchParameter(code, param_type, resource_type, tuple(paths), targets)
    components = []
    context_types = {step.keys[0][1] for path in paths for step in path.steps[-1:]} or {
        resource_type
    }
    try:
        for component in row.get("component", ()):
            definition = _by_url().get(component["definition"])
            if definition is None:
                raise NotCompiled(component["definition"])
            relative: list[CompiledPath] = []
            for context in sorted(context_types):
                relative.extend(compile_relative(component["expression"], context))
            components.append(Component(definition["type"], tuple(relative)))
    except NotCompiled:
        return SearchParameter(code, param_type, resource_type, compiled=False)
    return SearchParameter(
        code, param_type, resource_type, tuple(paths), targets, tuple(components)
    )


# --- parameters that share rows --------------------------------------------------------------


@dataclass(frozen=True)
class SharedRows:
    """Where the rows of parameters whose values another parameter already indexes are.

    Some official parameters repeat others: Patient `phonetic` has `name`'s path;
    Observation `combo-code` is `code | component.code`, the union of `code` and
    `component-code`; `code-value-concept` pairs `code` and `value-concept` on the
    resource itself (one element, so no group is needed to pair them); and
    `combo-code-value-concept` is `code-value-concept` on the resource together with
    `component-code-value-concept` on each component. Such a parameter writes no rows of
    its own: a search for it reads the rows of the parameters it repeats. On Synthea
    records this leaves out a large share of an Observation's token rows.

    stored maps a stored parameter code (`code`, `code$i` for a composite's components,
    `code:of-type`) to the codes whose rows hold its values, for repeated ones only.
    """

    stored: dict[str, tuple[str, ...]]
    derived: frozenset[str]  # the parameters that write no rows

    def codes(self, param: str) -> tuple[str, ...]:
        return self.stored.get(param, (param,))


def _steps(paths: tuple[CompiledPath, ...]) -> frozenset[tuple[Step, ...]]:
    return frozenset(path.steps for path in paths)


def _shares(param: SearchParameter) -> bool:
    # References are read by name in chains, includes and compartments: they keep theirs.
    return param.compiled and param.special is None and param.type != "reference"


@cache
def shared_rows(resource_type: str) -> SharedRows:
    """Return which of resource_type's parameters are searched in another's rows."""
    params = search_parameters(resource_type)
    plain = {c: p for c, p in sorted(params.items()) if _shares(p) and p.type != "composite"}
    home: dict[tuple[str, frozenset[tuple[Step, ...]]], str] = {}
    for code, param in plain.items():
        home.setdefault((param.type, _steps(param.paths)), code)
    stored: dict[str, tuple[str, ...]] = {}
    for code, param in plain.items():
        first = home[(param.type, _steps(param.paths))]
        if first != code:  # the same paths as a parameter that comes first
            stored[code] = (first,)
    for code, param in plain.items():
        paths = _steps(param.paths)
        if code in stored or len(paths) < 2:
            continue
        parts = [
            (c, steps) for (kind, steps), c in home.items() if kind == param.type and steps < paths
        ]
        if _partition(paths, [steps for _, steps in parts]):
            stored[code] = tuple(c for c, _ in parts)
    _share_composites(params, home, stored)
    resolved = {code: _resolved(code, stored) for code in stored}
    for code in list(resolved):
        if params.get(code) is not None and params[code].type == "token":
            resolved[f"{code}:of-type"] = tuple(f"{c}:of-type" for c in resolved[code])
    derived = {code for code in stored if "$" not in code}
    derived |= {
        code
        for code, param in params.items()
        if param.type == "composite"
        and param.components
        and all(f"{code}${i}" in stored for i in range(len(param.components)))
    }
    return SharedRows(resolved, frozenset(derived))


def _share_composites(
    params: dict[str, SearchParameter],
    home: dict[tuple[str, frozenset[tuple[Step, ...]]], str],
    stored: dict[str, tuple[str, ...]],
) -> None:
    composites = {c: p for c, p in sorted(params.items()) if _shares(p) and p.type == "composite"}
    # On the resource itself: each component is a plain parameter's rows.
    for code, param in composites.items():
        if not param.components or any(path.steps for path in param.paths):
            continue
        homes = [home.get((c.type, _steps(c.paths))) for c in param.components]
        if all(homes):
            for index, found in enumerate(homes):
                stored[f"{code}${index}"] = (str(found),)
    # Over a union of contexts: the composites with the same components on each part.
    for code, param in composites.items():
        contexts = _steps(param.paths)
        kinds = _component_kinds(param)
        parts = [
            (c, _steps(p.paths))
            for c, p in composites.items()
            if c != code and _component_kinds(p) == kinds and _steps(p.paths) < contexts
        ]
        if len(parts) > 1 and _partition(contexts, [steps for _, steps in parts]):
            for index in range(len(param.components)):
                stored[f"{code}${index}"] = tuple(f"{c}${index}" for c, _ in parts)


def _component_kinds(param: SearchParameter) -> tuple[tuple[str, frozenset[Any]], ...]:
    return tuple((c.type, _steps(c.paths)) for c in param.components)


def _partition(whole: frozenset[Any], parts: list[frozenset[Any]]) -> bool:
    """True if parts are disjoint and together make whole."""
    return sum(len(part) for part in parts) == len(whole) and frozenset().union(*parts) == whole


def _resolved(code: str, stored: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    if code not in stored:
        return (code,)
    return tuple(dict.fromkeys(c for part in stored[code] for c in _resolved(part, stored)))


# --- index rows ------------------------------------------------------------------------------


@dataclass
class IndexRows:
    """The search index rows of one resource version, by table; each row starts with
    the parameter code and ends with the composite group (0 outside composites)."""

    token: list[tuple[Any, ...]] = field(default_factory=list)
    string: list[tuple[Any, ...]] = field(default_factory=list)
    date: list[tuple[Any, ...]] = field(default_factory=list)
    number: list[tuple[Any, ...]] = field(default_factory=list)
    quantity: list[tuple[Any, ...]] = field(default_factory=list)
    reference: list[tuple[Any, ...]] = field(default_factory=list)
    uri: list[tuple[Any, ...]] = field(default_factory=list)

    def tables(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """Yield (table, rows) for each table with rows, each row once."""
        for name in _TABLES:
            rows = getattr(self, name)
            if rows:
                yield name, rows

    def deduplicate(self) -> None:
        """Keep one of each row (two paths can reach the same value)."""
        for name in _TABLES:
            rows = getattr(self, name)
            if len(rows) > 1:
                setattr(self, name, list(dict.fromkeys(rows)))


_TABLES = ("token", "string", "date", "number", "quantity", "reference", "uri")


@dataclass(frozen=True)
class _IndexPlan:
    """Which parameters to evaluate for a resource, by the top-level keys it has."""

    by_key: dict[str, tuple[tuple[SearchParameter, CompiledPath], ...]]
    always: tuple[tuple[SearchParameter, CompiledPath | None], ...]


@cache
def _index_plan(resource_type: str) -> _IndexPlan:
    by_key: dict[str, list[tuple[SearchParameter, CompiledPath]]] = {}
    always: list[tuple[SearchParameter, CompiledPath | None]] = []
    derived = shared_rows(resource_type).derived
    for param in search_parameters(resource_type).values():
        if not param.compiled or param.code in derived:
            continue
        if param.special is not None:
            always.append((param, None))
            continue
        for path in param.paths:
            if not path.steps:
                always.append((param, path))
                continue
            for key, _ in path.steps[0].keys:
                by_key.setdefault(key, []).append((param, path))
    return _IndexPlan({k: tuple(v) for k, v in by_key.items()}, tuple(always))


# The parameters to evaluate, by resource type and top-level keys: resources of a type
# mostly share a handful of key sets, so each set's list is worked out once.
_WORK: dict[tuple[str, ...], tuple[tuple[SearchParameter, CompiledPath | None], ...]] = {}
MAX_REMEMBERED_SHAPES = 4096


def _work_for(shape: tuple[str, ...]) -> tuple[tuple[SearchParameter, CompiledPath | None], ...]:
    plan = _index_plan(shape[0])
    work: list[tuple[SearchParameter, CompiledPath | None]] = list(plan.always)
    seen: set[tuple[str, int]] = set()
    for key in shape[1:]:
        for param, candidate in plan.by_key.get(key, ()):
            marker = (param.code, id(candidate))
            if marker not in seen:  # a path whose first step has several keys
                seen.add(marker)
                work.append((param, candidate))
    if len(_WORK) >= MAX_REMEMBERED_SHAPES:
        _WORK.clear()
    _WORK[shape] = found = tuple(work)
    return found


def index_rows(resource: dict[str, Any], local_base: str | None = None) -> IndexRows:
    """Return the index rows for resource from every compiled parameter of its type.

    Only parameters whose path starts at a key the resource has are evaluated. An
    absolute reference under local_base (this server's FHIR base URL) is indexed as the
    local Type/id it names.
    """
    rows = IndexRows()
    shape = (resource["resourceType"], *resource)
    work = _WORK.get(shape)
    if work is None:
        work = _work_for(shape)
    group = 0
    for param, path in work:
        if param.special is not None:
            for value in param.special(resource):
                _add(rows, param.type, param.code, value, _primitive_type(value), 0)
        elif param.type == "composite":
            assert path is not None
            for element, _ in _evaluate_root(resource, path):
                found = [
                    [
                        item
                        for relative in component.paths
                        for item in evaluate(element, relative.steps)
                    ]
                    for component in param.components
                ]
                if not all(found):
                    continue  # a composite matches only with every part: nothing to find
                group += 1
                for index, (component, values) in enumerate(
                    zip(param.components, found, strict=True)
                ):
                    for value, value_type in values:
                        _add(
                            rows,
                            component.type,
                            f"{param.code}${index}",
                            value,
                            value_type,
                            group,
                            local_base,
                        )
        else:
            assert path is not None
            for value, value_type in evaluate(resource, path.steps):
                _add(rows, param.type, param.code, value, value_type, 0, local_base)
    rows.deduplicate()  # here, so that writers holding the lock need not
    return rows


def _evaluate_root(resource: dict[str, Any], path: CompiledPath) -> Iterator[tuple[Any, str]]:
    if not path.steps:  # the composite's context is the resource itself
        yield resource, path.root
        return
    yield from evaluate(resource, path.steps)


def _primitive_type(value: Any) -> str:
    return "boolean" if isinstance(value, bool) else "string"


# Indexed text is cut to this many characters: a database index entry has a bounded
# size (PostgreSQL refuses a B-tree row over a third of a page), and a client may send a
# name or a code megabytes long. Searches cut their values the same way (indexed_text),
# so a value is found by its first MAX_INDEXED_CHARS characters.
MAX_INDEXED_CHARS = 256


def indexed_text(text: str) -> str:
    """Return text as it is indexed and searched: its first MAX_INDEXED_CHARS characters."""
    return text if len(text) <= MAX_INDEXED_CHARS else text[:MAX_INDEXED_CHARS]


def _cut(text: str | None) -> str | None:
    return None if text is None else indexed_text(text)


def _add(
    rows: IndexRows,
    param_type: str,
    code: str,
    value: Any,
    value_type: str,
    group: int,
    local_base: str | None = None,
) -> None:
    if param_type == "token":
        if isinstance(value, str):  # a code, id or uri: most token rows
            rows.token.append((code, None, indexed_text(value), None, group))
            return
        rows.token.extend(
            [
                (code, _cut(s), _cut(c), t, group)
                for s, c, t in token_values(value, value_type)
                if c is not None or t is not None
            ]
        )
        if value_type == "Identifier" and isinstance(value, dict):
            rows.token.extend(
                (f"{code}:of-type", _cut(s), indexed_text(f"{c}|{value.get('value')}"), None, group)
                for s, c, _ in token_values(value.get("type"), "CodeableConcept")
                if c is not None
            )
    elif param_type == "string":
        rows.string.extend(
            (code, indexed_text(normalise(v)), v, group) for v in string_values(value, value_type)
        )
    elif param_type == "date":
        span = date_span(value, value_type)
        if span is not None:
            rows.date.append((code, span[0], span[1], group))
    elif param_type == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.number.append((code, float(value), group))
    elif param_type == "quantity":
        quantity = quantity_value(value)
        if quantity is not None:
            rows.quantity.append((code, *quantity, group))
    elif param_type == "reference":
        rows.reference.extend(
            (code, kind, _cut(target), system, identifier, group)
            for kind, target, system, identifier in reference_values(value, value_type, local_base)
        )
    elif param_type == "uri" and isinstance(value, str):
        rows.uri.append((code, indexed_text(value), group))
    elif param_type == "special" and code == "near" and isinstance(value, tuple):
        rows.number.append((NEAR_LATITUDE, value[0], group))
        rows.number.append((NEAR_LONGITUDE, value[1], group))


def token_values(
    value: Any, value_type: str
) -> Iterator[tuple[str | None, str | None, str | None]]:
    """Yield (system, code, text) for a Coding, CodeableConcept, Identifier, ContactPoint,
    code, boolean or other primitive."""
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, str):
        yield None, value, None
    elif isinstance(value, dict):
        if value_type == "CodeableConcept" or "coding" in value:
            text = value.get("text")
            codings = value.get("coding") or []
            for coding in codings:
                yield coding.get("system"), coding.get("code"), _text(text or coding.get("display"))
            if not codings and text:
                yield None, None, _text(text)
        elif value_type == "Identifier":
            type_text = (value.get("type") or {}).get("text")
            yield value.get("system"), value.get("value"), _text(type_text)
        elif value_type == "ContactPoint":
            yield value.get("system"), value.get("value"), None
        elif value_type in ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity"):
            yield value.get("system"), value.get("code"), None
        elif value_type == "Reference":
            return
        else:  # Coding
            yield value.get("system"), value.get("code"), _text(value.get("display"))


def _text(text: Any) -> str | None:
    return normalise(text) if isinstance(text, str) else None


def normalise(text: str) -> str:
    """Return text case-folded, without accents, with single spaces (string search)."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def string_values(value: Any, value_type: str) -> Iterator[str]:
    """Yield the strings a string parameter matches for a value of value_type."""
    if isinstance(value, str):
        yield value
        return
    if not isinstance(value, dict):
        return
    parts = (
        _NAME_PARTS
        if value_type == "HumanName"
        else _ADDRESS_PARTS
        if value_type == "Address"
        else ("text",)
    )
    for part in parts:
        item = value.get(part)
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            yield from (i for i in item if isinstance(i, str))


def date_span(value: Any, value_type: str) -> tuple[str, str] | None:
    """Return [low, high) as sortable instants for a date, dateTime, instant, Period or Timing."""
    try:
        if isinstance(value, str):
            return instant_range(value)
        if not isinstance(value, dict):
            return None
        if value_type == "Period":
            start = instant_range(value["start"])[0] if "start" in value else LOWEST_INSTANT
            end = instant_range(value["end"])[1] if "end" in value else HIGHEST_INSTANT
            return start, end
        if value_type == "Timing":
            spans = [date_span(event, "dateTime") for event in value.get("event", [])]
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if bounds:
                spans.append(date_span(bounds, "Period"))
            found = [s for s in spans if s is not None]
            if found:
                return min(s[0] for s in found), max(s[1] for s in found)
    except (ValueError, KeyError):
        return None
    return None


def quantity_value(
    value: Any,
) -> tuple[float, str | None, str | None, float | None, str | None] | None:
    """Return (value, system, code, canonical value, canonical unit) for a Quantity."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        return None
    number = float(value["value"])
    system = value.get("system")
    code = value.get("code") or value.get("unit") or value.get("currency")
    canonical = canonical_quantity(number, system, value.get("code"))
    if canonical is None:
        return number, system, code, None, None
    return number, system, code, canonical[0], canonical[1]


def reference_values(
    value: Any, value_type: str, local_base: str | None = None
) -> Iterator[tuple[str | None, str | None, str | None, str | None]]:
    """Yield (target type, target id or URL, identifier system, identifier value)."""
    if isinstance(value, str):  # canonical or uri
        yield None, value, None, None
        return
    if not isinstance(value, dict):
        return
    text = value.get("reference")
    identifier = value.get("identifier") if isinstance(value.get("identifier"), dict) else None
    if isinstance(text, str) and not text.startswith("#"):
        if local_base and text.startswith(local_base + "/"):
            text = text[len(local_base) + 1 :]
        literal = parse_reference(text)
        if literal is not None and literal.base is None:
            yield literal.resource_type, literal.id, None, None
        else:
            yield None, text, None, None
    if identifier is not None:
        yield None, None, identifier.get("system"), identifier.get("value")


@cache
def compartment_parameters(compartment: str) -> dict[str, tuple[str, ...]]:
    """Return {resource type: parameter codes} placing resources in compartment's compartments."""
    text = resources.files("bevan.fhir").joinpath("data/compartments.json").read_text()
    table: dict[str, dict[str, list[str]]] = json.loads(text)
    return {
        t: tuple(p for p in codes if p != "{def}")
        for t, codes in table.get(compartment, {}).items()
    }


def in_patient_compartment(resource_type: str) -> bool:
    """Return True if resources of this type hold patient data (the Patient compartment)."""
    return resource_type == "Patient" or resource_type in compartment_parameters("Patient")


@cache
def parameter_definitions(resource_type: str) -> dict[str, tuple[str, str]]:
    """Return (canonical URL, FHIRPath expression) of each search parameter of a type."""
    found: dict[str, tuple[str, str]] = {}
    for row in _rows():
        bases = row["base"]
        generic = "Resource" in bases or "DomainResource" in bases
        if (resource_type in bases or generic) and row.get("expression"):
            expression = row["expression"]
            if generic:
                expression = expression.replace("Resource.", f"{resource_type}.")
            found[row["code"]] = (row["url"], expression)
    return found
