"""The audit log: an append-only, hash-chained table of AuditEvents.

Each entry's hash is SHA-256 of the previous entry's hash, its own seq and its content,
so altering, removing or reordering an entry breaks the chain from that point and
`verify` names where. Each entry is also sealed: HMAC-SHA-256 of its seq and hash under
a key kept outside the database, so one who can write the table but not read the key
cannot rewrite entries and recompute the chain unnoticed. Removing the newest entries
leaves a shorter chain that still verifies; a checkpoint (`anchor`) kept elsewhere shows
it. Appends take a write lock (BEGIN IMMEDIATE on SQLite, an advisory
transaction lock on PostgreSQL) so the chain has one head. This module never updates or
deletes an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, func, insert, or_, select

from bevan.store.raw import RawCursor, compile_for
from bevan.store.schema import audit_entity, audit_event
from bevan.store.sqlite_dialect import WriterLock

GENESIS_HASH = "0" * 64
# The advisory lock key that serialises appends on PostgreSQL ("audit" in ASCII).
APPEND_LOCK_KEY = 0x6175646974
VERIFY_CHUNK = 5000


def chain_hash(previous_hash: str, seq: int, content: str) -> str:
    """Return the hash of an entry: SHA-256 hex of "previous_hash|seq|content"."""
    return hashlib.sha256(f"{previous_hash}|{seq}|{content}".encode()).hexdigest()


def seal_of(key: bytes, seq: int, hash: str) -> str:
    """Return an entry's seal: HMAC-SHA-256 hex, under key, of "seq|hash"."""
    return hmac.new(key, f"{seq}|{hash}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A point in the chain an operator keeps elsewhere: the entry at seq had this hash,
    sealed (under the audit key) as seal, when the checkpoint was taken."""

    seq: int
    hash: str
    seal: str
    taken: str


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
    # "Type/id" of every patient and resource the entry is about, to be found by.
    entities: tuple[str, ...] = ()


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
    seal: str | None = None
    # The "Type/id"s it is filed under, when read for verification (else None).
    filed_under: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AuditQuery:
    """What to find in the log: entries matching every given filter, newest first.

    entities holds groups of "Type/id" references: an entry must be about one of each
    group's. fragments holds groups of texts: its content must contain one of each's.
    """

    user_ids: tuple[str, ...] = ()
    entities: tuple[tuple[str, ...], ...] = ()
    recorded_from: str | None = None  # inclusive
    recorded_before: str | None = None  # exclusive
    outcomes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    fragments: tuple[tuple[str, ...], ...] = ()
    break_glass: bool | None = None
    before_seq: int | None = None
    limit: int = 100


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
        seal=row.seal,
    )


_INSERT_VALUES: dict[str, Any] = {
    name: bindparam(name)
    for name in (
        "seq", "recorded", "user_id", "patient_id", "action", "outcome", "break_glass",
        "content", "previous_hash", "hash", "seal",
    )
}  # fmt: skip
_ENTITY_VALUES: dict[str, Any] = {name: bindparam(name) for name in ("reference", "seq")}
_SELECT_HEAD = select(audit_event.c.seq, audit_event.c.hash).order_by(audit_event.c.seq.desc())


def _filed(values: list[dict[str, Any]], rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
    """Return the audit_entity rows of appended entries: one per distinct "Type/id"."""
    return [
        {"reference": reference, "seq": value["seq"]}
        for value, row in zip(values, rows, strict=True)
        for reference in dict.fromkeys(row.entities)
    ]


class AuditLog:
    """All SQL about the audit_event table: append a batch, verify the chain, find entries."""

    def __init__(
        self, engine: Engine, write_lock: WriterLock | None = None, key: bytes | None = None
    ) -> None:
        """key seals each entry appended (see seal_of); without one, entries are unsealed."""
        self.engine = engine
        self.key = key
        self.sqlite = engine.dialect.name == "sqlite"
        # Queue this process's appenders on a lock rather than in SQLite's busy handler;
        # sharing the record store's lock queues them with every other writer too.
        self._append_lock = (write_lock or WriterLock(None)) if self.sqlite else None
        self._insert = compile_for(insert(audit_event).values(**_INSERT_VALUES), engine.dialect)
        self._insert_entity = compile_for(
            insert(audit_entity).values(**_ENTITY_VALUES), engine.dialect
        )
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
                filed = _filed(values, rows)
                if filed:
                    cursor.executemany(self._insert_entity, filed)
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
                filed = _filed(values, rows)
                with driver.pipeline():  # type: ignore[union-attr]
                    cursor.executemany(self._insert, values)
                    if filed:
                        cursor.executemany(self._insert_entity, filed)
                    driver.commit()  # type: ignore[union-attr]
            finally:
                cursor.close()
        return [value["seq"] for value in values]

    def _chained(self, head: Any, rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
        """Return the rows' values, each chained onto the one before, the first onto head,
        and sealed if the log has a key."""
        key = self.key
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
                    "seal": seal_of(key, seq, digest) if key is not None else None,
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
        """Yield every entry in seq order, with what it is filed under, chunk at a time."""
        after = 0
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    select(audit_event)
                    .where(audit_event.c.seq > after)
                    .order_by(audit_event.c.seq)
                    .limit(chunk)
                ).all()
                filed: dict[int, list[str]] = {}
                if rows:
                    for reference, seq in connection.execute(
                        select(audit_entity.c.reference, audit_entity.c.seq).where(
                            audit_entity.c.seq.between(rows[0].seq, rows[-1].seq)
                        )
                    ):
                        filed.setdefault(int(seq), []).append(reference)
            for row in rows:
                entry = _entry(row)
                yield replace(entry, filed_under=tuple(sorted(filed.get(entry.seq, ()))))
            if len(rows) < chunk:
                return
            after = int(rows[-1].seq)

    def verify(
        self,
        progress: Callable[[int], object] | None = None,
        check: Callable[[AuditEntry], str | None] | None = None,
    ) -> list[str]:
        """Return the problems in the chain, each naming its entry (empty: it verifies).

        With the log's key, every entry's seal is checked too: one written since the trail
        had its key and now unsealed or sealed wrongly was rewritten by someone without
        the key. progress, if given, is called with the number of entries read since the
        last call; check, if given, may return a further problem with one entry (or None).
        """
        problems: list[str] = []
        expected_seq, expected_previous = 1, GENESIS_HASH
        pending = 0
        sealed_since: int | None = None
        for entry in self.entries():
            if entry.seq != expected_seq or entry.previous_hash != expected_previous:
                problems.append(f"audit entry {entry.seq} follows a missing or changed entry")
            if chain_hash(entry.previous_hash, entry.seq, entry.content) != entry.hash:
                problems.append(
                    f"audit entry {entry.seq} has been altered: its hash does not match its content"
                )
            if self.key is not None:
                if entry.seal is not None:
                    sealed_since = entry.seq if sealed_since is None else sealed_since
                    if not hmac.compare_digest(
                        entry.seal, seal_of(self.key, entry.seq, entry.hash)
                    ):
                        problems.append(
                            f"audit entry {entry.seq} has been rewritten: its seal is not the "
                            "audit key's"
                        )
                elif sealed_since is not None:
                    problems.append(
                        f"audit entry {entry.seq} has been rewritten: it has lost its seal"
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

    def checkpoint(self, taken: str) -> Checkpoint:
        """Return the head as a checkpoint taken at the given instant (the log needs a key)."""
        if self.key is None:
            raise ValueError("a checkpoint needs the audit key")
        seq, head = self.head()
        return Checkpoint(seq, head, seal_of(self.key, seq, head), taken)

    def check_checkpoint(self, checkpoint: Checkpoint) -> list[str]:
        """Return why the log no longer holds a checkpoint unaltered (empty: it does).

        The checkpoint's seal shows it is genuine; the entry at its seq must still have its
        hash, so nothing up to it has changed (the chain ties every earlier entry to it);
        and no entry up to it may be missing, so the log has not been cut back below it.
        """
        if self.key is None:
            return ["the checkpoint cannot be checked without the audit key"]
        expected = seal_of(self.key, checkpoint.seq, checkpoint.hash)
        if not hmac.compare_digest(checkpoint.seal, expected):
            return [
                f"the checkpoint at entry {checkpoint.seq} is not genuine: its seal is not "
                "the audit key's"
            ]
        if checkpoint.seq == 0:
            return []
        seq, _ = self.head()
        with self._reading() as connection:
            row = connection.execute(
                select(audit_event.c.hash).where(audit_event.c.seq == checkpoint.seq)
            ).first()
        if row is None or seq < checkpoint.seq:
            return [
                f"the audit trail has been truncated: it ends at entry {seq}, before the "
                f"checkpoint's entry {checkpoint.seq}"
            ]
        if row.hash != checkpoint.hash:
            return [
                f"audit entry {checkpoint.seq} is not the one checkpointed: the trail up to "
                "it has been rewritten"
            ]
        return []

    def for_patient(
        self, patient_id: str, limit: int = 100, before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Return the entries about one patient's record, newest first."""
        return self.search(
            AuditQuery(entities=((f"Patient/{patient_id}",),), limit=limit, before_seq=before_seq)
        )

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
        return self.search(
            AuditQuery(
                user_ids=(user_id,) if user_id is not None else (),
                entities=((f"Patient/{patient_id}",),) if patient_id is not None else (),
                recorded_from=since,
                outcomes=(outcome,) if outcome is not None else (),
                break_glass=break_glass,
                limit=limit,
                before_seq=before_seq,
            )
        )

    def entry(self, seq: int) -> AuditEntry | None:
        """Return the entry at seq, or None."""
        with self._reading() as connection:
            row = connection.execute(select(audit_event).where(audit_event.c.seq == seq)).first()
        return _entry(row) if row is not None else None

    def search(self, query: AuditQuery) -> list[AuditEntry]:
        """Return the entries a query finds, newest first."""
        with self._reading() as connection:
            return [_entry(row) for row in connection.execute(_statement(query))]


def _statement(query: AuditQuery) -> Select[Any]:
    """Return the SELECT of the entries a query finds, newest first."""
    statement = select(audit_event)
    if query.user_ids:
        statement = statement.where(audit_event.c.user_id.in_(query.user_ids))
    for group in query.entities:
        filed = select(audit_entity.c.seq).where(audit_entity.c.reference.in_(group))
        statement = statement.where(audit_event.c.seq.in_(filed))
    if query.recorded_from is not None:
        statement = statement.where(audit_event.c.recorded >= query.recorded_from)
    if query.recorded_before is not None:
        statement = statement.where(audit_event.c.recorded < query.recorded_before)
    if query.outcomes:
        statement = statement.where(audit_event.c.outcome.in_(query.outcomes))
    if query.actions:
        statement = statement.where(audit_event.c.action.in_(query.actions))
    for texts in query.fragments:
        clauses = [audit_event.c.content.contains(text, autoescape=True) for text in texts]
        statement = statement.where(or_(*clauses))
    if query.break_glass is not None:
        statement = statement.where(audit_event.c.break_glass == query.break_glass)
    if query.before_seq is not None:
        statement = statement.where(audit_event.c.seq < query.before_seq)
    return statement.order_by(audit_event.c.seq.desc()).limit(query.limit)


__all__: Sequence[str] = (
    "AuditEntry",
    "AuditLog",
    "AuditQuery",
    "AuditRow",
    "Checkpoint",
    "GENESIS_HASH",
    "chain_hash",
    "seal_of",
)
