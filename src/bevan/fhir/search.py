"""The FHIR R4 search grammar: a query string -> a typed, frozen SearchQuery.

Every parameter type (number, date, string, token, reference, quantity, uri, composite,
and Location's special `near`), their modifiers and prefixes, chaining, reverse chaining
(`_has`), and the result parameters (`_sort`, `_count`, `_total`, `_summary`,
`_elements`, `_include`, `_revinclude`). Values are parsed here, once, into ranges and
normalised forms; the store compiles the result to SQL for its dialect.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from bevan.clinical.units import canonical_quantity
from bevan.fhir.dates import date_range, format_instant, shifted
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.limits import (
    MAX_OR_VALUES,
    MAX_SEARCH_PARAMETERS,
    MAX_SEARCH_VALUES,
    MAX_STORED_INTEGER,
)
from bevan.fhir.paging import DEFAULT_COUNT, parse_count
from bevan.fhir.references import parse_reference
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search_parameters import (
    NEAR_LATITUDE,
    NOT_SUPPORTED,
    SearchParameter,
    indexed_text,
    normalise,
    search_parameters,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MAX_CHAIN = 4
# Numbers are indexed as 64-bit floats: a search value beyond their range matches
# nothing any stored number could be, and its arithmetic would overflow.
MAX_EXPONENT = 308

_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "of-type", "missing"},
    "reference": {"identifier", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
    "special": {"missing"},
}


# --- criteria -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenValue:
    """A token to match: system None means any system; "" means no system."""

    code: str | None
    system: str | None = None


@dataclass(frozen=True)
class TokenMatch:
    param: str
    values: tuple[TokenValue, ...]  # OR
    modifier: str | None = None  # None | not | text


@dataclass(frozen=True)
class StringMatch:
    param: str
    values: tuple[str, ...]  # OR; normalised unless exact
    modifier: str | None = None  # None | exact | contains


@dataclass(frozen=True)
class Bound:
    """A prefixed search value as a range [low, high) (instants or numbers) and the value."""

    prefix: str
    low: Any
    high: Any
    value: Any = None


@dataclass(frozen=True)
class DateMatch:
    param: str
    bounds: tuple[Bound, ...]  # OR


@dataclass(frozen=True)
class NumberMatch:
    param: str
    bounds: tuple[Bound, ...]  # OR


@dataclass(frozen=True)
class QuantityValue:
    bound: Bound
    system: str | None = None
    code: str | None = None
    canonical: tuple[Bound, str] | None = None  # the bound in canonical units, and the unit


@dataclass(frozen=True)
class QuantityMatch:
    param: str
    values: tuple[QuantityValue, ...]  # OR


@dataclass(frozen=True)
class ReferenceValue:
    id: str | None = None  # a local id (with resource_type if known)
    resource_type: str | None = None
    url: str | None = None  # an external or canonical URL
    identifier: tuple[str | None, str | None] | None = None  # for :identifier


@dataclass(frozen=True)
class ReferenceMatch:
    param: str
    values: tuple[ReferenceValue, ...]  # OR


@dataclass(frozen=True)
class UriMatch:
    param: str
    values: tuple[str, ...]
    modifier: str | None = None  # None | below | above


@dataclass(frozen=True)
class CompositeMatch:
    param: str
    alternatives: tuple[tuple[Criterion, ...], ...]  # OR of ANDed components (params code$i)


@dataclass(frozen=True)
class NearMatch:
    """`near`: positions within distance_km of a point, by great-circle distance."""

    param: str
    latitude: float
    longitude: float
    distance_km: float


@dataclass(frozen=True)
class Missing:
    param: str
    table: str
    missing: bool
    # A composite's other components (stored code, table): present where one element
    # has every part.
    others: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IdMatch:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LastUpdatedMatch:
    bounds: tuple[Bound, ...]


@dataclass(frozen=True)
class Chain:
    """`param:Type.inner`: resources whose reference param points at a matching target."""

    param: str
    target_types: tuple[str, ...]
    inner: Criterion
    # What the caller may see of the targets (Restrictions), checked per target as a
    # direct search of their type would check them.
    limits: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class Has:
    """`_has:Source:param:inner`: resources some matching Source points at through param."""

    source_type: str
    param: str
    inner: Criterion
    # What the caller may see of the sources (Restrictions), checked per source as a
    # direct search of their type would check them.
    limits: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class AnyOf:
    """Any of the criteria (a compartment's parameters)."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Restriction:
    """A limit on what the caller may see (access control): checked per candidate, never
    the index rows a search starts from."""

    inner: Criterion


Criterion = (
    TokenMatch
    | StringMatch
    | DateMatch
    | NumberMatch
    | QuantityMatch
    | ReferenceMatch
    | UriMatch
    | CompositeMatch
    | NearMatch
    | Missing
    | IdMatch
    | LastUpdatedMatch
    | Chain
    | Has
    | AnyOf
    | Restriction
)

TABLE_OF_TYPE = {
    "token": "token",
    "string": "string",
    "date": "date",
    "number": "number",
    "quantity": "quantity",
    "reference": "reference",
    "uri": "uri",
    "special": "token",
}


@dataclass(frozen=True)
class SortKey:
    param: str  # _id, _lastUpdated or a parameter code
    table: str | None  # None for _id / _lastUpdated; "near" for the distance from origin
    descending: bool = False
    origin: tuple[float, float] | None = None  # for near: the point searched from


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str | None  # None: every reference parameter (*)
    target_type: str | None = None
    iterate: bool = False


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after (or before) the row with these sort values and row key."""

    values: tuple[Any, ...]
    rid: int
    before: bool = False

    def encode(self) -> str:
        raw = json.dumps([list(self.values), self.rid, self.before], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Return the cursor a page link carries; raise InvalidRequest for one this
        server did not make (a link edited by hand, or cut short)."""
        try:
            padded = text + "=" * (-len(text) % 4)
            values, rid, before = json.loads(base64.urlsafe_b64decode(padded))
            if not isinstance(values, list) or not all(map(_cursor_value, values)):
                raise ValueError("its sort values are not those of a page")
            if type(rid) is not int or not 0 <= rid <= MAX_STORED_INTEGER:
                raise ValueError("its row key is not a stored row's")
            if not isinstance(before, bool):
                raise ValueError("its direction is not true or false")
            return cls(tuple(values), rid, before)
        except (ValueError, TypeError) as error:
            shown = text if len(text) <= 60 else text[:60] + "..."
            raise InvalidRequest(
                Issue(
                    f"_cursor {shown!r} is not a page of this search: {error}",
                    expression=("_cursor",),
                )
            ) from None

    def fits(self, sort: tuple[SortKey, ...]) -> bool:
        """Return True if the cursor's sort values are of the kinds sort orders by (no
        sort: none, or one row key of the resource a chain orders the page by)."""
        if not sort:
            return all(type(v) is int for v in self.values) and len(self.values) <= 1
        if len(self.values) != len(sort):
            return False
        for key, value in zip(sort, self.values, strict=True):
            numeric = key.table in ("number", "quantity", "near")
            if value is not None and isinstance(value, str) == numeric:
                return False
        return True


def _cursor_value(value: Any) -> bool:
    """Return True for a sort value a page of this server could end on."""
    if value is None:
        return True
    if isinstance(value, str):
        return "\x00" not in value
    if type(value) is int:
        return -MAX_STORED_INTEGER - 1 <= value <= MAX_STORED_INTEGER
    return type(value) is float and math.isfinite(value)


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: criteria are ANDed; each criterion ORs its values."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    total: str = "default"  # none | estimate | accurate | default (when it is free)
    cursor: Cursor | None = None
    sort: tuple[SortKey, ...] = ()
    include: tuple[Include, ...] = ()
    revinclude: tuple[Include, ...] = ()
    summary: str | None = None  # true | text | data | count | false
    elements: tuple[str, ...] = ()
    applied: tuple[tuple[str, str], ...] = ()  # what was used, for the self link
    unknown: tuple[str, ...] = field(default=())

    def with_criteria(self, *extra: Criterion) -> SearchQuery:
        """Return this query with more criteria ANDed on (a compartment, say)."""
        return replace(self, criteria=(*self.criteria, *extra))


# --- parsing ----------------------------------------------------------------------------------


def parse_search(
    resource_type: str,
    query: str | list[tuple[str, str]],
    *,
    strict: bool = False,
    base_url: str | None = None,
) -> SearchQuery:
    """Return the SearchQuery for a query; raise InvalidRequest naming a bad parameter."""
    if resource_type not in RESOURCE_TYPES:
        raise InvalidRequest(
            Issue(f"{resource_type!r} is not an R4 resource type", "not-supported")
        )
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    if len(pairs) > MAX_SEARCH_PARAMETERS:
        raise InvalidRequest(
            Issue(
                f"a search may have at most {MAX_SEARCH_PARAMETERS} parameters, "
                f"this one has {len(pairs)}; narrow it, or split it into several searches",
                code="too-costly",
                expression=(f"{resource_type}?",),
            )
        )
    values = sum(value.count(",") + 1 for _, value in pairs)
    if values > MAX_SEARCH_VALUES:
        raise InvalidRequest(
            Issue(
                f"a search may have at most {MAX_SEARCH_VALUES} values in all its parameters, "
                f"this one has {values}; split it into several searches",
                code="too-costly",
                expression=(f"{resource_type}?",),
            )
        )
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest(
                Issue(
                    "a search parameter may not hold the NUL character (U+0000, %00)",
                    code="value",
                    expression=(f"{resource_type}?{name.replace(chr(0), '')}",),
                )
            )
    parser = _Parser(resource_type, strict, base_url)
    for name, value in pairs:
        parser.add(name, value)
    return parser.result()


class _Parser:
    def __init__(self, resource_type: str, strict: bool, base_url: str | None) -> None:
        self.resource_type = resource_type
        self.strict = strict
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.criteria: list[Criterion] = []
        self.applied: list[tuple[str, str]] = []
        self.unknown: list[str] = []
        self.count = DEFAULT_COUNT
        self.total = "default"
        self.cursor: Cursor | None = None
        self.sort: tuple[SortKey, ...] = ()
        self.include: list[Include] = []
        self.revinclude: list[Include] = []
        self.summary: str | None = None
        self.elements: tuple[str, ...] = ()

    def result(self) -> SearchQuery:
        self.sort = tuple(self._placed_sort(key) for key in self.sort)
        if self.unknown and self.strict:
            raise InvalidRequest(
                *(
                    Issue(
                        f"search parameter {n!r} is not supported for {self.resource_type}",
                        code="not-supported",
                        expression=(f"{self.resource_type}?{n}",),
                    )
                    for n in self.unknown
                )
            )
        if self.cursor is not None and not self.cursor.fits(self.sort):
            raise InvalidRequest(
                Issue(
                    "_cursor is not a page of this search (it was made for another _sort)",
                    expression=("_cursor",),
                )
            )
        return SearchQuery(
            self.resource_type,
            tuple(self.criteria),
            self.count,
            self.total,
            self.cursor,
            self.sort,
            tuple(self.include),
            tuple(self.revinclude),
            self.summary,
            self.elements,
            tuple(self.applied),
            tuple(self.unknown),
        )

    def where(self, name: str) -> tuple[str]:
        return (f"{self.resource_type}?{name}",)

    def _placed_sort(self, key: SortKey) -> SortKey:
        # Sorting by near is by distance from the point the near parameter names
        if key.table != "near":
            return key
        points = [c for c in self.criteria if isinstance(c, NearMatch) and c.param == key.param]
        if len(points) != 1:
            raise InvalidRequest(
                Issue(
                    f"_sort={key.param} needs one {key.param} parameter to measure from",
                    expression=("_sort",),
                )
            )
        return replace(key, origin=(points[0].latitude, points[0].longitude))

    def add(self, name: str, value: str) -> None:
        if name in ("_format", "_pretty", "_cursor"):
            if name == "_cursor":
                self.cursor = Cursor.decode(value)
            return
        result = self._result_parameter(name, value)
        if result:
            self.applied.append((name, value))
            return
        try:
            criterion = parse_criterion(self.resource_type, name, value, self.base_url)
        except UnknownParameter:
            self.unknown.append(name)
            return
        except InvalidRequest as error:
            raise InvalidRequest(
                *(i if i.expression else _placed(i, self.where(name)) for i in error.issues)
            ) from None
        self.criteria.append(criterion)
        self.applied.append((name, value))

    def _result_parameter(self, name: str, value: str) -> bool:
        if name == "_count":
            self.count = parse_count(value)
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest(
                    Issue(
                        f"_total must be none, estimate or accurate, not {value!r}",
                        expression=("_total",),
                    )
                )
            self.total = value
        elif name == "_sort":
            self.sort = tuple(
                _sort_key(self.resource_type, item) for item in value.split(",") if item
            )
        elif name in ("_include", "_include:iterate", "_include:recurse"):
            self.include.append(
                _include(self.resource_type, value, name != "_include", reverse=False)
            )
        elif name in ("_revinclude", "_revinclude:iterate", "_revinclude:recurse"):
            self.revinclude.append(
                _include(self.resource_type, value, name != "_revinclude", reverse=True)
            )
        elif name == "_summary":
            if value not in ("true", "text", "data", "count", "false"):
                raise InvalidRequest(
                    Issue(
                        f"_summary must be true, text, data, count or false, not {value!r}",
                        expression=("_summary",),
                    )
                )
            self.summary = value
        elif name == "_elements":
            self.elements = tuple(e.strip() for e in value.split(",") if e.strip())
        else:
            return False
        return True


def _placed(issue: Issue, expression: tuple[str]) -> Issue:
    return Issue(issue.diagnostics, issue.code, issue.severity, expression)


class UnknownParameter(Exception):
    """The parameter is not one this resource type has (or we support)."""


def parse_criterion(
    resource_type: str, name: str, value: str, base_url: str | None = None
) -> Criterion:
    """Return the criterion for one `name=value` pair of a search on resource_type."""
    if name.startswith("_has:"):
        return _has(resource_type, name, value, base_url)
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    if dot:
        return _chain(resource_type, code, modifier, rest, value, base_url)
    if code == "_id":
        if modifier:
            raise InvalidRequest(
                Issue(f"_id takes no modifier ({modifier!r})", code="not-supported")
            )
        return IdMatch(tuple(_split(value)))
    if code == "_lastUpdated":
        if modifier == "missing":
            raise UnknownParameter(name)
        return LastUpdatedMatch(tuple(_date_bound(v) for v in _split(value)))
    if code in NOT_SUPPORTED:
        raise UnknownParameter(name)
    param = search_parameters(resource_type).get(code)
    if param is None or not param.compiled:
        raise UnknownParameter(name)
    return _criterion(param, modifier, value, base_url)


def _criterion(
    param: SearchParameter, modifier: str, value: str, base_url: str | None
) -> Criterion:
    kind = param.type
    if modifier and modifier not in _MODIFIERS.get(kind, set()):
        if kind == "reference" and modifier in RESOURCE_TYPES:
            pass  # subject:Patient=123
        else:
            raise InvalidRequest(
                Issue(
                    f"the modifier :{modifier} is not supported on {kind} parameter {param.code!r}",
                    "not-supported",
                )
            )
    if modifier == "missing":
        if value not in ("true", "false"):
            raise InvalidRequest(Issue(f":missing takes true or false, not {value!r}"))
        missing = value == "true"
        if kind == "special" and param.code == "near":
            return Missing(NEAR_LATITUDE, "number", missing)
        if kind != "composite":
            return Missing(param.code, TABLE_OF_TYPE[kind], missing)
        # A composite is present where one element has every part.
        first, *others = [
            (f"{param.code}${i}", TABLE_OF_TYPE[c.type]) for i, c in enumerate(param.components)
        ]
        return Missing(*first, missing, tuple(others))
    values = _split(value)
    if not values:
        raise InvalidRequest(Issue(f"{param.code!r} needs a value"))
    if kind == "special" and param.code == "near":
        if len(values) > 1:
            raise InvalidRequest(Issue(f"{param.code!r} takes one point, not {len(values)}"))
        return _near(param.code, values[0])
    if kind in ("token", "special"):
        if modifier == "of-type":
            return TokenMatch(f"{param.code}:of-type", tuple(_of_type(v) for v in values))
        if modifier == "text":
            return TokenMatch(param.code, tuple(TokenValue(normalise(v)) for v in values), "text")
        return TokenMatch(param.code, tuple(_token(v) for v in values), modifier or None)
    if kind == "string":
        if modifier == "exact":
            return StringMatch(param.code, tuple(values), "exact")
        return StringMatch(
            param.code, tuple(indexed_text(normalise(v)) for v in values), modifier or None
        )
    if kind == "date":
        return DateMatch(param.code, tuple(_date_bound(v) for v in values))
    if kind == "number":
        return NumberMatch(param.code, tuple(_number_bound(v) for v in values))
    if kind == "quantity":
        return QuantityMatch(param.code, tuple(_quantity(v) for v in values))
    if kind == "reference":
        type_modifier = modifier if modifier in RESOURCE_TYPES else None
        if modifier == "identifier":
            return ReferenceMatch(
                param.code, tuple(ReferenceValue(identifier=_identifier(v)) for v in values)
            )
        return ReferenceMatch(
            param.code, tuple(_reference(v, type_modifier, param, base_url) for v in values)
        )
    if kind == "uri":
        return UriMatch(param.code, tuple(indexed_text(v) for v in values), modifier or None)
    if kind == "composite":
        return CompositeMatch(param.code, tuple(_composite(param, v, base_url) for v in values))
    raise UnknownParameter(param.code)


# Distances a near search may give, in km per unit (UCUM codes, and the plain names).
NEAR_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344}
# Beyond this a bounding box in latitude and longitude no longer describes the circle
# (HAPI FHIR's limit too).
MAX_NEAR_KM = 10_000.0


