"""SQL for bulk jobs ($export, $import): the one row each worker reads to answer a poll."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from bevan.store.record_store import RecordStore
from bevan.store.schema import bulk_job


@dataclass(frozen=True)
class BulkJobRow:
    id: str
    kind: str  # export | import
    owner: str  # the token subject that asked
    request: str  # the kick-off URL
    state: str  # in-progress | complete | failed
    created: float
    heartbeat: float
    expires: float
    progress: str
    result: str | None


class BulkJobTable:
    """The bulk_job table, through the record store's connections."""

    def __init__(self, store: RecordStore) -> None:
        self._transaction = store.transaction
        self._snapshot = store.snapshot

    def add(self, row: BulkJobRow) -> None:
        with self._transaction() as connection:
            connection.execute(
                insert(bulk_job).values(
                    id=row.id,
                    kind=row.kind,
                    owner=row.owner,
                    request=row.request,
                    state=row.state,
                    created=row.created,
                    heartbeat=row.heartbeat,
                    expires=row.expires,
                    progress=row.progress,
                    result=row.result,
                )
            )

    def get(self, job_id: str) -> BulkJobRow | None:
        with self._snapshot() as connection:
            row = connection.execute(select(bulk_job).where(bulk_job.c.id == job_id)).first()
        return BulkJobRow(*row) if row is not None else None

    def beat(self, job_id: str, when: float, progress: str) -> bool:
        """Note that a running job is alive; False if it is no longer there (cancelled)."""
        statement = (
            update(bulk_job)
            .where(bulk_job.c.id == job_id, bulk_job.c.state == "in-progress")
            .values(heartbeat=when, progress=progress)
        )
        with self._transaction() as connection:
            return bool(connection.execute(statement).rowcount)

    def finish(self, job_id: str, state: str, when: float, result: str) -> bool:
        """Record a job's end (complete or failed) and what it gave; False if it was
        cancelled or had already ended."""
        statement = (
            update(bulk_job)
            .where(bulk_job.c.id == job_id, bulk_job.c.state == "in-progress")
            .values(state=state, heartbeat=when, result=result, progress="")
        )
        with self._transaction() as connection:
            return bool(connection.execute(statement).rowcount)

    def remove(self, job_id: str) -> bool:
        with self._transaction() as connection:
            return bool(
                connection.execute(delete(bulk_job).where(bulk_job.c.id == job_id)).rowcount
            )

    def expired(self, now: float) -> list[str]:
        """Return the ids of jobs past their expiry."""
        statement = select(bulk_job.c.id).where(bulk_job.c.expires <= now)
        with self._snapshot() as connection:
            return [row[0] for row in connection.execute(statement)]
