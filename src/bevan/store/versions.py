"""The stored versions reads return, and the conflict a racing write raises.

Kept apart from the sessions so that the service and the API can name what they are
handed without importing the machinery that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class StoreConflict(Exception):
    """Two writers raced for the same new resource; the caller may retry or answer 409."""


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as stored: its content is the JSON text we return."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    deleted: bool
    content: str | None
    seq: int


@dataclass(frozen=True)
class SearchHit(StoredVersion):
    """A stored version found by a search, with its sort values (for the next page)."""

    sort_values: tuple[Any, ...] = ()
    rid: int = 0


@dataclass(frozen=True)
class CurrentRow:
    rid: int
    version_id: int
    deleted: bool


_VersionFields = tuple[str, str, int, str, bool, "str | None", int]


def version_fields(row: Any, start: int = 0) -> _VersionFields:
    """Return, in StoredVersion's field order, the version held in row's
    VERSION_COLUMNS from position start (positional: a page of search results makes
    one for each row, and keywords cost more than building the rest of the entry)."""
    return (
        row[start],
        row[start + 1],
        row[start + 2],
        row[start + 3],
        row[start + 4] == "delete",
        row[start + 5],
        row[start + 6],
    )


def stored_at(row: Any, start: int = 0) -> StoredVersion:
    """Return the version held in row's VERSION_COLUMNS, from position start."""
    return StoredVersion(*version_fields(row, start))
