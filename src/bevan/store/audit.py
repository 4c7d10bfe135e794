"""The audit log: an append-only, hash-chained table of AuditEvents.

Each entry's hash is SHA-256 of the previous entry's hash, its own seq and its content,
so altering, removing or reordering an entry breaks the chain from that point and
`verify` names where. Appends take a write lock (BEGIN IMMEDIATE on SQLite, an advisory
transaction lock on PostgreSQL) so the chain has one head. This module never updates or
deletes an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select

from bevan.store.engine import WriterLock, is_sqlite
from bevan.store.raw import RawCursor, compile_for
from bevan.store.schema import audit_event

GENESIS_HASH = "0" * 64
# The advisory lock key that serialises appends on PostgreSQL ("audit" in ASCII).
APPEND_LOCK_KEY = 0x6175646974
VERIFY_CHUNK = 5000


def chain_hash(previous_hash: str, seq: int, content: str) -> str:
    """Return the hash of an entry: SHA-256 hex of "previous_hash|seq|content"."""
    return hashlib.sha256(f"{previous_hash}|{seq}|{content}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditRow:
    """An entry to append: the AuditEvent JSON text and the columns it is found by."""

    recorded: str
    user_id: str | None
    patient_id: str | None
    action: str
    outcome: str
    break_glass: bool
    content: str


@dataclass(frozen=True)
class AuditEntry:
    """An entry as stored, with its place in the chain."""

    seq: int
    recorded: str
    user_id: str | None
    patient_id: str | None
    action: str
    outcome: str
    break_glass: bool
    content: str
    previous_hash: str
    hash: str


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row.seq),
        recorded=row.recorded,
        user_id=row.user_id,
        patient_id=row.patient_id,
        action=row.action,
        outcome=row.outcome,
        break_glass=bool(row.break_glass),
        content=row.content,
        previous_hash=row.previous_hash,
        hash=row.hash,
    )


_INSERT_VALUES: dict[str, Any] = {
    name: bindparam(name)
    for name in (
        "seq", "recorded", "user_id", "patient_id", "action", "outcome", "break_glass",
        "content", "previous_hash", "hash",
    )
}  # fmt: skip
_SELECT_HEAD = select(audit_event.c.seq, audit_event.c.hash).order_by(audit_event.c.seq.desc())


class AuditLog:
    """All SQL about the audit_event table: append a batch, verify the chain, find entries."""

    def __init__(self, engine: Engine, write_lock: WriterLock | None = None) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        # Queue this process's appenders on a lock rather than in SQLite's busy handler;
        # sharing the record store's lock queues them with every other writer too.
        self._append_lock = (write_lock or WriterLock(None)) if self.sqlite else None
        self._insert = compile_for(insert(audit_event).values(**_INSERT_VALUES), engine.dialect)
        newest = _SELECT_HEAD.limit(1)
        self._head = compile_for(newest, engine.dialect)
        self._head_params = dict(newest.compile(dialect=engine.dialect).params)
        self._lock = compile_for(select(func.pg_advisory_xact_lock(bindparam("k"))), engine.dialect)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    def append(self, rows: Sequence[AuditRow]) -> list[int]:
        """Append rows in one transaction, chained onto the head; return their seqs."""
        if not rows:
            return []
        with self._append_lock or contextlib.nullcontext():
            return self._append(rows)

    def try_append(self, rows: Sequence[AuditRow]) -> list[int] | None:
        """Append now, on the caller's thread, and return the seqs, unless another writer
        in this process holds SQLite's write lock: then append nothing and return None,
        for the caller to append from a thread that may wait for it instead.

        On PostgreSQL an append always goes ahead: appenders queue on the advisory lock,
        each holding it for its own two round trips, and a thread would cost more than
        the wait (the event loop and the thread contending for the interpreter lock).
        """
        lock = self._append_lock
        if lock is None:
            return self._append(rows) if rows else []
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._append(rows) if rows else []
        finally:
            lock.release()

    def _append(self, rows: Sequence[AuditRow]) -> list[int]:
        if not self.sqlite:
            return self._append_postgresql(rows)
        with (
            # bevan_write makes SQLite take its write lock at BEGIN (see store.engine).
            self.engine.connect().execution_options(bevan_write=True) as connection,
            connection.begin(),
        ):
            # On the DBAPI cursor: this runs for every request, and Core's per-row
            # parameter handling would cost more than the insert.
            cursor = RawCursor(connection)
            try:
                values = self._chained(cursor.first(self._head, self._head_params), rows)
                cursor.executemany(self._insert, values)
            finally:
                cursor.close()
        return [value["seq"] for value in values]

    def _append_postgresql(self, rows: Sequence[AuditRow]) -> list[int]:
        """Append in two round trips: the lock and the head (BEGIN sent with them), then
        the rows and the COMMIT. Appenders in other processes queue on the lock until
        this one commits. An error leaves the transaction open, and the connection's
        return to the pool rolls it back."""
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            cursor = RawCursor(connection)
            try:
                with driver.pipeline():  # type: ignore[union-attr]
                    cursor.execute(self._lock, {"k": APPEND_LOCK_KEY})
                    head = cursor.first(self._head, self._head_params)
                values = self._chained(head, rows)
                with driver.pipeline():  # type: ignore[union-attr]
                    cursor.executemany(self._insert, values)
                    driver.commit()  # type: ignore[union-attr]
            finally:
                cursor.close()
        return [value["seq"] for value in values]

    @staticmethod
    def _chained(head: Any, rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
        """Return the rows' values, each chained onto the one before, the first onto head."""
        seq, previous = (int(head[0]), head[1]) if head else (0, GENESIS_HASH)
        values: list[dict[str, Any]] = []
        for row in rows:
            seq += 1
            digest = chain_hash(previous, seq, row.content)
            values.append(
                {
                    "seq": seq,
                    "recorded": row.recorded,
                    "user_id": row.user_id,
                    "patient_id": row.patient_id,
                    "action": row.action,
                    "outcome": row.outcome,
                    "break_glass": row.break_glass,
                    "content": row.content,
                    "previous_hash": previous,
                    "hash": digest,
                }
            )
            previous = digest
        return values

    def head(self) -> tuple[int, str]:
        """Return the newest entry's seq and hash ((0, GENESIS_HASH) when the log is empty).

        Kept somewhere else, the head lets a later check notice entries removed from the
        end, which the chain alone cannot show.
        """
        with self._reading() as connection:
            row = connection.execute(_SELECT_HEAD.limit(1)).first()
        return (int(row.seq), row.hash) if row else (0, GENESIS_HASH)

    def count(self) -> int:
        with self._reading() as connection:
            return int(
                connection.execute(select(func.count()).select_from(audit_event)).scalar_one()
            )

    def entries(self, chunk: int = VERIFY_CHUNK) -> Iterator[AuditEntry]:
        """Yield every entry in seq order, reading chunk rows at a time."""
        after = 0
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    select(audit_event)
                    .where(audit_event.c.seq > after)
                    .order_by(audit_event.c.seq)
                    .limit(chunk)
                ).all()
            for row in rows:
                yield _entry(row)
            if len(rows) < chunk:
                return
            after = int(rows[-1].seq)

    def verify(
        self,
        progress: Callable[[int], object] | None = None,
        check: Callable[[AuditEntry], str | None] | None = None,
    ) -> list[str]:
        """Return the problems in the chain, each naming its entry (empty: it verifies).

        progress, if given, is called with the number of entries read since the last call;
        check, if given, may return a further problem with one entry (or None).
        """
        problems: list[str] = []
        expected_seq, expected_previous = 1, GENESIS_HASH
        pending = 0
        for entry in self.entries():
            if entry.seq != expected_seq or entry.previous_hash != expected_previous:
                problems.append(f"audit entry {entry.seq} follows a missing or changed entry")
            if chain_hash(entry.previous_hash, entry.seq, entry.content) != entry.hash:
                problems.append(
                    f"audit entry {entry.seq} has been altered: its hash does not match its content"
                )
            if check is not None:
                problem = check(entry)
                if problem:
                    problems.append(problem)
            expected_seq, expected_previous = entry.seq + 1, entry.hash
            pending += 1
            if progress is not None and pending >= VERIFY_CHUNK:
                progress(pending)
                pending = 0
        if progress is not None and pending:
            progress(pending)
        return problems

    def for_patient(
        self, patient_id: str, limit: int = 100, before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Return the entries about one patient's record, newest first."""
        return self.find(patient_id=patient_id, limit=limit, before_seq=before_seq)

    def find(
        self,
        user_id: str | None = None,
        patient_id: str | None = None,
        since: str | None = None,
        outcome: str | None = None,
        break_glass: bool | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[AuditEntry]:
        """Return entries matching every given filter, newest first; page with before_seq."""
        query = select(audit_event)
        if user_id is not None:
            query = query.where(audit_event.c.user_id == user_id)
        if patient_id is not None:
            query = query.where(audit_event.c.patient_id == patient_id)
        if since is not None:
            query = query.where(audit_event.c.recorded >= since)
        if outcome is not None:
            query = query.where(audit_event.c.outcome == outcome)
        if break_glass is not None:
            query = query.where(audit_event.c.break_glass == break_glass)
        if before_seq is not None:
            query = query.where(audit_event.c.seq < before_seq)
        query = query.order_by(audit_event.c.seq.desc()).limit(limit)
        with self._reading() as connection:
            return [_entry(row) for row in connection.execute(query)]


__all__: Sequence[str] = (
    "AuditEntry",
    "AuditLog",
    "AuditRow",
    "GENESIS_HASH",
    "chain_hash",
)