def _near(code: str, value: str) -> NearMatch:
    """Return the NearMatch for latitude|longitude[|distance[|units]].

    Without a distance the position must be the point itself, as HAPI FHIR reads it.
    """
    parts = value.split("|")
    if len(parts) < 2 or len(parts) > 4:
        raise InvalidRequest(
            Issue(f"{code} reads latitude|longitude|distance|units, not {value!r}")
        )
    latitude = _coordinate(code, "latitude", parts[0], 90.0)
    longitude = _coordinate(code, "longitude", parts[1], 180.0)
    distance = 0.0
    if len(parts) > 2 and parts[2]:
        distance = _near_number(code, "distance", parts[2])
    units = parts[3] if len(parts) > 3 and parts[3] else "km"
    if units not in NEAR_UNITS:
        raise InvalidRequest(
            Issue(f"{code}'s distance units must be one of {', '.join(NEAR_UNITS)}, not {units!r}")
        )
    distance_km = distance * NEAR_UNITS[units]
    if not 0.0 <= distance_km <= MAX_NEAR_KM:
        raise InvalidRequest(
            Issue(f"{code}'s distance must be from 0 to {MAX_NEAR_KM:g} km, not {distance_km:g}")
        )
    return NearMatch(code, latitude, longitude, distance_km)


