"""The search grammar: a URL query string -> a typed, frozen SearchQuery.

Today this knows `_id`, `_lastUpdated`, and the token and reference parameters that are
indexed (see search_parameters.INDEXED_CODES), plus `_count`, `_total` and paging.
Anything else is reported as unknown: ignored and said so, or refused under
`Prefer: handling=strict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl

from bevan.fhir.dates import date_range
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.references import parse_reference
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search_parameters import INDEXED_CODES, search_parameters

DEFAULT_COUNT = 20
MAX_COUNT = 1000
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMETERS = frozenset({"_count", "_total", "_cursor", "_format", "_pretty"})


@dataclass(frozen=True)
class TokenValue:
    """One token to match: system None means any system; system "" means none."""

    code: str | None
    system: str | None = None


@dataclass(frozen=True)
class TokenCriterion:
    param: str
    values: tuple[TokenValue, ...]  # OR


@dataclass(frozen=True)
class ReferenceValue:
    id: str
    resource_type: str | None = None  # None: any type the parameter allows


@dataclass(frozen=True)
class ReferenceCriterion:
    param: str
    values: tuple[ReferenceValue, ...]  # OR


@dataclass(frozen=True)
class IdCriterion:
    ids: tuple[str, ...]  # OR


@dataclass(frozen=True)
class DateComparison:
    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class LastUpdatedCriterion:
    comparisons: tuple[DateComparison, ...]  # OR


Criterion = TokenCriterion | ReferenceCriterion | IdCriterion | LastUpdatedCriterion


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: criteria are ANDed; each criterion ORs its values."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = DEFAULT_COUNT
    total: str = "accurate"
    cursor: str | None = None
    applied: tuple[tuple[str, str], ...] = ()  # the parameters used, for the self link
    unknown: tuple[str, ...] = field(default=())


def parse_search(
    resource_type: str, query: str | list[tuple[str, str]], *, strict: bool = False
) -> SearchQuery:
    """Return the SearchQuery for a query string; raise InvalidRequest on a bad value."""
    if resource_type not in RESOURCE_TYPES:
        raise InvalidRequest(
            Issue(f"{resource_type!r} is not an R4 resource type", "not-supported")
        )
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    known = search_parameters(resource_type)
    criteria: list[Criterion] = []
    applied: list[tuple[str, str]] = []
    unknown: list[str] = []
    count, total, cursor = DEFAULT_COUNT, "accurate", None
    for name, value in pairs:
        base, _, modifier = name.partition(":")
        where = f"{resource_type}?{name}"
        if name == "_count":
            count = _parse_count(value)
            applied.append((name, value))
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest(
                    Issue(
                        f"_total must be none, estimate or accurate, not {value!r}",
                        expression=(where,),
                    )
                )
            total = value
            applied.append((name, value))
        elif name == "_cursor":
            cursor = value
        elif name in ("_format", "_pretty"):
            continue
        elif name == "_id" and not modifier:
            criteria.append(IdCriterion(tuple(v for v in value.split(",") if v)))
            applied.append((name, value))
        elif name == "_lastUpdated" and not modifier:
            criteria.append(_last_updated(value, where))
            applied.append((name, value))
        elif (
            base in known
            and base in INDEXED_CODES
            and not modifier
            or (
                base in known
                and known[base].type == "reference"
                and base in INDEXED_CODES
                and modifier in RESOURCE_TYPES
            )
        ):
            param = known[base]
            if param.type == "token":
                criteria.append(TokenCriterion(base, tuple(_token(v) for v in _split(value))))
            else:
                criteria.append(
                    ReferenceCriterion(
                        base, tuple(_reference(v, modifier or None, where) for v in _split(value))
                    )
                )
            applied.append((name, value))
        else:
            unknown.append(name)
    if unknown and strict:
        raise InvalidRequest(
            *(
                Issue(
                    f"search parameter {n!r} is not supported for {resource_type}",
                    code="not-supported",
                    expression=(f"{resource_type}?{n}",),
                )
                for n in unknown
            )
        )
    return SearchQuery(
        resource_type, tuple(criteria), count, total, cursor, tuple(applied), tuple(unknown)
    )


def _split(value: str) -> list[str]:
    # Commas separate OR values; a backslash escapes a literal comma.
    parts, current, escaped = [], "", False
    for char in value:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p]


def _parse_count(value: str) -> int:
    if not value.isdigit():
        raise InvalidRequest(
            Issue(f"_count must be a whole number, not {value!r}", expression=("_count",))
        )
    return min(int(value), MAX_COUNT)


def _token(value: str) -> TokenValue:
    if "|" not in value:
        return TokenValue(code=value, system=None)
    system, _, code = value.partition("|")
    return TokenValue(code=code or None, system=system)


def _reference(value: str, type_modifier: str | None, where: str) -> ReferenceValue:
    literal = parse_reference(value)
    if literal is not None:
        if type_modifier and literal.resource_type != type_modifier:
            raise InvalidRequest(Issue(f"{value!r} is not a {type_modifier}", expression=(where,)))
        return ReferenceValue(literal.id, literal.resource_type)
    return ReferenceValue(value, type_modifier)


def _last_updated(value: str, where: str) -> LastUpdatedCriterion:
    comparisons = []
    for item in _split(value):
        prefix = item[:2] if item[:2] in PREFIXES else "eq"
        text = item[2:] if item[:2] in PREFIXES else item
        try:
            low, high = date_range(text)
        except ValueError as error:
            raise InvalidRequest(Issue(str(error), expression=(where,))) from None
        comparisons.append(DateComparison(prefix, low, high))
    return LastUpdatedCriterion(tuple(comparisons))
