"""Paging parameters, parsed in one place: `_count`, `_since` and the cursor a page link
carries, for searches, history, `$everything` and the audit trail alike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bevan.fhir.dates import date_range, format_instant
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.limits import stored_integer

DEFAULT_COUNT = 20
MAX_COUNT = 1000


def parse_count(text: str, expression: str = "_count") -> int:
    """Return the page size _count asks for, at most MAX_COUNT; raise InvalidRequest
    for anything but a whole number in the digits 0-9."""
    if not text.isascii() or not text.isdigit():
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidRequest(
            Issue(f"_count must be a whole number, not {shown!r}", expression=(expression,))
        )
    # More digits than MAX_COUNT has is more than it, however many there are.
    return MAX_COUNT if len(text) > len(str(MAX_COUNT)) else min(int(text), MAX_COUNT)


def parse_since(text: str, name: str = "_since") -> str:
    """Return the instant a date parameter's value starts at (the lower bound of _since,
    or of $everything's start); raise InvalidRequest naming name for one not a date."""
    return _instant(text, name, 0)


def parse_until(text: str, name: str) -> str:
    """Return the instant a date parameter's value ends at (the upper bound of end)."""
    return _instant(text, name, 1)


def _instant(text: str, name: str, bound: int) -> str:
    try:
        return format_instant(date_range(text)[bound])
    except ValueError as error:
        raise InvalidRequest(Issue(str(error), expression=(name,))) from None


@dataclass(frozen=True)
class PageRequest:
    """What a request asks of a page: its size, the instant it starts from, the position
    its cursor names, and the paging parameters as given (for the page's links)."""

    count: int
    since: str | None = None  # an instant
    position: int | None = None  # where the previous page ended (its cursor)
    applied: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls,
        pairs: Iterable[tuple[str, str | None]],
        *,
        default_count: int = DEFAULT_COUNT,
        cursor: str = "_cursor",
        what: str = "a page of this history",
    ) -> PageRequest:
        """Return the page pairs ask for (the last value of each parameter counts); the
        cursor, named cursor, is a stored position, refused unless whole and in range."""
        given = {name: value for name, value in pairs if value is not None}
        count = parse_count(given["_count"]) if "_count" in given else default_count
        since = parse_since(given["_since"]) if "_since" in given else None
        position = stored_integer(given[cursor], cursor, what) if cursor in given else None
        applied = tuple(
            (name, given[name]) for name in ("_since", "_count", cursor) if name in given
        )
        return cls(count, since, position, applied)