def _coordinate(code: str, name: str, text: str, limit: float) -> float:
    number = _near_number(code, name, text)
    if not -limit <= number <= limit:
        raise InvalidRequest(
            Issue(f"{code}'s {name} must be from {-limit:g} to {limit:g}, not {text!r}")
        )
    return number


def _near_number(code: str, name: str, text: str) -> float:
    try:
        number = float(Decimal(text.strip()))
    except (InvalidOperation, ValueError):
        raise InvalidRequest(Issue(f"{code}'s {name} {text!r} is not a number")) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidRequest(Issue(f"{code}'s {name} {text!r} is not a number"))
    return number


def _composite(param: SearchParameter, value: str, base_url: str | None) -> tuple[Criterion, ...]:
    parts = value.split("$")
    if len(parts) != len(param.components):
        raise InvalidRequest(
            Issue(
                f"{param.code!r} takes {len(param.components)} values joined by '$', got {value!r}"
            )
        )
    out: list[Criterion] = []
    for index, (component, part) in enumerate(zip(param.components, parts, strict=True)):
        stand_in = SearchParameter(f"{param.code}${index}", component.type, param.resource_type)
        out.append(_criterion(stand_in, "", part.replace(",", "\\,"), base_url))
    return tuple(out)


def _chain(
    resource_type: str,
    code: str,
    type_modifier: str,
    rest: str,
    value: str,
    base_url: str | None,
    depth: int = 1,
) -> Criterion:
    param = search_parameters(resource_type).get(code)
    if param is None or param.type != "reference":
        raise InvalidRequest(
            Issue(
                f"{code!r} is not a reference parameter of {resource_type}, so it cannot be chained",
                "not-supported",
            )
        )
    if depth > MAX_CHAIN:
        raise InvalidRequest(Issue(f"chains may be at most {MAX_CHAIN} links long", "too-costly"))
    if type_modifier:
        if type_modifier not in RESOURCE_TYPES:
            raise InvalidRequest(
                Issue(f"{type_modifier!r} is not a resource type", "not-supported")
            )
        targets: tuple[str, ...] = (type_modifier,)
    else:
        targets = param.targets or tuple(sorted(RESOURCE_TYPES))
    inner_head = rest.partition(".")[0].partition(":")[0]
    usable = tuple(
        t
        for t in targets
        if inner_head in ("_id", "_lastUpdated") or inner_head in search_parameters(t)
    )
    if not usable:
        raise InvalidRequest(
            Issue(
                f"none of {', '.join(targets)} has a search parameter {inner_head!r} to chain to",
                "not-supported",
            )
        )
    inners = tuple(parse_criterion(t, rest, value, base_url) for t in usable)
    if len(usable) == 1:
        return Chain(code, usable, inners[0])
    return AnyOf(tuple(Chain(code, (t,), inner) for t, inner in zip(usable, inners, strict=True)))


