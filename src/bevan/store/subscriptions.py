"""SQL for subscriptions: each one's resource, status and owner (monitoring/subscriptions.py
says what they mean), and the lock held by the one process that delivers them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update

from bevan.store.engine import is_sqlite
from bevan.store.record_store import RecordStore
from bevan.store.schema import subscription

try:
    import fcntl
except ImportError:  # Windows: one process serves, and delivers
    fcntl = None  # type: ignore[assignment]

# Arbitrary but fixed: the PostgreSQL advisory lock held by the deliverer is this key and
# the schema's (so servers on different schemas of one database each have a deliverer).
ADVISORY_LOCK_KEY = 0x0BE7_A75B


@dataclass(frozen=True)
class SubscriptionOwner:
    """Who created a subscription, as their token said: what it delivers is judged as a
    read by them."""

    subject: str
    role: str
    scope: str
    organisation: str | None = None
    patient_id: str | None = None
    token_id: str | None = None


@dataclass(frozen=True)
class StoredSubscription:
    id: str
    version_id: int
    last_updated: str
    status: str
    owner: SubscriptionOwner
    content: str  # the Subscription resource, JSON


class SubscriptionTable:
    """The stored subscriptions."""

    def __init__(self, store: RecordStore) -> None:
        # Through the record store's connections: on SQLite its writes queue with the
        # record's on the one writer lock.
        self._transaction = store.transaction
        self._snapshot = store.snapshot

    def get(self, id: str) -> StoredSubscription | None:
        with self._snapshot() as connection:
            row = connection.execute(select(subscription).where(subscription.c.id == id)).first()
        return _stored(row) if row is not None else None

    def listed(
        self, owner_subject: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[StoredSubscription]:
        """Return the subscriptions of one owner (None: everyone's), of these statuses."""
        statement = select(subscription).order_by(subscription.c.id)
        if owner_subject is not None:
            statement = statement.where(subscription.c.owner_subject == owner_subject)
        if statuses is not None:
            statement = statement.where(subscription.c.status.in_(list(statuses)))
        with self._snapshot() as connection:
            return [_stored(row) for row in connection.execute(statement)]

    def add(self, stored: StoredSubscription) -> None:
        with self._transaction() as connection:
            connection.execute(insert(subscription).values(**_values(stored)))

    def replace(self, stored: StoredSubscription, *, was_version: int) -> bool:
        """Store a new version of a subscription if it is still at was_version; return
        False if it was changed or removed meanwhile."""
        with self._transaction() as connection:
            done = connection.execute(
                update(subscription)
                .where(subscription.c.id == stored.id)
                .where(subscription.c.version_id == was_version)
                .values(**_values(stored))
            )
        return bool(done.rowcount)

    def remove(self, id: str) -> bool:
        with self._transaction() as connection:
            done = connection.execute(delete(subscription).where(subscription.c.id == id))
        return bool(done.rowcount)


def _values(stored: StoredSubscription) -> dict[str, object]:
    owner = stored.owner
    return {
        "id": stored.id,
        "version_id": stored.version_id,
        "last_updated": stored.last_updated,
        "status": stored.status,
        "owner_subject": owner.subject,
        "owner_role": owner.role,
        "owner_scope": owner.scope,
        "owner_organisation": owner.organisation,
        "owner_patient_id": owner.patient_id,
        "owner_token_id": owner.token_id,
        "content": stored.content,
    }


def _stored(row: object) -> StoredSubscription:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredSubscription(
        r["id"],
        int(r["version_id"]),
        r["last_updated"],
        r["status"],
        SubscriptionOwner(
            r["owner_subject"],
            r["owner_role"],
            r["owner_scope"],
            r["owner_organisation"],
            r["owner_patient_id"],
            r["owner_token_id"],
        ),
        r["content"],
    )


class DeliveryLock:
    """Held by the one process that delivers rest-hooks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._fd: int | None = None
        self.held = False

    def try_take(self) -> bool:
        """Return True if this process holds the lock (taking it if it is free)."""
        if self.held:
            return True
        if is_sqlite(self.engine):
            path = self.engine.url.database
            if not path or path == ":memory:" or fcntl is None:
                self.held = True
                return True
            if self._fd is None:
                self._fd = os.open(f"{path}-subscriptions", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
            return True
        if self._connection is None:
            self._connection = self.engine.connect()
        taken = self._connection.exec_driver_sql(
            f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY}, hashtext(current_schema()))"
        ).scalar()
        self._connection.commit()
        self.held = bool(taken)
        return self.held

    def release(self) -> None:
        if self._fd is not None:
            if self.held and fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._connection is not None:
            self._connection.close()  # a session's advisory locks end with it
            self._connection = None
        self.held = False
