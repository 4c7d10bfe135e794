"""A slow, plain reading of FHIR R4 search (https://hl7.org/fhir/R4/search.html).

`matches` says whether one resource matches a search, by evaluating each official
SearchParameter's FHIRPath `expression` with fhirpathpy and applying the spec's matching
rules in Python. It is the oracle for the differential tests; it is meant to be obviously
right, not fast.

Choices where the spec leaves room (each one stated, so a disagreement can be judged):

- Dates without a time zone, and dates with only a day, are read as UTC.
- date: stored values and search values are both ranges at their precision ([low, high));
  a Period is its range, a missing start or end is unbounded. Prefixes follow the R4 table
  (eq: search range contains the target range; gt: the range above the search value
  overlaps the target; ge: gt or eq; sa: the target starts at or after the search range's
  end; eb: the target ends at or before the search range's start; ap: within 10% of the
  distance between now and the value).
- number and quantity: eq/ne use the implied precision range of the search value (100 means
  [99.5, 100.5)); gt/lt/ge/le/sa/eb compare the stored value with the search value exactly;
  ap is within 10% of the search value.
- quantity units: with the UCUM system (or no system), values are compared in canonical
  units for mass (ug, mg, g, kg), length (mm, cm, m), volume (mL, dL, L), `/min`, `%`,
  `mm[Hg]` and `kg/m2`. Temperatures (Cel, [degF]) are compared only in the same unit.
  `value||unit` matches Quantity.code or Quantity.unit, in any system.
- token on a primitive (code, boolean, id, string, uri) has no system: `code` and `|code`
  match it, `system|code` does not. ContactPoint matches on its value.
- token `:text` is string matching (starts-with, case- and accent-insensitive) on
  CodeableConcept.text, Coding.display and Identifier.type.text.
- token `:not` matches every resource that the same search without `:not` does not match
  (so resources without the element match).
- reference with a bare id matches a reference to any type with that id.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

SEARCH_PARAMETERS = Path(__file__).resolve().parents[3] / "shared/fhir-r4/search-parameters.json"
DEFAULT_BASE = "http://localhost/fhir"

# Parameters that shape the answer, not the set of matches.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)

Resources = dict[tuple[str, str], dict[str, Any]]
Query = list[tuple[str, str]]


class UnsupportedSearch(ValueError):
    """The reference evaluator does not know how to read this search."""


# -- the official SearchParameters -------------------------------------------------------


@dataclass(frozen=True)
class Component:
    definition: str  # the code of the component's own SearchParameter
    expression: str  # relative to each element of the composite's expression


@dataclass(frozen=True)
class SearchParameter:
    code: str
    type: str
    expression: str  # only the parts for this resource type
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()


@cache
def _rows() -> tuple[dict[str, Any], ...]:
    bundle = json.loads(SEARCH_PARAMETERS.read_text())
    return tuple(entry["resource"] for entry in bundle["entry"])


@cache
def _rows_by_url() -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in _rows()}


def _split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|`."""
    parts, depth, current = [], 0, ""
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [p for p in parts if p]


def _for_type(expression: str, resource_type: str) -> str:
    """Keep the parts of a shared expression that start at resource_type."""
    keep = []
    for part in _split_union(expression):
        head = re.match(r"^\(?\s*(\w+)", part)
        if head and head.group(1) in (resource_type, "Resource", "DomainResource"):
            keep.append(part)
    return " | ".join(keep)


@cache
def search_parameter(resource_type: str, code: str) -> SearchParameter | None:
    """Return the official SearchParameter `code` of resource_type, or None."""
    for row in _rows():
        if row["code"] != code:
            continue
        bases = row.get("base", [])
        if resource_type not in bases and "Resource" not in bases and "DomainResource" not in bases:
            continue
        components = tuple(
            Component(_rows_by_url()[c["definition"]]["code"], c["expression"])
            for c in row.get("component", [])
        )
        expression = row.get("expression", "")
        if not expression:
            continue
        return SearchParameter(
            code,
            row["type"],
            _for_type(expression, resource_type),
            tuple(row.get("target", [])),
            components,
        )
    return None


# -- FHIRPath --------------------------------------------------------------------------

_WHERE_RESOLVE = re.compile(r"\.where\(resolve\(\) is (\w+)\)")


