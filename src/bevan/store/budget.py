"""Reads with a time budget: a request tried where it must be quick gives up once it
turns out to be long, so that it can be run again where a long one does no harm.

Within `time_budget(seconds)`, every SQLite read transaction this context opens is
interrupted (by SQLite's progress handler, checked every few thousand virtual-machine
steps) once the budget has run out, and raises `OverBudget`. Nothing is written in a
read transaction, so nothing is lost; the caller runs the work again without a budget.
PostgreSQL reads are never interrupted this way: only SQLite offers the handler.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

# SQLite virtual-machine steps between checks of the clock: a few microseconds of work.
STEPS_PER_CHECK = 2_000

_deadline: ContextVar[float | None] = ContextVar("bevan_read_deadline", default=None)


class OverBudget(Exception):
    """A read ran past the time budget it was given; it stored nothing."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Give the SQLite reads of this context seconds in all, from now."""
    token = _deadline.set(time.perf_counter() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def within_budget(connection: Connection) -> Iterator[None]:
    """Interrupt the reads on this SQLite connection once the context's budget runs out."""
    deadline = _deadline.get()
    if deadline is None:
        yield
        return
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
            raise OverBudget("the read ran past its time budget") from error
        raise
    finally:
        driver.set_progress_handler(None, 0)
