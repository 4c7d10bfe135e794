"""WriteSession: the writes of one transaction, and the savepoints inside it.

Every write goes through WriteSession.write_version, which appends the version, moves the
current row and replaces the index rows in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from bevan.fhir.search_parameters import IndexRows
from bevan.store import nhs_number_holders, reference_targets
from bevan.store.raw import RawCursor
from bevan.store.reading import ReadSession
from bevan.store.statements import HELD_NAMES, KEYED_NAMES
from bevan.store.versions import CurrentRow, StoreConflict

# PostgreSQL's SQLSTATE for a statement undone to break a deadlock.
DEADLOCK_DETECTED = "40P01"

# Rows a write session holds back at most before inserting them.
MAX_HELD_ROWS = 20_000


# Where a held resource row keeps its type, id and deleted flag (KEYED_NAMES["resource"]).
_RESOURCE_TYPE = KEYED_NAMES["resource"].index("resource_type")
_ID = KEYED_NAMES["resource"].index("id")
_DELETED = KEYED_NAMES["resource"].index("deleted")


class WriteSession(ReadSession):
    """A write transaction: everything in it commits together or not at all.

    Index rows, and on SQLite version rows and new resource rows, are held back and
    inserted a table at a time (one executemany for many resources instead of several
    statements for each): before any read, before rows are deleted, at a savepoint's
    edges and when the session ends.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._pending: dict[str, list[tuple[Any, ...]]] = {}
        self._pending_rows = 0
        self._last_keys: list[int] | None = None  # SQLite: the last seq and rid given

    @property
    def raw(self) -> RawCursor:
        """The cursor, once every held-back row is in (so reads see this session's writes)."""
        self._see_own_writes()
        return super().raw

    def _see_own_writes(self) -> None:
        if self._pending:
            self.store_held_rows()

    def store_held_rows(self) -> None:
        """Insert the rows held back so far."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        cursor = super().raw
        for table, rows in pending.items():
            cursor.executemany_rows(self.hot.insert_held[table], HELD_NAMES[table], rows)

    def _hold(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        held = self._pending.get(table)
        if held is None:
            self._pending[table] = rows
        else:
            held.extend(rows)
        self._pending_rows += len(rows)

    def current_row(self, resource_type: str, id: str) -> CurrentRow | None:
        """Return the current row, locked against concurrent writers until commit."""
        row = self.raw.first(self.hot.select_row_for_update, {"t": resource_type, "i": id})
        return CurrentRow(row[0], row[1], bool(row[2])) if row else None

    def live_keys(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return those of keys (type, id) that exist now, counting this session's writes.

        Held rows stay held (inserting them before every write's check would undo the
        group commit's one insert per table; benchmarks/crud.py): the only resource rows
        held are new resources', so those are looked up here and the rest in the table.
        """
        wanted = set(keys)
        held = {
            (row[_RESOURCE_TYPE], row[_ID])
            for row in self._pending.get("resource", ())
            if not row[_DELETED]
        }
        found = wanted & held
        rest = wanted - held
        if rest:
            found |= reference_targets.live(self.connection, rest)
        return found

    def referrers(self, resource_type: str, id: str) -> set[tuple[str, str]]:
        """Return (type, id) of the current resources that reference resource_type/id."""
        self.store_held_rows()
        return reference_targets.referrers(self.connection, resource_type, id)

    def claim_nhs_numbers(self, patient_id: str, numbers: tuple[str, ...]) -> str | None:
        """Make patient_id the one holder of numbers; return another holder's id instead."""
        return nhs_number_holders.claim(self.connection, patient_id, numbers)

    def release_nhs_numbers(self, patient_id: str) -> None:
        """Let go of the NHS numbers a deleted Patient held."""
        nhs_number_holders.release(self.connection, patient_id)

    def lock(self, key: str) -> None:
        """Serialise writers that share key until commit (conditional creates, a slot
        being booked). On SQLite the write transaction is already the only writer.

        Raises StoreConflict when waiting would deadlock: two group commits in different
        processes, each holding a key the other's batch waits for. PostgreSQL undoes the
        waiting statement alone, and the savepoint around the caller's write undoes the
        rest of that one write.
        """
        if self.dialect.single_writer:
            return
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        try:
            self.connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": digest})
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == DEADLOCK_DETECTED:
                raise StoreConflict(f"{key} is being written by another transaction") from None
            raise

    def write_version(
        self,
        resource_type: str,
        id: str,
        *,
        version_id: int,
        last_updated: str,
        content: str | None,
        rows: IndexRows,
        current: CurrentRow | None,
    ) -> int:
        """Append a version (content None: a delete) and make it current; return its seq."""
        method = "delete" if content is None else ("create" if current is None else "update")
        row = {
            "resource_type": resource_type,
            "id": id,
            "version_id": version_id,
            "last_updated": last_updated,
            "deleted": content is None,
        }
        row["seq"] = seq = self._append_version(row, method, content)
        if current is None:
            rid = self._add_resource(row)
        else:
            rid = current.rid
            self.raw.execute(self.hot.update_resource, {**row, "b_rid": rid})
            self._delete_index_rows(rid)
        self._insert_index_rows(rid, resource_type, rows)
        return seq

    # On SQLite this transaction is the only writer, so the session gives the keys the
    # database would (one past the largest) and holds the version and resource rows back,
    # to go in with the index rows a table at a time.

    def _append_version(self, row: dict[str, Any], method: str, content: str | None) -> int:
        """Append the version row; return its seq."""
        values = {**row, "method": method, "content": content}
        if self.dialect.single_writer:
            values["seq"] = seq = self._next_key(0)
            self._hold_keyed("resource_version", values)
            return seq
        seq = self.raw.scalar(self.hot.insert_version, values)
        if seq is None:  # PostgreSQL: another transaction wrote this version first
            raise StoreConflict(f"{row['resource_type']}/{row['id']} was changed concurrently")
        return int(seq)

    def _add_resource(self, row: dict[str, Any]) -> int:
        """Add the resource row of a new resource; return its rid."""
        if self.dialect.single_writer:
            rid = self._next_key(1)
            self._hold_keyed("resource", {**row, "rid": rid})
            return rid
        rid = self.raw.scalar(self.hot.insert_resource, row)
        if rid is None:  # PostgreSQL: another transaction created it first
            raise StoreConflict(f"{row['resource_type']}/{row['id']} was created concurrently")
        return int(rid)

    def _hold_keyed(self, table: str, values: dict[str, Any]) -> None:
        self._hold(table, [tuple(values[name] for name in KEYED_NAMES[table])])

    def _next_key(self, which: int) -> int:
        """Return the next seq (which 0) or rid (which 1) on SQLite."""
        if self._last_keys is None:
            seq, rid = self.raw.first(self.hot.last_keys, {})
            self._last_keys = [seq or 0, rid or 0]
        self._last_keys[which] += 1
        return self._last_keys[which]

    def replace_index_rows(self, rid: int, resource_type: str, rows: IndexRows) -> None:
        """Replace a resource's index rows (reindexing after the indexed set changes)."""
        self._delete_index_rows(rid)
        self._insert_index_rows(rid, resource_type, rows)

    def _delete_index_rows(self, rid: int) -> None:
        self.store_held_rows()  # any held back for rid are deleted too
        for statement in self.hot.delete_index.values():
            self.raw.execute(statement, {"b_rid": rid})

    def _insert_index_rows(self, rid: int, resource_type: str, rows: IndexRows) -> None:
        for table, values in rows.tables():
            self._hold(table, [(rid, resource_type, *v) for v in values])
        if self._pending_rows >= MAX_HELD_ROWS:
            self.store_held_rows()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block whose writes are undone alone if it raises (batch entries)."""
        self.store_held_rows()
        try:
            with savepoint(self.connection):
                yield
                self.store_held_rows()
        except BaseException:
            self._pending, self._pending_rows = {}, 0  # the block's own, undone with it
            raise


_SAVEPOINT_NAMES = itertools.count(1)


@contextmanager
def savepoint(connection: Connection) -> Iterator[None]:
    """Run a block under a savepoint of connection's transaction: undone alone if it
    raises. Straight to the driver: through Core, the SAVEPOINT and RELEASE around a
    small write cost a noticeable share of a CRUD server's time (benchmarks/crud.py)."""
    name = f"bevan_{next(_SAVEPOINT_NAMES)}"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        cursor.execute(f"RELEASE SAVEPOINT {name}")
    finally:
        cursor.close()
