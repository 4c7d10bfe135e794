"""Referential integrity in SQL: which referenced resources exist, and who points at one.

Both are key lookups: the first on resource's (resource_type, id) key, a chunk of
references at a time; the second on the reference index's target index (index rows are
kept for current versions only, so whatever they find is current).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, not_, select, tuple_

from bevan.store.schema import index_reference, resource

_CHUNK = 400


def live(connection: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return those of keys (resource_type, id) that exist and are not deleted."""
    wanted = sorted(set(keys))
    found: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = connection.execute(
            select(resource.c.resource_type, resource.c.id).where(
                tuple_(resource.c.resource_type, resource.c.id).in_(chunk),
                not_(resource.c.deleted),
            )
        )
        found.update((row[0], row[1]) for row in rows)
    return found


def referrers(connection: Connection, resource_type: str, id: str) -> set[tuple[str, str]]:
    """Return (type, id) of the current resources, other than this one, that reference it."""
    rows = connection.execute(
        select(resource.c.resource_type, resource.c.id)
        .distinct()
        .join(index_reference, index_reference.c.rid == resource.c.rid)
        .where(
            index_reference.c.target_id == id,
            index_reference.c.target_type == resource_type,
            not_(resource.c.deleted),
        )
    )
    return {(row[0], row[1]) for row in rows} - {(resource_type, id)}
