"""Referential integrity in SQL: which referenced resources exist, and who points at one.

Both are key lookups: the first on resource's (resource_type, id) key, a chunk of
references at a time; the second on the reference index's target index (index rows are
kept for current versions only, so whatever they find is current).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, not_, select

from bevan.store.schema import index_reference, resource

_CHUNK = 400


def live(connection: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return those of keys (resource_type, id) that exist and are not deleted."""
    by_type: dict[str, list[str]] = {}
    for resource_type, id in set(keys):
        by_type.setdefault(resource_type, []).append(id)
    found: set[tuple[str, str]] = set()
    # One type at a time, so that each lookup is a plain probe of the (type, id) key.
    for resource_type, ids in sorted(by_type.items()):
        ids.sort()
        for start in range(0, len(ids), _CHUNK):
            rows = connection.execute(
                select(resource.c.id).where(
                    resource.c.resource_type == resource_type,
                    resource.c.id.in_(ids[start : start + _CHUNK]),
                    not_(resource.c.deleted),
                )
            )
            found.update((resource_type, row[0]) for row in rows)
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
