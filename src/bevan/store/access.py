"""SQL for break-glass grants: who opened which record, why, until when, and the review."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from bevan.store.records import RecordStore
from bevan.store.schema import break_glass


@dataclass(frozen=True)
class BreakGlassGrant:
    id: int
    user_id: str
    patient_id: str
    reason: str
    granted: str
    expires: str
    reviewed_by: str | None
    reviewed: str | None
    outcome: str | None


class BreakGlassLedger:
    """Break-glass grants: time-limited access to one patient, each awaiting review."""

    def __init__(self, store: RecordStore) -> None:
        # Through the record store's connections: grants queue with (or, in a group
        # commit, join) its other writes, and reads see what that batch wrote.
        self._transaction = store.transaction
        self._snapshot = store.snapshot

    def grant(self, user_id: str, patient_id: str, reason: str, granted: str, expires: str) -> int:
        with self._transaction() as connection:
            result = connection.execute(
                insert(break_glass).values(
                    user_id=user_id,
                    patient_id=patient_id,
                    reason=reason,
                    granted=granted,
                    expires=expires,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def active_patients(self, user_id: str, now: str) -> frozenset[str]:
        """Return the patients user_id holds an unexpired break-glass grant for."""
        statement = select(break_glass.c.patient_id).where(
            break_glass.c.user_id == user_id, break_glass.c.expires > now
        )
        with self._snapshot() as connection:
            return frozenset(row[0] for row in connection.execute(statement))

    def queue(self, open_only: bool = True, limit: int = 200) -> list[BreakGlassGrant]:
        """Return grants for review, oldest first (only those not yet reviewed by default)."""
        statement = select(break_glass).order_by(break_glass.c.id).limit(limit)
        if open_only:
            statement = statement.where(break_glass.c.reviewed.is_(None))
        with self._snapshot() as connection:
            return [BreakGlassGrant(*row) for row in connection.execute(statement)]

    def review(self, grant_id: int, reviewer: str, outcome: str, when: str) -> bool:
        """Close a grant with the reviewer's outcome; False if there is no open grant id."""
        statement = (
            update(break_glass)
            .where(break_glass.c.id == grant_id, break_glass.c.reviewed.is_(None))
            .values(reviewed_by=reviewer, reviewed=when, outcome=outcome)
        )
        with self._transaction() as connection:
            return bool(connection.execute(statement).rowcount)
