"""SQL for failed sign-ins: when each failure happened, filed under what it counts against."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, delete, func, insert, select

from bevan.store.identity import epoch, instant
from bevan.store.schema import sign_in_failure


class SignInFailures:
    """Failed sign-ins, counted by subject ("account:<username>", "address:<client>")."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        # bevan_write makes SQLite take its write lock at BEGIN (see store.engine).
        with (
            self.engine.connect().execution_options(bevan_write=True) as connection,
            connection.begin(),
        ):
            yield connection

    def add(self, subjects: Iterable[str], at: float) -> None:
        """Record one failure at epoch seconds `at` against each subject."""
        rows = [{"subject": s, "at": instant(at)} for s in subjects]
        if rows:
            with self._writing() as connection:
                connection.execute(insert(sign_in_failure), rows)

    def since(self, subject: str, start: float) -> tuple[int, float | None]:
        """Return how many failures subject has had since start, and the earliest of them."""
        statement = select(func.count(), func.min(sign_in_failure.c.at)).where(
            sign_in_failure.c.subject == subject, sign_in_failure.c.at >= instant(start)
        )
        with self.engine.connect() as connection:
            count, earliest = connection.execute(statement).one()
        return int(count), epoch(earliest) if earliest else None

    def clear(self, subject: str) -> None:
        """Forget subject's failures (an account after a successful sign-in)."""
        with self._writing() as connection:
            connection.execute(delete(sign_in_failure).where(sign_in_failure.c.subject == subject))

    def purge(self, before: float) -> None:
        """Delete failures too old to count."""
        with self._writing() as connection:
            connection.execute(
                delete(sign_in_failure).where(sign_in_failure.c.at < instant(before))
            )