def _has(resource_type: str, name: str, value: str, base_url: str | None) -> Criterion:
    parts = name.split(":", 3)
    if len(parts) != 4 or not parts[3]:
        raise InvalidRequest(
            Issue(f"{name!r} must read _has:Type:reference-parameter:search-parameter")
        )
    _, source_type, param_code, inner_name = parts
    if source_type not in RESOURCE_TYPES:
        raise InvalidRequest(
            Issue(f"{source_type!r} in {name!r} is not a resource type", "not-supported")
        )
    param = search_parameters(source_type).get(param_code)
    if param is None or param.type != "reference":
        raise InvalidRequest(
            Issue(f"{param_code!r} is not a reference parameter of {source_type}", "not-supported")
        )
    return Has(source_type, param_code, parse_criterion(source_type, inner_name, value, base_url))


def _split(value: str) -> list[str]:
    """Split OR values on commas; a backslash escapes a comma, '$', '|' or backslash."""
    parts, current, escaped = [], "", False
    for char in value:
        if escaped:
            current += char if char in ",$|\\" else "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    values = [p for p in parts if p != ""]
    if len(values) > MAX_OR_VALUES:
        raise InvalidRequest(
            Issue(
                f"a search parameter may have at most {MAX_OR_VALUES} values separated by "
                f"commas, this one has {len(values)}; split it into several searches",
                code="too-costly",
            )
        )
    return values