_AS_OPERATOR = re.compile(r"\(([^()]+?) as (\w+)\)")
_AS_FUNCTION = re.compile(r"\.as\((\w+)\)")


def _for_fhirpathpy(expression: str) -> str:
    """Return expression in the FHIRPath that fhirpathpy evaluates the way search means it.

    fhirpathpy has no resolve(); `ref.where(resolve() is T)` keeps references to a T,
    which a literal reference says in its type segment. Search expressions use `as` on
    collections (`Observation.component.value as Quantity`), which strict FHIRPath refuses:
    they mean ofType(). `as(DateTime)` in code-value-date means dateTime.
    """
    expression = _WHERE_RESOLVE.sub(
        lambda m: f".where(reference.matches('(^|/){m.group(1)}/[^/]+(/_history/.*)?$'))",
        expression,
    )
    expression = _AS_OPERATOR.sub(lambda m: f"({m.group(1)}.ofType({m.group(2)}))", expression)
    expression = _AS_FUNCTION.sub(lambda m: f".ofType({m.group(1)})", expression)
    return expression.replace("ofType(DateTime)", "ofType(dateTime)")


@cache
def _compiled(expression: str) -> Any:
    return compile_fhirpath(_for_fhirpathpy(expression), models["r4"])


def evaluate(resource: dict[str, Any], expression: str) -> list[Any]:
    """Return what a FHIRPath expression gives on a resource (R4 model)."""
    if not expression:
        return []
    root = resource["resourceType"]
    expression = re.sub(r"\b(Resource|DomainResource)\.", f"{root}.", expression)
    return list(_compiled(expression)(resource, {}))


def values_of(resource: dict[str, Any], param: SearchParameter) -> list[Any]:
    return evaluate(resource, param.expression)


# -- the query language ----------------------------------------------------------------


def split_or(value: str) -> list[str]:
    """Split a parameter value on unescaped commas, unescaping `\\,` `\\$` `\\|` `\\\\`."""
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
    return parts


