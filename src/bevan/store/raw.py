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
    compiled: Any = statement.compile(dialect=dialect)
    if not compiled.positional:
        return CompiledStatement(compiled.string, None)
    return CompiledStatement(compiled.string, tuple(compiled.positiontup or ()))


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

    def close(self) -> None:
        """Close the cursor now, on this thread: left to the garbage collector it may be
        finalised while another thread is using the pooled connection."""
        self._cursor.close()
