"""The limits on what one request may ask of the server, and the checks that keep to them.

Each limit is far beyond what a clinical system sends, and each stops something a
client could otherwise send to cost the server, or every other user, dearly: a body
nested deeper than any FHIR resource, a search whose hundreds of alternatives compile to
a statement the database refuses, a number that no database column can hold. A request
beyond one is refused with a 400 that says which limit, where, and why.
"""

from __future__ import annotations

import re
from typing import Any

from bevan.fhir.errors import InvalidRequest, Issue

# JSON nesting: a FHIR resource inside a Bundle entry, with contained resources and
# extensions on extensions, stays well inside this.
MAX_JSON_DEPTH = 64
# Values ORed in one search parameter (`code=a,b,c`), and parameters in one search.
MAX_OR_VALUES = 100
MAX_SEARCH_PARAMETERS = 100
# Values in one search, all its parameters together: each is a condition in the SQL,
# and ten thousand ANDed and ORed kept a server busy for minutes.
MAX_SEARCH_VALUES = 500
# The largest whole number a database column holds (signed 64-bit): version ids, page
# cursors, change sequence numbers and break-glass grants are all stored as one.
MAX_STORED_INTEGER = 2**63 - 1

_DIGITS = re.compile(r"[0-9]{1,19}")


def stored_integer(text: str, where: str, what: str = "a whole number") -> int:
    """Return text as a whole number a database column can hold; raise InvalidRequest
    (placed at where) for anything else: other characters, or too large."""
    if _DIGITS.fullmatch(text) is None or int(text) > MAX_STORED_INTEGER:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidRequest(
            Issue(
                f"{shown!r} is not {what} (digits 0-9, at most {MAX_STORED_INTEGER})",
                expression=(where,),
            )
        )
    return int(text)


def is_stored_integer(text: str) -> bool:
    """Return True if text is a whole number a database column can hold."""
    return _DIGITS.fullmatch(text) is not None and int(text) <= MAX_STORED_INTEGER


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return True if value (parsed JSON) nests arrays and objects more than limit deep."""
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        following: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                following.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                following.extend(v for v in item if isinstance(v, dict | list))
        level = following
    return False


def too_deep_at(value: Any, path: str, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Return the FHIRPath of the first array or object in value nested more than limit
    deep, or None if there is none (looked for only once too_deep has found one)."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > limit:
            return where
        if isinstance(item, dict):
            children = [(v, f"{where}.{k}") for k, v in item.items()]
        elif isinstance(item, list):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        else:
            continue
        stack.extend(
            (child, at, depth + 1)
            for child, at in reversed(children)
            if isinstance(child, dict | list)
        )
    return None


def nul_character_at(value: Any, path: str) -> str | None:
    """Return the FHIRPath of the first string (or name) in value holding a NUL character
    (U+0000, which FHIR strings may not hold), or None if there is none."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path
            found = nul_character_at(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_character_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
