"""The audit trail: every interaction's AuditEvent, committed before its answer is sent.

Requests hand their records to one writer task, which appends whatever has queued in a
single transaction (group commit), then wakes every waiting request.
Many concurrent requests so share one commit, and auditing costs little throughput. A
failed append is raised in each request whose record it held: auditing never fails
silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple

import orjson

from bevan.security.audit import (
    AuditColumns,
    AuditRecord,
    audit_columns,
    audit_event,
    entities_of_event,
)
from bevan.store.audit import AuditEntry, AuditLog, AuditRow

MAX_BATCH = 500


class AuditNotRecorded(Exception):
    """The audit entry could not be committed, so the interaction must not be answered."""


def audit_row(record: AuditRecord) -> AuditRow:
    """Return the row that stores a record: its AuditEvent as compact JSON, and its columns."""
    event = audit_event(record)
    columns = audit_columns(event)
    return AuditRow(
        recorded=columns.recorded,
        user_id=columns.user_id,
        patient_id=columns.patient_id,
        action=columns.action,
        outcome=columns.outcome,
        break_glass=columns.break_glass,
        content=orjson.dumps(event).decode(),
        entities=entities_of_event(event),
    )


def filing_problem(entry: AuditEntry) -> str | None:
    """Return a problem if an entry's searchable columns disagree with its AuditEvent, else None.

    The columns and the entity rows are outside the hash, so this is what shows an entry
    moved to another patient or user to hide it from their listing. Entity rows are
    compared for sealed entries only: those written before the trail had its key are
    filed under their one patient alone.
    """
    try:
        event = orjson.loads(entry.content)
        columns = audit_columns(event)
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"audit entry {entry.seq} does not hold a readable AuditEvent"
    if (
        entry.seal is not None
        and entry.filed_under is not None
        and set(entry.filed_under) != set(entities_of_event(event))
    ):
        return f"audit entry {entry.seq} is filed under other patients or resources than it names"
    stored = AuditColumns(
        recorded=entry.recorded,
        user_id=entry.user_id,
        patient_id=entry.patient_id,
        action=entry.action,
        outcome=entry.outcome,
        break_glass=entry.break_glass,
    )
    if astuple(stored) != astuple(columns):
        return f"audit entry {entry.seq} is filed under columns that differ from its content"
    return None


class _Stop:
    """The marker that tells the writer to commit what came before it and finish."""


_STOP = _Stop()
# A queued item: a row to append, None (flush) or _STOP; and the future its caller awaits.
_Item = tuple[AuditRecord | _Stop | None, "asyncio.Future[None]"]


class AuditTrail:
    """Records audit entries, synchronously or through the asyncio group-commit writer."""

    def __init__(self, log: AuditLog, *, max_batch: int = MAX_BATCH) -> None:
        self.log = log
        self.max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def record_sync(self, records: Sequence[AuditRecord]) -> list[int]:
        """Append records in one transaction now; return their seqs."""
        return self.log.append([audit_row(record) for record in records])

    async def record(self, record: AuditRecord) -> None:
        """Return once the record's entry is committed; raise AuditNotRecorded if it was not
        (a record that cannot become an AuditEvent fails its own request alone)."""
        await self._enqueue(record)

    async def flush(self) -> None:
        """Return once everything recorded before this call is committed."""
        if self._queue is not None and self._loop is asyncio.get_running_loop():
            await self._enqueue(None)

    @property
    def queue_depth(self) -> int:
        """Return how many entries wait for the audit writer's next commit."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the writer in the running loop (app startup); recording also starts it."""
        self._ensure_writer()

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer (app shutdown)."""
        writer = self._writer
        if writer is not None and self._loop is asyncio.get_running_loop():
            await self._enqueue(_STOP)
            await writer
        self._reset()

    def verify(self, progress: Callable[[int], object] | None = None) -> list[str]:
        """Return the problems in the audit chain and its filing, each naming its entry."""
        return self.log.verify(progress, check=filing_problem)

    # --- the writer --------------------------------------------------------------------

    async def _enqueue(self, row: AuditRecord | _Stop | None) -> None:
        queue = self._ensure_writer()
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        queue.put_nowait((row, done))
        await done

    def _ensure_writer(self) -> asyncio.Queue[_Item]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._writer is None or self._writer.done():
            self._reset()
            self._loop = loop
            self._queue = asyncio.Queue()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bevan-audit")
            self._writer = loop.create_task(self._write_batches(self._queue))
        assert self._queue is not None
        return self._queue

    def _reset(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._loop = self._queue = self._writer = self._executor = None

    async def _write_batches(self, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        executor = self._executor
        stopping = False
        while not stopping:
            batch = [await queue.get()]
            # Let the requests the loop is already running add their records before this
            # commit rather than wait for the next: one pass of the loop, and a commit
            # then serves several times as many, and searches answer more for it
            # (benchmarks/search.py on PostgreSQL at two workers, benchmarks/audit.py).
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                _fail(batch + _drain(queue), AuditNotRecorded("the audit writer was cancelled"))
                raise
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            records = [(item, done) for item, done in batch if isinstance(item, AuditRecord)]
            stopping = any(item is _STOP for item, _ in batch)
            failure: Exception | None = None
            try:
                if records:
                    rows, refused = _rows_of(records)
                    # An append is quick: done here it needs no thread hop and no wait
                    # for the interpreter lock, which cost the server CPU on every
                    # search (benchmarks/search.py on PostgreSQL). Only when another of this process's writers holds
                    # SQLite's lock does it go to a thread, to wait there.
                    if self.log.try_append(rows) is None:
                        await loop.run_in_executor(executor, self.log.append, rows)
                    for done, error in refused:
                        if not done.done():
                            problem = AuditNotRecorded(f"the audit entry is not valid: {error}")
                            problem.__cause__ = error
                            done.set_exception(problem)
            except asyncio.CancelledError:
                _fail(batch, AuditNotRecorded("the audit writer was cancelled mid-commit"))
                _fail(_drain(queue), AuditNotRecorded("the audit writer was cancelled"))
                raise
            except Exception as error:
                failure = error
            for _, done in batch:
                if done.done():
                    continue  # its request was cancelled; the entry is still written
                if failure is None:
                    done.set_result(None)
                else:
                    problem = AuditNotRecorded(f"audit entries could not be committed: {failure}")
                    problem.__cause__ = failure
                    done.set_exception(problem)
        _fail(_drain(queue), AuditNotRecorded("the audit writer has stopped"))


def _rows_of(
    records: list[tuple[AuditRecord, asyncio.Future[None]]],
) -> tuple[list[AuditRow], list[tuple[asyncio.Future[None], Exception]]]:
    rows, refused = [], []
    for record, done in records:
        try:
            rows.append(audit_row(record))
        except Exception as error:  # one bad record must not cost the others their entries
            refused.append((done, error))
    return rows, refused


def _drain(queue: asyncio.Queue[_Item]) -> list[_Item]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _fail(items: list[_Item], error: AuditNotRecorded) -> None:
    for _, done in items:
        if not done.done():
            done.set_exception(AuditNotRecorded(*error.args))


__all__: Sequence[str] = (
    "AuditNotRecorded",
    "AuditTrail",
    "audit_row",
    "filing_problem",
)
