"""Search statements compiled once per shape and run with each search's values.

Building a search statement with SQLAlchemy Core, finding it in Core's cache and setting
up its execution costs several times what SQLite spends running it. Searches come in few
shapes (the same parameters, modifiers and prefixes, with different values), so each
shape is built and compiled once: its values become numbered slots, and later searches
of that shape bind their own values into the compiled SQL and run it on the cursor.

The shape of a search is everything the compiler branches on: its types, parameters,
modifiers, prefixes, sort keys, which values are absent or empty, and how many values
each criterion ORs. The values are the fields named in `_VALUE_FIELDS`; every other
field is part of the shape. A compiler that derives a value (a LIKE pattern, a prefix's
upper bound) does so through `derived`, so the derivation is replayed on later values.
A statement whose constants contain one of its values, which an underived derivation
would leave behind, is never reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from bevan.fhir.search import (
    Bound,
    Cursor,
    IdMatch,
    QuantityValue,
    ReferenceValue,
    StringMatch,
    TokenValue,
    UriMatch,
)
from bevan.store.budget import compiled_anew
from bevan.store.raw import CompiledStatement, RawCursor

# The fields whose contents are values (bound into the SQL); all others are shape.
_VALUE_FIELDS: dict[type, frozenset[str]] = {
    TokenValue: frozenset({"code", "system"}),
    StringMatch: frozenset({"values"}),
    Bound: frozenset({"low", "high", "value"}),
    QuantityValue: frozenset({"system", "code", "canonical"}),
    ReferenceValue: frozenset({"id", "url", "identifier"}),
    UriMatch: frozenset({"values"}),
    IdMatch: frozenset({"ids"}),
    Cursor: frozenset({"values", "rid"}),
}

MAX_SHAPES = 2_000


class Slot:
    """A value of a template, standing in for the value at its index in later searches."""

    position: int
    derive: Callable[[Any], Any] | None


class _Text(str, Slot):
    pass


class _Int(int, Slot):
    pass


class _Float(float, Slot):
    pass


class _Decimal(Decimal, Slot):
    pass


_SLOT_OF: dict[type, type] = {str: _Text, int: _Int, float: _Float, Decimal: _Decimal}


def _slot(value: Any, index: int, derive: Callable[[Any], Any] | None = None) -> Any:
    slot = _SLOT_OF[type(value)](value)
    slot.position = index
    slot.derive = derive
    return slot


def derived(value: Any, make: Callable[[Any], Any]) -> Any:
    """Return make(value); for a slot, a slot that makes its later values the same way."""
    made = make(value)
    if not isinstance(value, Slot) or type(made) not in _SLOT_OF:
        return made
    before = value.derive
    return _slot(made, value.position, make if before is None else lambda v: make(before(v)))


# --- the shape and values of a search -------------------------------------------------------


_FIELD_PLANS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _plan_of(kind: type) -> tuple[tuple[str, bool], ...]:
    """Return (field name, holds values) for each field of a criteria dataclass."""
    plan = _FIELD_PLANS.get(kind)
    if plan is None:
        values = _VALUE_FIELDS.get(kind, frozenset())
        plan = _FIELD_PLANS[kind] = tuple((f.name, f.name in values) for f in fields(kind))
    return plan


def _walk(item: Any, is_value: bool, key: list[Any], values: list[Any], template: bool) -> Any:
    """Append item's shape to key and its values to values; return its template (slots in
    place of values) if template, else None."""
    kind = type(item)
    if is_value and kind in _SLOT_OF and not (kind is str and not item):
        key.append(kind)
        if kind is str:
            key.append(item.endswith("/"))  # the only text test a compiler makes of a value
        values.append(item)
        return _slot(item, len(values) - 1) if template else None
    if kind is tuple:
        key.append(len(item))
        made = [_walk(part, is_value, key, values, template) for part in item]
        return tuple(made) if template else None
    if is_dataclass(item) and not isinstance(item, type):
        key.append(kind)
        parts = {
            name: _walk(getattr(item, name), value_field, key, values, template)
            for name, value_field in _plan_of(kind)
        }
        return kind(**parts) if template else None
    key.append(item)
    return item if template else None


def shape_of(parts: tuple[Any, ...]) -> tuple[tuple[Hashable, ...], list[Any]]:
    """Return the shape of parts (hashable) and their values in slot order."""
    key: list[Any] = []
    values: list[Any] = []
    _walk(parts, False, key, values, template=False)
    return tuple(key), values


def template_of(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return parts with each value replaced by its slot."""
    key: list[Any] = []
    values: list[Any] = []
    return cast(tuple[Any, ...], _walk(parts, False, key, values, template=True))


# --- compiled shapes --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    statement: CompiledStatement
    # per parameter name: (slot index, derivation) or (None, constant)
    sources: tuple[tuple[str, int | None, Any], ...]
    processors: dict[str, Callable[[Any], Any]]

    def params(self, values: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, index, how in self.sources:
            if index is None:
                value = how
            elif how is None:
                value = values[index]
            else:
                value = how(values[index])
            processor = self.processors.get(name)
            out[name] = value if processor is None else processor(value)
        return out


Builder = Callable[[tuple[Any, ...]], ClauseElement]


class ShapeCache:
    """Compiled statements by (purpose, shape), for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[Hashable, _Compiled | None] = {}
        self._lock = threading.Lock()

    def execute(self, raw: RawCursor, purpose: str, parts: tuple[Any, ...], build: Builder) -> Any:
        """Run build(parts) on raw and return its cursor: compiled once per shape of parts
        (build is called with a template of them), then reused with each parts' values."""
        shape, values = shape_of(parts)
        key = (purpose, shape)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled_anew()  # an overrun now says little of how long such reads take
            compiled, reusable = self._compile(build(template_of(parts)), values)
            with self._lock:
                if len(self._compiled) >= MAX_SHAPES:
                    self._compiled.clear()
                if reusable:
                    self._compiled[key] = compiled
        return raw.execute(compiled.statement, compiled.params(values))

    def __len__(self) -> int:
        return len(self._compiled)

    def _compile(self, statement: ClauseElement, values: list[Any]) -> tuple[_Compiled, bool]:
        compiled: Any = statement.compile(
            dialect=self.dialect, compile_kwargs={"render_postcompile": True}
        )
        names = tuple(compiled.positiontup) if compiled.positional else None
        sources: list[tuple[str, int | None, Any]] = []
        reusable = True
        for name, value in compiled.construct_params().items():
            if isinstance(value, Slot):
                sources.append((name, value.position, value.derive))
            else:
                reusable = reusable and not _holds_a_value(value, values)
                sources.append((name, None, value))
        processors = dict(compiled._bind_processors)
        return _Compiled(CompiledStatement(compiled.string, names), tuple(sources), processors), (
            reusable
        )


def _holds_a_value(constant: Any, values: list[Any]) -> bool:
    """Return True if a constant of a statement is, or contains, one of its values: a
    value derived without `derived`, which a later search would get stale."""
    if isinstance(constant, str):
        return any(isinstance(v, str) and v in constant for v in values)
    if isinstance(constant, int | float | Decimal) and not isinstance(constant, bool):
        return any(not isinstance(v, str) and v == constant for v in values)
    return False
