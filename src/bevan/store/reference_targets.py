"""Referential integrity in SQL: which referenced resources exist, and who points at one.

Both are key lookups: the first on resource's (resource_type, id) key, a chunk of
references at a time; the second on the reference index's target index (index rows are
kept for current versions only, so whatever they find is current).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from sqlalchemy import Connection

_CHUNK = 400


def live(connection: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return those of keys (resource_type, id) that exist and are not deleted."""
    by_type: dict[str, list[str]] = {}
    for resource_type, id in set(keys):
        by_type.setdefault(resource_type, []).append(id)
    found: set[tuple[str, str]] = set()
    # Every write asks this, so the statement is the driver's own text (built once per
    # chunk length), not a Core statement compiled on each call: the CRUD benchmark
    # (benchmarks/crud.py) shows the difference.
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    # One type at a time, so that each lookup is a plain probe of the (type, id) key.
    for resource_type, ids in sorted(by_type.items()):
        ids.sort()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = connection.exec_driver_sql(_live_sql(mark, len(chunk)), (resource_type, *chunk))
            found.update((resource_type, row[0]) for row in rows)
    return found


@lru_cache(maxsize=64)
def _live_sql(mark: str, count: int) -> str:
    marks = ", ".join([mark] * count)
    return (
        f"SELECT id FROM resource WHERE resource_type = {mark} AND id IN ({marks}) AND NOT deleted"
    )


def referrers(connection: Connection, resource_type: str, id: str) -> set[tuple[str, str]]:
    """Return (type, id) of the current resources, other than this one, that reference it."""
    # Every delete asks this: the driver's own text, as for live() above.
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    rows = connection.exec_driver_sql(
        "SELECT DISTINCT resource.resource_type, resource.id FROM index_reference "
        "JOIN resource ON resource.rid = index_reference.rid "
        f"WHERE index_reference.target_id = {mark} AND index_reference.target_type = {mark} "
        "AND NOT resource.deleted",
        (id, resource_type),
    )
    return {(row[0], row[1]) for row in rows} - {(resource_type, id)}