def _split_unescaped(value: str, separator: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in value:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _split_or_raw(value: str) -> list[str]:
    """Split on unescaped commas, keeping other escapes for the value's own grammar."""
    return _split_unescaped(value, ",")


# -- the entry point -------------------------------------------------------------------


def matches(
    resource: dict[str, Any],
    resource_type: str,
    query: Query,
    all_resources: Resources,
    base_url: str = DEFAULT_BASE,
) -> bool:
    """Return whether resource matches every parameter of query (repeated = AND)."""
    return _Context(all_resources, base_url).matches(resource, resource_type, query)


def matching_ids(
    resource_type: str, query: Query, all_resources: Resources, base_url: str = DEFAULT_BASE
) -> set[str]:
    """Return the ids of every resource of resource_type that matches query."""
    context = _Context(all_resources, base_url)
    return {
        id_
        for (type_, id_), resource in all_resources.items()
        if type_ == resource_type and context.matches(resource, resource_type, query)
    }


@dataclass(frozen=True)
class _Context:
    resources: Resources
    base_url: str
    memo: dict[tuple[int, str], list[Any]] = field(default_factory=dict)

    def evaluate(self, resource: dict[str, Any], expression: str) -> list[Any]:
        key = (id(resource), expression)
        if key not in self.memo:
            self.memo[key] = evaluate(resource, expression)
        return self.memo[key]

    def matches(self, resource: dict[str, Any], resource_type: str, query: Query) -> bool:
        if resource.get("resourceType") != resource_type:
            return False
        return all(
            self.matches_parameter(resource, resource_type, name, value)
            for name, value in query
            if name not in RESULT_PARAMETERS
        )

    def matches_parameter(
        self, resource: dict[str, Any], resource_type: str, name: str, value: str
    ) -> bool:
        if name.startswith("_has:"):
            return self._reverse_chain(resource, resource_type, name, value)
        if "." in name:
            return self._chain(resource, resource_type, name, value)
        code, _, modifier = name.partition(":")
        param = search_parameter(resource_type, code)
        if param is None:
            raise UnsupportedSearch(f"{resource_type} has no search parameter {code!r}")
        if modifier == "missing":
            present = bool(self._values(resource, param))
            return present if value == "false" else not present
        if param.type == "token" and modifier == "not":
            return not self._any_value(resource, param, "", value)
        return self._any_value(resource, param, modifier, value)

    def _values(self, resource: dict[str, Any], param: SearchParameter) -> list[Any]:
        if param.type == "composite":
            return self._complete_elements(resource, param)
        return self.evaluate(resource, param.expression)

    def _complete_elements(self, resource: dict[str, Any], param: SearchParameter) -> list[str]:
        """Return the composite's elements that have a value for every component: a
        composite is present (:missing=false) where it could match something."""
        complete = []
        for base in _split_union(param.expression):
            for index in range(len(self.evaluate(resource, base))):
                element = f"({base})[{index}]"
                if all(
                    any(
                        self.evaluate(resource, f"{element}.{part}")
                        for part in _split_union(component.expression)
                    )
                    for component in param.components
                ):
                    complete.append(element)
        return complete

    def _any_value(
        self, resource: dict[str, Any], param: SearchParameter, modifier: str, value: str
    ) -> bool:
        if param.type == "composite":
            return any(self._composite(resource, param, item) for item in _split_or_raw(value))
        found = self.evaluate(resource, param.expression)
        items = split_or(value)
        check = {
            "string": _string_matches,
            "token": _token_matches,
            "date": _date_matches,
            "number": _number_matches,
            "quantity": _quantity_matches,
            "uri": _uri_matches,
        }.get(param.type)
        if param.type == "reference":
            return any(self._reference_matches(found, param, modifier, item) for item in items)
        if check is None:
            raise UnsupportedSearch(f"search parameter type {param.type}")
        return any(check(found, modifier, item) for item in items)

    # reference ------------------------------------------------------------------------

    def local_target(self, reference: Any) -> tuple[str, str] | None:
        """Return (type, id) of a reference to a resource on this server, or None."""
        text = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(text, str):
            return None
        if text.startswith(self.base_url.rstrip("/") + "/"):
            text = text[len(self.base_url.rstrip("/")) + 1 :]
        text = re.sub(r"/_history/.*$", "", text)
        match = re.fullmatch(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})", text)
        return (match.group(1), match.group(2)) if match else None

    def _reference_matches(
        self, found: list[Any], param: SearchParameter, modifier: str, value: str
    ) -> bool:
        if modifier == "identifier":
            identifiers = [
                r["identifier"] for r in found if isinstance(r, dict) and "identifier" in r
            ]
            return _token_matches(identifiers, "", value)
        if modifier and modifier not in param.targets:
            raise UnsupportedSearch(f"reference modifier {modifier!r}")
        wanted_type, wanted_id, wanted_url = None, None, None
        if value.startswith(self.base_url.rstrip("/") + "/"):
            value = value[len(self.base_url.rstrip("/")) + 1 :]
        if "://" in value or value.startswith("urn:"):
            wanted_url = value
        elif "/" in value:
            wanted_type, _, wanted_id = value.partition("/")
        else:
            wanted_id = value
        if modifier:
            if wanted_type and wanted_type != modifier:
                return False
            wanted_type = modifier
        for reference in found:
            text = reference.get("reference") if isinstance(reference, dict) else reference
            if wanted_url is not None:
                if text == wanted_url:
                    return True
                continue
            target = self.local_target(reference)
            if target is None:
                continue
            if target[1] == wanted_id and (wanted_type is None or target[0] == wanted_type):
                return True
        return False

    def _chain(self, resource: dict[str, Any], resource_type: str, name: str, value: str) -> bool:
        head, _, rest = name.partition(".")
        code, _, type_modifier = head.partition(":")
        param = search_parameter(resource_type, code)
        if param is None or param.type != "reference":
            raise UnsupportedSearch(f"cannot chain through {resource_type}.{code}")
        for reference in self.evaluate(resource, param.expression):
            target = self.local_target(reference)
            if target is None or target not in self.resources:
                continue
            if type_modifier and target[0] != type_modifier:
                continue
            if search_parameter(target[0], rest.split(".")[0].split(":")[0]) is None:
                continue
            if self.matches_parameter(self.resources[target], target[0], rest, value):
                return True
        return False

    def _reverse_chain(
        self, resource: dict[str, Any], resource_type: str, name: str, value: str
    ) -> bool:
        # _has:Type:param:rest=value — some Type whose `param` points here matches rest.
        _, source_type, via, rest = name.split(":", 3)
        param = search_parameter(source_type, via)
        if param is None:
            raise UnsupportedSearch(f"{source_type} has no search parameter {via!r}")
        me = (resource_type, resource["id"])
        for (type_, _), source in self.resources.items():
            if type_ != source_type:
                continue
            if not any(self.local_target(r) == me for r in self.evaluate(source, param.expression)):
                continue
            if self.matches_parameter(source, source_type, rest, value):
                return True
        return False

    # composite ------------------------------------------------------------------------

    def _composite(self, resource: dict[str, Any], param: SearchParameter, value: str) -> bool:
        parts = [_unescape(p) for p in _split_unescaped(value, "$")]
        if len(parts) != len(param.components):
            raise UnsupportedSearch(f"{param.code} needs {len(param.components)} parts")
        resource_type = resource["resourceType"]
        for base in _split_union(param.expression):
            for index in range(len(self.evaluate(resource, base))):
                element = f"({base})[{index}]"
                if all(
                    self._component(resource, resource_type, element, component, part)
                    for component, part in zip(param.components, parts, strict=True)
                ):
                    return True
        return False

    def _component(
        self,
        resource: dict[str, Any],
        resource_type: str,
        element: str,
        component: Component,
        value: str,
    ) -> bool:
        definition = search_parameter(resource_type, component.definition)
        if definition is None:
            raise UnsupportedSearch(f"component {component.definition}")
        found: list[Any] = []
        for part in _split_union(component.expression):
            found += self.evaluate(resource, f"{element}.{part}")
        check = {
            "token": _token_matches,
            "quantity": _quantity_matches,
            "date": _date_matches,
            "string": _string_matches,
        }[definition.type]
        return check(found, "", value)


