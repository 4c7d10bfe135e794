"""What differs between the databases the store runs on, one object per engine (as
ehrQL's query engines are): each subclass overrides only what its database does
differently, and the rest of the store asks it rather than the engine's name."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from bevan.store.budget import ReadBudget
from bevan.store.search import SearchCompiler

if TYPE_CHECKING:
    from bevan.store.sqlite_dialect import WriterLock


class StoreDialect:
    """One database engine as the store uses it."""

    name: str
    # How long a read is first tried where it must be quick (store/budget.py).
    read_budget: ReadBudget
    # One writer at a time, holding the only write lock: a write session gives its rows
    # their keys itself and holds them back to insert a table at a time (held rows).
    single_writer: bool
    explain: str  # the words that ask for a statement's plan
    # The lock this process's writers queue on, where the database has one writer.
    write_lock: WriterLock | None = None

    def __init__(self, engine: Engine, compiler: SearchCompiler) -> None:
        self.engine = engine
        self.compiler = compiler

    def read_connection(self) -> AbstractContextManager[Connection]:
        """A connection to read on, outside any write batch."""
        raise NotImplementedError

    def plan_line(self, row: Any) -> str:
        """Return one step of a plan from a row EXPLAIN returned."""
        raise NotImplementedError

    def analyse(self, table_names: str, *, settle: bool = False) -> None:
        """Refresh the planner's statistics of the named tables (settle: after a load)."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the engine, its pools and whatever the dialect runs beside them."""
        raise NotImplementedError
