"""Reads with a time budget: a request tried where it must be quick gives up once it
turns out to be long, so that it can be run again where a long one does no harm.

Within `time_budget(seconds)`, a read raises `OverBudget` once it runs out of time.
On SQLite every read transaction the context opens is interrupted, by SQLite's
progress handler (checked every few thousand virtual-machine steps), once the budget
has run out. On PostgreSQL each statement of the read runs under a statement_timeout
of the whole budget (the server cancels it there, and nothing comes back over the
wire); the time taken to connect, or before the read, is not counted. Nothing
is written in a read, so nothing is lost; the caller runs the work again without a
budget.

A read's plan may need facts about the data first (how many resources of a type,
whether a value is common), which are counted once and remembered. A count that runs
out of budget is marked as `learning`: the same read without a budget will count it
and remember it, so the overrun says nothing of how long such reads take. So is a read
that compiled a statement of a new shape (`compiled_anew`): compiling took a few
milliseconds of its budget, which the next read of that shape will not spend.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

# SQLite virtual-machine steps between checks of the clock: a few microseconds of work.
STEPS_PER_CHECK = 2_000

# PostgreSQL's code for a statement cancelled (by statement_timeout, here).
QUERY_CANCELED = "57014"


@dataclass(frozen=True)
class ReadBudget:
    """How long a read that may be long is first tried where it must be quick (the API
    tries it on the event loop), and after how many overruns a kind of read is judged
    too long to try there; each database supplies its own."""

    seconds: float
    judged_after: int


# Most searches finish well inside the budget, and for them the trip to a thread and
# back costs more than the search itself; on PostgreSQL the thread and the loop also
# contend for the interpreter lock (benchmarks/search.py, by name prefix).
#
# On SQLite the budget is the worker's own CPU, spent even by a read that overruns, and
# the first overrun is judged: judging after three showed no gain in the published
# search mix beyond what runs of one build differ by. On PostgreSQL the budget bounds
# each statement, and the worker waits without using its CPU; but on a machine whose
# cores are all busy a statement waits for one too, so a budget as short as SQLite's
# sends quick searches to threads, where they cost more CPU: the longer budget answers
# more searches, while still bounding a long read's wait. An overrun now and then (a new
# connection's first statements, a moment the server waited for the CPU) does not send
# a kind away there: when one did, every search by name prefix went to a thread after
# the first; judged after three, name prefix, `_revinclude`, `$everything` and the mix
# all answered more (benchmarks/search.py at two workers).
SQLITE_READ_BUDGET = ReadBudget(seconds=0.002, judged_after=1)
POSTGRESQL_READ_BUDGET = ReadBudget(seconds=0.020, judged_after=3)


@dataclass
class _Budget:
    deadline: float  # perf_counter
    seconds: float
    learning: bool = False  # a count of facts for a plan ran out of it


_budget: ContextVar[_Budget | None] = ContextVar("bevan_read_budget", default=None)


class OverBudget(Exception):
    """A read ran past the time budget it was given; it stored nothing. learning: it
    ran out counting facts for its plan, which a read without a budget will remember."""

    def __init__(self, message: str, *, learning: bool = False) -> None:
        super().__init__(message)
        self.learning = learning


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Give the reads of this context seconds in all, from now (on PostgreSQL, seconds
    for each statement)."""
    token = _budget.set(_Budget(time.perf_counter() + seconds, seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def budgeted() -> bool:
    """Return True inside time_budget()."""
    return _budget.get() is not None


@contextmanager
def learning() -> Iterator[None]:
    """Mark the reads of this block as counting facts for a plan (see the module)."""
    budget = _budget.get()
    try:
        yield
    except Exception:
        if budget is not None:
            budget.learning = True
        raise


def compiled_anew() -> None:
    """Mark the read under way as learning: it compiled a statement that later reads of
    its shape reuse (see the module)."""
    budget = _budget.get()
    if budget is not None:
        budget.learning = True


def _over(budget: _Budget, message: str) -> OverBudget:
    return OverBudget(message, learning=budget.learning)


@contextmanager
def within_budget(connection: Connection) -> Iterator[None]:
    """Interrupt the reads on this SQLite connection once the context's budget runs out."""
    budget = _budget.get()
    if budget is None:
        yield
        return
    deadline = budget.deadline
    driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
    interrupted = False

    def past_deadline() -> int:
        nonlocal interrupted
        interrupted = time.perf_counter() > deadline
        return int(interrupted)

    driver.set_progress_handler(past_deadline, STEPS_PER_CHECK)
    try:
        yield
    except (sqlite3.OperationalError, OperationalError) as error:
        if interrupted:
            raise _over(budget, "the read ran past its time budget") from error
        raise
    finally:
        driver.set_progress_handler(None, 0)


@contextmanager
def statement_budget(connection: Connection) -> Iterator[None]:
    """Cancel each statement on this PostgreSQL connection that runs past the context's
    budget. The connection keeps its timeout: give it only to budgeted reads."""
    budget = _budget.get()
    if budget is None:
        yield
        return
    if budget.seconds <= 0:
        raise OverBudget("the read has no time to run")
    milliseconds = max(1, math.ceil(budget.seconds * 1000))
    info = connection.connection.info
    if info.get("bevan_statement_timeout") != milliseconds:
        connection.exec_driver_sql(f"SET statement_timeout = {milliseconds}")
        info["bevan_statement_timeout"] = milliseconds
    try:
        yield
    except Exception as error:
        cause = getattr(error, "orig", None) or error
        if getattr(cause, "sqlstate", None) == QUERY_CANCELED:
            raise _over(budget, "the read ran past its time budget") from error
        raise