# -- string ----------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Return text folded for case- and accent-insensitive comparison."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def strings_of(value: Any) -> list[str]:
    """Return the strings a string search looks at in one value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        keys = (
            ADDRESS_PARTS
            if "line" in value or "city" in value or "postalCode" in value
            else NAME_PARTS
        )
        out: list[str] = []
        for key in keys:
            item = value.get(key)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list):
                out += [s for s in item if isinstance(s, str)]
        # An Address with only country/state/district, or a name with only text.
        for key in ADDRESS_PARTS + NAME_PARTS:
            item = value.get(key)
            if key not in keys and isinstance(item, str):
                out.append(item)
        return out
    return []


def _string_matches(found: list[Any], modifier: str, value: str) -> bool:
    candidates = [s for v in found for s in strings_of(v)]
    if modifier == "exact":
        return value in candidates
    if modifier == "contains":
        return any(normalise(value) in normalise(s) for s in candidates)
    if modifier:
        raise UnsupportedSearch(f"string modifier {modifier!r}")
    return any(normalise(s).startswith(normalise(value)) for s in candidates)


# -- token -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    system: str | None
    code: str | None
    texts: tuple[str, ...] = ()
    type_codings: tuple[tuple[str | None, str | None], ...] = ()


def tokens_of(value: Any) -> list[Token]:
    """Return the (system, code) pairs, with their texts, a token search looks at."""
    if isinstance(value, bool):
        return [Token(None, "true" if value else "false")]
    if isinstance(value, str):
        return [Token(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        text = (value["text"],) if isinstance(value.get("text"), str) else ()
        codings = [c for c in value.get("coding", []) if isinstance(c, dict)]
        tokens = [
            Token(
                c.get("system"), c.get("code"), text + ((c["display"],) if "display" in c else ())
            )
            for c in codings
        ]
        return tokens or [Token(None, None, text)]
    if "code" in value or "display" in value:  # Coding
        display = (value["display"],) if "display" in value else ()
        return [Token(value.get("system"), value.get("code"), display)]
    if "value" in value:  # Identifier or ContactPoint
        if value.get("system") in (
            "phone",
            "fax",
            "email",
            "pager",
            "url",
            "sms",
            "other",
        ):
            return [Token(None, value["value"])]
        kind = value.get("type", {})
        texts = (kind["text"],) if isinstance(kind.get("text"), str) else ()
        type_codings = tuple((c.get("system"), c.get("code")) for c in kind.get("coding", []))
        return [Token(value.get("system"), value["value"], texts, type_codings)]
    return []


def _token_matches(found: list[Any], modifier: str, value: str) -> bool:
    tokens = [t for v in found for t in tokens_of(v)]
    if modifier == "text":
        wanted = normalise(value)
        return any(normalise(text).startswith(wanted) for t in tokens for text in t.texts)
    if modifier == "of-type":
        type_system, type_code, identifier = (value.split("|", 2) + ["", ""])[:3]
        return any(
            t.code == identifier and (type_system or None, type_code) in t.type_codings
            for t in tokens
        )
    if modifier:
        raise UnsupportedSearch(f"token modifier {modifier!r}")
    if "|" not in value:
        return any(t.code == value for t in tokens)
    system, _, code = value.partition("|")
    if not system:
        return any(t.system is None and t.code == code for t in tokens)
    if not code:
        return any(t.system == system for t in tokens)
    return any(t.system == system and t.code == code for t in tokens)


# -- date ------------------------------------------------------------------------------

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MIN = datetime(1, 1, 1, tzinfo=UTC)
MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_DATE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """Return [low, high) of a FHIR date, dateTime or instant at its precision."""
    match = _DATE.match(text)
    if not match:
        raise UnsupportedSearch(f"not a FHIR date: {text!r}")
    g = match.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = g["tz"][1:].split(":")
        tz = UTC if (hours, minutes) == ("00", "00") else _offset(sign, int(hours), int(minutes))
    year = int(g["y"])
    if g["m"] is None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(g["m"])
    if g["d"] is None:
        low = datetime(year, month, 1, tzinfo=UTC)
        high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return low, high
    day = int(g["d"])
    if g["H"] is None:
        low = datetime(year, month, day, tzinfo=UTC)
        return low, low + timedelta(days=1)
    low = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"] or 0), tzinfo=tz)
    if g["S"] is None:
        step = timedelta(minutes=1)
    elif g["f"] is None:
        step = timedelta(seconds=1)
    else:
        digits = g["f"][:6]
        low = low.replace(microsecond=int(digits.ljust(6, "0")))
        step = timedelta(microseconds=10 ** (6 - len(digits)))
    return low.astimezone(UTC), (low + step).astimezone(UTC)


def _offset(sign: int, hours: int, minutes: int) -> Any:
    from datetime import timezone

    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def stored_date_range(value: Any) -> tuple[datetime, datetime] | None:
    """Return the range of a stored date, dateTime, instant or Period."""
    if isinstance(value, str):
        return date_range(value)
    if isinstance(value, dict) and ("start" in value or "end" in value):
        low = date_range(value["start"])[0] if "start" in value else MIN
        high = date_range(value["end"])[1] if "end" in value else MAX
        return low, high
    return None


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def compare_ranges(
    prefix: str, search: tuple[datetime, datetime], target: tuple[datetime, datetime]
) -> bool:
    """Apply one R4 date prefix to a search range and a target range."""
    (sl, sh), (tl, th) = search, target
    contains = sl <= tl and th <= sh
    above = th > sh  # the range above the search value overlaps the target
    below = tl < sl
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return above
    if prefix == "lt":
        return below
    if prefix == "ge":
        return above or contains
    if prefix == "le":
        return below or contains
    if prefix == "sa":
        return tl >= sh
    if prefix == "eb":
        return th <= sl
    if prefix == "ap":
        now = datetime.now(UTC)
        gap = abs(now - sl) * 0.1
        return tl < sh + gap and th > sl - gap
    raise UnsupportedSearch(f"date prefix {prefix}")


def _date_matches(found: list[Any], modifier: str, value: str) -> bool:
    if modifier:
        raise UnsupportedSearch(f"date modifier {modifier!r}")
    prefix, text = split_prefix(value)
    search = date_range(text)
    ranges = [r for v in found if (r := stored_date_range(v)) is not None]
    return any(compare_ranges(prefix, search, r) for r in ranges)


# -- number and quantity ---------------------------------------------------------------


def precision_range(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """Return (value, low, high) of a search number: 100 means [99.5, 100.5)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise UnsupportedSearch(f"not a number: {text!r}") from None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return number, number - half, number + half


