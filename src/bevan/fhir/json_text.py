"""FHIR JSON to Python and back, keeping every decimal's digits.

A FHIR decimal's precision is part of its value: 1.50 mmol/L says more than 1.5, and
the specification requires a server to return the digits it was given. A Python float
prints 1.50 as 1.5, so a number that a float would print differently is read as a
`Decimal`: a float (every other part of Bevan compares, indexes and validates it as
one) that remembers its text and is written back exactly as it came.

orjson does the work. A text is read a second time, by the standard library, only
when writing back what orjson read would change its digits (a trailing zero after the
point, an exponent, more digits than a float holds; a string escape such as \\u00e9 too,
harmlessly): most records have none, and the check costs far less than a second reading
of every text (benchmarks/crud.py and benchmarks/bundle_import.py read every body).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from bevan.fhir.limits import too_deep

JSONDecodeError = orjson.JSONDecodeError


class TooDeep(ValueError):
    """The JSON nests arrays and objects deeper than the reader allows."""

    def __init__(self, message: str, value: Any) -> None:
        super().__init__(message)
        self.value = value


_NOT_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)


def _same_digits(raw: bytes, value: Any) -> bool:
    """Return True if value, written by orjson, has exactly the digits of raw in order:
    then no number lost or changed one."""
    return raw.translate(None, _NOT_DIGITS) == orjson.dumps(value).translate(None, _NOT_DIGITS)


class Decimal(float):
    """A JSON number that keeps its text: compared and computed with as a float,
    written back with the digits it was given."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Decimal:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text


def _number(text: str) -> float:
    value = float(text)
    return value if repr(value) == text else Decimal(text)


def loads(data: bytes | str, max_depth: int | None = None) -> Any:
    """Return the JSON value of data; numbers a float would shorten come back as Decimal.

    Raises JSONDecodeError (with line and column) for text that is not JSON, and TooDeep
    for JSON nested more than max_depth deep (checked before anything else walks it).
    """
    value = orjson.loads(data)
    if max_depth is not None and too_deep(value, max_depth):
        raise TooDeep(f"it nests arrays and objects more than {max_depth} deep", value)
    raw = data.encode() if isinstance(data, str) else data
    try:
        same = _same_digits(raw, value)
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        same = False
    if same:
        return value
    return json.loads(raw, parse_float=_number, parse_int=_integer)


def _integer(text: str) -> int | float:
    # Beyond 64 bits a number is kept as its text, as a decimal is: orjson writes no
    # larger integer, and Python will not read one of thousands of digits as an int.
    if len(text.lstrip("-")) <= 18:
        return int(text)
    return Decimal(text)


def _fragment(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    """Return value as compact JSON (indented if pretty), decimals with their own digits."""
    return orjson.dumps(value, default=_fragment, option=orjson.OPT_INDENT_2 if pretty else 0)