def _token(value: str) -> TokenValue:
    if "|" not in value:
        return TokenValue(code=indexed_text(value), system=None)
    system, _, code = value.partition("|")
    return TokenValue(code=indexed_text(code) or None, system=indexed_text(system))


def _of_type(value: str) -> TokenValue:
    parts = value.split("|")
    if len(parts) != 3 or not all(parts):
        raise InvalidRequest(Issue(f":of-type takes type-system|type-code|value, not {value!r}"))
    return TokenValue(code=indexed_text(f"{parts[1]}|{parts[2]}"), system=indexed_text(parts[0]))


def _identifier(value: str) -> tuple[str | None, str | None]:
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system or None, code or None


def _reference(
    value: str, type_modifier: str | None, param: SearchParameter, base_url: str | None
) -> ReferenceValue:
    text = value
    if base_url and text.startswith(base_url):
        text = text[len(base_url) :]
    literal = parse_reference(text)
    if literal is not None and literal.base is None:
        if type_modifier and literal.resource_type != type_modifier:
            raise InvalidRequest(Issue(f"{value!r} is not a {type_modifier}"))
        return ReferenceValue(id=literal.id, resource_type=literal.resource_type)
    if "://" in text or text.startswith("urn:"):
        return ReferenceValue(url=indexed_text(text))
    if "/" in text:
        raise InvalidRequest(
            Issue(f"{value!r} is not a reference: use an id, Type/id or an absolute URL")
        )
    return ReferenceValue(id=text, resource_type=type_modifier)


