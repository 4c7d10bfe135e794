"""Hot-path statements run on the DBAPI cursor, compiled once per dialect.

SQLAlchemy Core declares every statement (one schema, one place); for the few run on
every request, building and caching a Core execution costs about ten times the work
the database does, so they are compiled to the dialect's SQL once and executed
directly. Everything else goes through Core as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class CompiledStatement:
    """SQL text for one dialect and the order its positional parameters take."""

    sql: str
    names: tuple[str, ...] | None  # None: the driver takes named parameters

    def bind(self, params: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.names is None:
            return params
        return tuple(params[name] for name in self.names)


def compile_for(statement: ClauseElement, dialect: Dialect) -> CompiledStatement:
    return _text_of(statement.compile(dialect=dialect))


def _text_of(compiled: Any) -> CompiledStatement:
    if not compiled.positional:
        return CompiledStatement(compiled.string, None)
    return CompiledStatement(compiled.string, tuple(compiled.positiontup or ()))


class ListStatement:
    """A statement with one expanding parameter (an IN list), compiled for each list size
    it meets, rounded up to a power of two, and run on the cursor. The list is padded to
    that size with repeats of its last value, which IN ignores, so a few compiled forms
    serve every size."""

    def __init__(self, statement: ClauseElement, name: str, dialect: Dialect) -> None:
        self.statement = statement
        self.name = name
        self.dialect = dialect
        self._compiled: Any = None
        # per size: the compiled form and its constants (such as OFFSET 0)
        self._sized: dict[int, tuple[CompiledStatement, dict[str, Any]]] = {}

    def bind(
        self, values: Sequence[Any], params: Mapping[str, Any] | None = None
    ) -> tuple[CompiledStatement, dict[str, Any]]:
        """Return the compiled form for len(values) (at least one) and its parameters."""
        size = 1 << (len(values) - 1).bit_length()
        known = self._sized.get(size)
        if known is None:  # the other parameters stay parameters: their values don't matter
            if self._compiled is None:
                self._compiled = self.statement.compile(dialect=self.dialect)
            state = self._compiled.construct_expanded_state(
                {**(params or {}), self.name: [values[0]] * size}
            )
            names = tuple(state.positiontup) if state.positiontup is not None else None
            known = CompiledStatement(state.statement, names), dict(state.parameters)
            self._sized[size] = known
        statement, constants = known
        bound = {**constants, **(params or {})}
        last = values[-1]
        for index in range(size):
            bound[f"{self.name}_{index + 1}"] = values[index] if index < len(values) else last
        return statement, bound


class ArrayStatement:
    """A statement whose list of values is one array parameter (PostgreSQL): the same
    text for every length of list, so the driver parses it once (it parses afresh any
    statement of more than 50 parameters, as an IN list of 64 has) and the server
    keeps one prepared statement for it. Bound like a ListStatement."""

    def __init__(self, statement: ClauseElement, name: str, dialect: Dialect) -> None:
        self.name = name
        compiled: Any = statement.compile(dialect=dialect)
        self.compiled = _text_of(compiled)
        # the values the statement fixes itself (such as LIMIT 1)
        self.constants = {k: v for k, v in compiled.params.items() if v is not None}

    def bind(
        self, values: Sequence[Any], params: Mapping[str, Any] | None = None
    ) -> tuple[CompiledStatement, dict[str, Any]]:
        return self.compiled, {**self.constants, **(params or {}), self.name: list(values)}


class RawCursor:
    """Executes CompiledStatements on the DBAPI connection under a Core Connection."""

    def __init__(self, connection: Connection) -> None:
        self._cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def execute(self, statement: CompiledStatement, params: Mapping[str, Any]) -> Any:
        self._cursor.execute(statement.sql, statement.bind(params))
        return self._cursor

    def executemany(self, statement: CompiledStatement, rows: Sequence[Mapping[str, Any]]) -> None:
        self._cursor.executemany(statement.sql, [statement.bind(r) for r in rows])

    def executemany_rows(
        self, statement: CompiledStatement, names: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Run statement for each row, given as tuples in the order of names."""
        if statement.names == names:
            self._cursor.executemany(statement.sql, rows)
        else:
            self.executemany(statement, [dict(zip(names, row, strict=True)) for row in rows])

    def scalar(self, statement: CompiledStatement, params: Mapping[str, Any]) -> Any:
        row = self.execute(statement, params).fetchone()
        return None if row is None else row[0]

    def first(self, statement: CompiledStatement, params: Mapping[str, Any]) -> Any:
        return self.execute(statement, params).fetchone()

    def rows(
        self,
        statement: ListStatement | ArrayStatement,
        values: Sequence[Any],
        params: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """Return every row of statement for the IN list values (none if it is empty)."""
        if not values:
            return []
        compiled, bound = statement.bind(values, params)
        rows: list[Any] = self.execute(compiled, bound).fetchall()
        return rows

    def close(self) -> None:
        """Close the cursor now, on this thread: left to the garbage collector it may be
        finalised while another thread is using the pooled connection."""
        self._cursor.close()
