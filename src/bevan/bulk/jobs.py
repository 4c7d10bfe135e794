"""Bulk jobs: asynchronous requests run in the background, their state in the database.

A job is a row (store/bulk_jobs.py) and a directory of files under the data directory.
The worker process that accepted a request runs it on a thread of its own; any worker
answers a poll from the row, so with `--workers` > 1 it does not matter where a poll
lands. While a worker holds a job (queued or running) it moves the row's heartbeat; a
job whose heartbeat has stopped for STALE_SECONDS lost its worker (a restart, a crash)
and is reported failed, never resumed: the client asks again. A job, its row and its
files are removed when it is cancelled (DELETE on its status URL) or when it expires.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from bevan.fhir.errors import FhirError, Issue
from bevan.fhir.outcome import operation_outcome
from bevan.store.bulk_jobs import BulkJobRow, BulkJobTable

log = logging.getLogger("bevan.bulk")

# How often a held job tells the database it is alive, and how long without a word
# before it is judged lost.
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 60.0
# Jobs one worker process runs at once; the rest wait their turn (still beating).
JOBS_AT_ONCE = 1


class JobCancelled(Exception):
    """The job's row is gone: its client cancelled it, or it expired."""


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: complete with its result, or failed with the reason."""

    state: str  # complete | failed | cancelled
    result: dict[str, Any] | None
    problem: str | None


class JobRun:
    """What a running job is given: its directory, and a way to report progress (which
    raises JobCancelled once the job has been cancelled)."""

    def __init__(self, jobs: BulkJobs, job_id: str, directory: Path) -> None:
        self._jobs = jobs
        self.job_id = job_id
        self.directory = directory
        self._last_beat = 0.0

    def progress(self, text: str, *, force: bool = False) -> None:
        """Note progress (at most once every HEARTBEAT_SECONDS unless forced); raise
        JobCancelled if the job is no longer wanted."""
        now = self._jobs.clock()
        if not force and now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        if not self._jobs.table.beat(self.job_id, now, text):
            raise JobCancelled(self.job_id)


Work = Callable[[JobRun], dict[str, Any]]


class BulkJobs:
    """Starts, reports, cancels and expires one process's bulk jobs."""

    def __init__(
        self,
        table: BulkJobTable,
        directory: Path,
        *,
        retention_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.directory = directory
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._turns = threading.Semaphore(JOBS_AT_ONCE)

    def start(
        self,
        kind: str,
        owner: str,
        request: str,
        work: Work,
        after: Callable[[JobEnd], None] = lambda end: None,
        prepare: Callable[[Path], None] = lambda directory: None,
    ) -> BulkJobRow:
        """Record a new job and run work(run) on a thread of its own; return its row.

        prepare(directory) runs first, in the caller's thread (an import's upload is
        written to files there); after(end) runs once the job has ended, however it
        ended.
        """
        self.sweep()
        now = self.clock()
        row = BulkJobRow(
            id=uuid.uuid4().hex,
            kind=kind,
            owner=owner,
            request=request,
            state="in-progress",
            created=now,
            heartbeat=now,
            expires=now + self.retention_seconds,
            progress="queued",
            result=None,
        )
        directory = self.job_directory(row.id)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            prepare(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.table.add(row)
        thread = threading.Thread(
            target=self._run,
            args=(row.id, work, after),
            name=f"bevan-bulk-{row.id[:8]}",
            daemon=True,
        )
        thread.start()
        return row

    def job_directory(self, job_id: str) -> Path:
        return self.directory / job_id

    def status(self, job_id: str, owner: str) -> BulkJobRow | None:
        """Return the job if owner asked for it and it has not expired, else None; a job
        whose worker was lost is marked failed first."""
        row = self.table.get(job_id)
        if row is None or row.owner != owner:
            return None
        now = self.clock()
        if row.expires <= now:
            self.remove(job_id)
            return None
        if row.state == "in-progress" and now - row.heartbeat > STALE_SECONDS:
            outcome = failure_outcome(
                "the server process running this request stopped before it finished; "
                "nothing of it is kept: ask again"
            )
            self.table.finish(job_id, "failed", now, orjson.dumps(outcome).decode())
            return replace(row, state="failed", result=orjson.dumps(outcome).decode())
        return row

    def cancel(self, job_id: str, owner: str) -> bool:
        """Remove owner's job and its files (a running job stops at its next progress);
        False if there is no such job for owner."""
        if self.status(job_id, owner) is None:
            return False
        self.remove(job_id)
        return True

    def remove(self, job_id: str) -> None:
        self.table.remove(job_id)
        shutil.rmtree(self.job_directory(job_id), ignore_errors=True)

    def sweep(self) -> None:
        """Remove every expired job and its files."""
        for job_id in self.table.expired(self.clock()):
            self.remove(job_id)

    def file(self, job_id: str, owner: str, name: str) -> Path | None:
        """Return the path of one of owner's complete job's files, or None."""
        row = self.status(job_id, owner)
        if row is None or row.state != "complete" or "/" in name or name.startswith("."):
            return None
        path = self.job_directory(job_id) / name
        return path if path.is_file() else None

    # --- the job's thread ---------------------------------------------------------------

    def _run(self, job_id: str, work: Work, after: Callable[[JobEnd], None]) -> None:
        end = self._wait_and_work(job_id, work)
        if end.state == "cancelled":
            shutil.rmtree(self.job_directory(job_id), ignore_errors=True)
        try:
            after(end)
        except Exception:
            log.exception("bulk job %s: its ending could not be recorded", job_id)

    def _wait_and_work(self, job_id: str, work: Work) -> JobEnd:
        run = JobRun(self, job_id, self.job_directory(job_id))
        try:
            while not self._turns.acquire(timeout=HEARTBEAT_SECONDS):
                run.progress("queued", force=True)
        except JobCancelled:
            return JobEnd("cancelled", None, "cancelled while queued")
        except Exception as error:  # the database went away: the poll will find it stale
            log.exception("bulk job %s could not be started", job_id)
            return JobEnd("failed", None, str(error))
        try:
            run.progress("started", force=True)
            result = work(run)
            if not self.table.finish(job_id, "complete", self.clock(), _text(result)):
                return JobEnd("cancelled", None, "cancelled")
            return JobEnd("complete", result, None)
        except JobCancelled:
            return JobEnd("cancelled", None, "cancelled")
        except FhirError as error:
            outcome = operation_outcome(*error.issues)
            self.table.finish(job_id, "failed", self.clock(), _text(outcome))
            return JobEnd("failed", None, "; ".join(i.diagnostics for i in error.issues))
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("bulk job %s failed (reference %s)", job_id, reference)
            outcome = failure_outcome(
                f"the server failed to finish this request; quote reference {reference} "
                "to its operators"
            )
            try:
                self.table.finish(job_id, "failed", self.clock(), _text(outcome))
            except Exception:
                log.exception("bulk job %s: its failure could not be recorded", job_id)
            return JobEnd("failed", None, f"server error, reference {reference}")
        finally:
            self._turns.release()


def failure_outcome(text: str) -> dict[str, Any]:
    """Return the OperationOutcome a failed job's status answers with."""
    return operation_outcome(Issue(text, code="exception", severity="fatal"))


def _text(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()