def _split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and not value[2:3].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _date_bound(value: str) -> Bound:
    prefix, text = _split_prefix(value)
    try:
        low, high = date_range(text)
    except ValueError as error:
        raise InvalidRequest(Issue(str(error))) from None
    if prefix == "ap":  # approximately: widen by a tenth of the gap to now
        gap = abs((datetime.now(UTC) - low).total_seconds()) * 0.1
        low, high = shifted(low, -timedelta(seconds=gap)), shifted(high, timedelta(seconds=gap))
    return Bound(prefix, format_instant(low), format_instant(high))


def _decimal(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(Issue(f"{text!r} is not a number")) from None
    if not number.is_finite():
        raise InvalidRequest(Issue(f"{text!r} is not a finite number"))
    exponent = number.as_tuple().exponent
    digits = len(number.as_tuple().digits)
    if (
        not isinstance(exponent, int)
        or abs(exponent) > MAX_EXPONENT + digits
        or (number and not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT)
    ):
        raise InvalidRequest(
            Issue(f"{text!r} is beyond the numbers this server holds (about 1e{MAX_EXPONENT})")
        )
    return number


def _number_bound(value: str) -> Bound:
    prefix, text = _split_prefix(value)
    number = _decimal(text)
    # The precision of the value sets the range: 100 means [99.5, 100.5).
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    if prefix == "ap":
        half = max(half, abs(number) * Decimal("0.1"))
    return Bound(prefix, float(number - half), float(number + half), float(number))


def _quantity(value: str) -> QuantityValue:
    parts = value.split("|")
    if len(parts) not in (1, 3):
        raise InvalidRequest(Issue(f"a quantity reads [prefix]value[|system|code], not {value!r}"))
    bound = _number_bound(parts[0])
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    canonical = None
    if code is not None:
        low = canonical_quantity(bound.low, system, code)
        high = canonical_quantity(bound.high, system, code)
        point = canonical_quantity(bound.value, system, code)
        if low and high and point:
            canonical = (Bound(bound.prefix, low[0], high[0], point[0]), low[1])
    return QuantityValue(bound, system, code, canonical)


def _sort_key(resource_type: str, item: str) -> SortKey:
    descending = item.startswith("-")
    code = item.lstrip("-")
    if code in ("_id", "_lastUpdated"):
        return SortKey(code, None, descending)
    param = search_parameters(resource_type).get(code)
    if param is not None and param.type == "special" and code == "near":
        return SortKey(code, "near", descending)
    if param is None or not param.compiled or param.type not in TABLE_OF_TYPE:
        raise InvalidRequest(
            Issue(
                f"cannot sort {resource_type} by {code!r}: not a sortable parameter",
                "not-supported",
                expression=("_sort",),
            )
        )
    return SortKey(code, TABLE_OF_TYPE[param.type], descending)


def _include(resource_type: str, value: str, iterate: bool, *, reverse: bool) -> Include:
    name = "_revinclude" if reverse else "_include"
    if value == "*":
        return Include(resource_type, None, None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise InvalidRequest(
            Issue(f"{name} reads Type:parameter[:targetType], not {value!r}", expression=(name,))
        )
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in RESOURCE_TYPES or (target is not None and target not in RESOURCE_TYPES):
        raise InvalidRequest(
            Issue(f"{name}={value!r} names an unknown resource type", expression=(name,))
        )
    if not reverse and source != resource_type and not iterate:
        raise InvalidRequest(
            Issue(f"_include={value!r} must start with {resource_type}", expression=(name,))
        )
    if code != "*":
        param = search_parameters(source).get(code)
        if param is None or param.type != "reference":
            raise InvalidRequest(
                Issue(f"{code!r} is not a reference parameter of {source}", expression=(name,))
            )
    return Include(source, None if code == "*" else code, target, iterate)
