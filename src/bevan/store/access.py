"""SQL for break-glass grants: who opened which record, why, until when, and the review.

A grant belongs to a user acting for an organisation: the same subject acting for
another organisation holds none of its grants.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from bevan.store.record_store import RecordStore
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
    organisation: str | None = None  # ODS code the user acted for


class BreakGlassLedger:
    """Break-glass grants: time-limited access to one patient, each awaiting review."""

    def __init__(self, store: RecordStore) -> None:
        # Through the record store's connections: grants queue with (or, in a group
        # commit, join) its other writes, and reads see what that batch wrote.
        self._transaction = store.transaction
        self._snapshot = store.snapshot

    def grant(
        self,
        user_id: str,
        patient_id: str,
        reason: str,
        granted: str,
        expires: str,
        organisation: str | None = None,
    ) -> int:
        """Record a grant of patient_id to user_id acting for organisation; return its id."""
        with self._transaction() as connection:
            result = connection.execute(
                insert(break_glass).values(
                    user_id=user_id,
                    organisation=organisation,
                    patient_id=patient_id,
                    reason=reason,
                    granted=granted,
                    expires=expires,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def active_patients(
        self, user_id: str, now: str, organisation: str | None = None
    ) -> frozenset[str]:
        """Return the patients user_id, acting for organisation, holds an unexpired
        break-glass grant for."""
        statement = select(break_glass.c.patient_id).where(
            break_glass.c.user_id == user_id,
            break_glass.c.expires > now,
            break_glass.c.organisation.is_(None)
            if organisation is None
            else break_glass.c.organisation == organisation,
        )
        with self._snapshot() as connection:
            return frozenset(row[0] for row in connection.execute(statement))

    def active_grant(
        self, user_id: str, patient_id: str, now: str, organisation: str | None = None
    ) -> BreakGlassGrant | None:
        """Return the latest unexpired grant of patient_id to user_id acting for
        organisation, if there is one (what the web app shows as the window left)."""
        statement = (
            select(break_glass)
            .where(
                break_glass.c.user_id == user_id,
                break_glass.c.patient_id == patient_id,
                break_glass.c.expires > now,
                break_glass.c.organisation.is_(None)
                if organisation is None
                else break_glass.c.organisation == organisation,
            )
            .order_by(break_glass.c.id.desc())
            .limit(1)
        )
        with self._snapshot() as connection:
            row = connection.execute(statement).first()
        return BreakGlassGrant(*row) if row is not None else None

    def get(self, grant_id: int) -> BreakGlassGrant | None:
        """Return one grant by id, reviewed or not."""
        statement = select(break_glass).where(break_glass.c.id == grant_id)
        with self._snapshot() as connection:
            row = connection.execute(statement).first()
        return BreakGlassGrant(*row) if row is not None else None

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
