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