def compare_number(prefix: str, search: tuple[Decimal, Decimal, Decimal], stored: Decimal) -> bool:
    value, low, high = search
    if prefix == "eq":
        return low <= stored < high
    if prefix == "ne":
        return not low <= stored < high
    if prefix in ("gt", "sa"):
        return stored > value
    if prefix in ("lt", "eb"):
        return stored < value
    if prefix == "ge":
        return stored >= value
    if prefix == "le":
        return stored <= value
    if prefix == "ap":
        return abs(stored - value) <= abs(value) / 10
    raise UnsupportedSearch(f"number prefix {prefix}")


def _number_matches(found: list[Any], modifier: str, value: str) -> bool:
    if modifier:
        raise UnsupportedSearch(f"number modifier {modifier!r}")
    prefix, text = split_prefix(value)
    search = precision_range(text)
    return any(
        compare_number(prefix, search, Decimal(str(v)))
        for v in found
        if isinstance(v, int | float | Decimal) and not isinstance(v, bool)
    )


UCUM = "http://unitsofmeasure.org"
# code -> (canonical code, factor to canonical)
CANONICAL_UNITS: dict[str, tuple[str, Decimal]] = {
    "ug": ("g", Decimal("0.000001")),
    "mg": ("g", Decimal("0.001")),
    "g": ("g", Decimal(1)),
    "kg": ("g", Decimal(1000)),
    "mm": ("m", Decimal("0.001")),
    "cm": ("m", Decimal("0.01")),
    "m": ("m", Decimal(1)),
    "mL": ("L", Decimal("0.001")),
    "dL": ("L", Decimal("0.1")),
    "L": ("L", Decimal(1)),
    "/min": ("/min", Decimal(1)),
    "%": ("%", Decimal(1)),
    "mm[Hg]": ("mm[Hg]", Decimal(1)),
    "kg/m2": ("kg/m2", Decimal(1)),
    "Cel": ("Cel", Decimal(1)),
    "[degF]": ("[degF]", Decimal(1)),
}


