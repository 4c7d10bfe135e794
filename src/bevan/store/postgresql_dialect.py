"""The store on PostgreSQL: reads outside transactions on pools of their own, a
statement timeout for budgeted reads, and writers that serialise on advisory locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine

from bevan.store.budget import POSTGRESQL_READ_BUDGET, budgeted, statement_budget
from bevan.store.dialect import StoreDialect
from bevan.store.engine import reads_engine
from bevan.store.search import PostgreSQLSearchCompiler


class PostgreSQLDialect(StoreDialect):
    """PostgreSQL: many writers at once, each transaction keyed by the database."""

    name = "postgresql"
    read_budget = POSTGRESQL_READ_BUDGET
    single_writer = False
    explain = "EXPLAIN "

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, PostgreSQLSearchCompiler())
        # Reads run without a transaction (see read_connection), on connections of their
        # own that are always so: setting, then resetting, each connection's isolation
        # level was a share of every search's time in the server. Reads with a time
        # budget have a pool of their own again, as their connections keep its timeout.
        self._reads = reads_engine(engine)
        self._budgeted_reads = reads_engine(engine, pool_size=2)

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """Each statement reads what was committed when it began (READ COMMITTED, which
        a transaction would give them too), so reads run without one: a transaction's
        BEGIN and COMMIT were two of a search's three round trips, holding up the event
        loop that waits for them (benchmarks/search.py, by NHS number, shows it). Inside
        time_budget() the connection comes from a pool whose statements carry the
        timeout."""
        if not budgeted():
            with self._reads.connect() as connection:
                yield connection
            return
        with self._budgeted_reads.connect() as connection, statement_budget(connection):
            yield connection

    def plan_line(self, row: Any) -> str:
        return str(row[0])

    def analyse(self, table_names: str, *, settle: bool = False) -> None:
        """settle: VACUUM as well, marking the new rows visible to every reader so that
        index-only scans need not visit each one's table row, as autovacuum would later:
        searches by name prefix and with _revinclude answer more just after a load, for
        a VACUUM that takes seconds (benchmarks/search.py on PostgreSQL)."""
        if settle:  # VACUUM cannot run inside a transaction
            with self._reads.connect() as connection:
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {table_names}")
            return
        with self.engine.connect() as connection:
            # only our tables: a bare ANALYZE visits every schema in the database
            connection.exec_driver_sql(f"ANALYZE {table_names}")
            connection.commit()

    def close(self) -> None:
        for engine in (self._reads, self._budgeted_reads, self.engine):
            engine.dispose()