def canonical(value: Decimal, code: str) -> tuple[Decimal, str]:
    unit, factor = CANONICAL_UNITS.get(code, (code, Decimal(1)))
    return value * factor, unit


def _quantity_matches(found: list[Any], modifier: str, value: str) -> bool:
    if modifier:
        raise UnsupportedSearch(f"quantity modifier {modifier!r}")
    parts = [_unescape(p) for p in _split_unescaped(value, "|")]
    number, system, code = (parts + [None, None])[:3]
    prefix, text = split_prefix(number or "")
    wanted, low, high = precision_range(text)
    for quantity in found:
        if not isinstance(quantity, dict) or "value" not in quantity:
            continue
        stored = Decimal(str(quantity["value"]))
        if not code:  # value alone: any unit
            if compare_number(prefix, (wanted, low, high), stored):
                return True
            continue
        if system:
            if quantity.get("system") != system:
                continue
            if (
                system == UCUM
                and quantity.get("code") in CANONICAL_UNITS
                and code in CANONICAL_UNITS
            ):
                stored_c, stored_unit = canonical(stored, quantity["code"])
                search_unit = canonical(Decimal(1), code)[1]
                if stored_unit != search_unit:
                    continue
                scaled = tuple(canonical(x, code)[0] for x in (wanted, low, high))
                if compare_number(prefix, scaled, stored_c):  # type: ignore[arg-type]
                    return True
                continue
            if quantity.get("code") != code:
                continue
        elif code not in (quantity.get("code"), quantity.get("unit")):
            continue
        if compare_number(prefix, (wanted, low, high), stored):
            return True
    return False


# -- uri -------------------------------------------------------------------------------


def _uri_matches(found: list[Any], modifier: str, value: str) -> bool:
    uris = [v for v in found if isinstance(v, str)]
    if modifier == "below":
        stem = value.rstrip("/")
        return any(u == value or u.rstrip("/") == stem or u.startswith(stem + "/") for u in uris)
    if modifier == "above":
        return any(value == u or value.startswith(u.rstrip("/") + "/") for u in uris)
    if modifier:
        raise UnsupportedSearch(f"uri modifier {modifier!r}")
    return value in uris


def ids(resources: Iterable[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}
