"""Bulk writes for a load: many prepared resources to a transaction, rows in key order.

A load (records/loader.py) hands resources here a chunk at a time, already validated,
stamped and with their index rows made. Each chunk's rows go in a table at a time: on
SQLite as one executemany per table, with the keys given here (the transaction is the
only writer), so version, resource and index rows all go in ascending key order; on
PostgreSQL through COPY, with keys drawn from the tables' own sequences. A transaction
holds one file of the load (all or nothing per file); the references each resource
makes are kept in a temporary table and checked together when the load ends, so files
refer to one another in any order. This is the one place that speaks SQL for a load:
what differs between the engines is in BulkSession's two subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, RootTransaction

from bevan.store.record_store import RecordStore
from bevan.store.statements import INDEX_COLUMNS, KEYED_NAMES
from bevan.store.writing import WriteSession

# Index rows by table name, each row's values after rid and resource_type.
TableRows = tuple[tuple[str, tuple[tuple[Any, ...], ...]], ...]


class BulkResource(NamedTuple):
    """One resource ready to store: its stamped JSON, index rows, the NHS numbers it
    claims (a Patient), the resources it refers to (type, id) and where it came from
    (file number and line in the load). A tuple: it crosses from the worker process
    that made it several times cheaper than a dataclass (benchmarks/load.py)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    content: str
    rows: TableRows
    nhs_numbers: tuple[str, ...]
    references: tuple[tuple[str, str], ...]
    file: int
    line: int


@dataclass(frozen=True)
class CurrentResource:
    """A resource already stored: its row key, current version and content."""

    rid: int
    version_id: int
    deleted: bool
    content: str | None


@dataclass(frozen=True)
class UnresolvedReference:
    """A reference made by a loaded resource to one that is stored nowhere."""

    file: int
    line: int
    source_type: str
    source_id: str
    rid: int
    target_type: str
    target_id: str


_REFERENCE_COLUMNS = ("file", "line", "rid", "source_type", "source_id", "ttype", "tid")
_CHUNK = 500


class BulkSession:
    """One load's connection to the record: a transaction per file, committed whole."""

    def __init__(self, store: RecordStore, connection: Connection) -> None:
        self.store = store
        self.sessions = connection  # what write sessions for the services' rules share
        self.connection: Any = connection.connection.driver_connection  # the driver's own
        self.mark = "?" if store.dialect.name == "sqlite" else "%s"
        self._transaction: RootTransaction | None = None

    # --- transactions -------------------------------------------------------------

    def begin(self) -> None:
        self._begin()
        try:
            self._transaction = self.sessions.begin()
        except BaseException:
            self._after_transaction()
            raise

    def commit(self) -> None:
        assert self._transaction is not None
        self._transaction.commit()
        self._transaction = None
        self._after_transaction()

    def rollback(self) -> None:
        """Undo the open transaction, if there is one."""
        if self._transaction is not None:
            self._transaction.rollback()
            self._transaction = None
            self._after_transaction()

    def write_session(self) -> WriteSession:
        """Return a write session in this load's open transaction, for what the services'
        write rules read and write; close it with rules_done()."""
        store = self.store
        return WriteSession(
            self.sessions, store.dialect, store.hot, store.compiler, store.facts, store.shapes
        )

    def rules_done(self, session: WriteSession) -> None:
        """Store what a write session wrote, so the load's own keys follow on from it."""
        session.store_held_rows()
        session.close()
        self._keys_taken()

    def _keys_taken(self) -> None:
        pass

    # --- what is there already --------------------------------------------------------

    def existing(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], CurrentResource]:
        """Return the stored resources among keys (type, id), deleted ones included."""
        by_type: dict[str, list[str]] = {}
        for resource_type, id in keys:
            by_type.setdefault(resource_type, []).append(id)
        found: dict[tuple[str, str], CurrentResource] = {}
        m = self.mark
        for resource_type, ids in sorted(by_type.items()):
            for start in range(0, len(ids), _CHUNK):
                chunk = sorted(set(ids[start : start + _CHUNK]))
                rows = self._fetch(
                    "SELECT r.id, r.rid, r.version_id, r.deleted, v.content FROM resource r "
                    "JOIN resource_version v ON v.seq = r.seq "
                    f"WHERE r.resource_type = {m} AND r.id IN ({', '.join([m] * len(chunk))})",
                    (resource_type, *chunk),
                )
                for id, rid, version_id, deleted, content in rows:
                    found[(resource_type, id)] = CurrentResource(
                        int(rid), int(version_id), bool(deleted), content
                    )
        return found

    def nhs_number_holders(self, numbers: Iterable[str]) -> dict[str, str]:
        """Return the Patient id holding each of numbers that is held."""
        wanted = sorted(set(numbers))
        held: dict[str, str] = {}
        m = self.mark
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self._fetch(
                "SELECT nhs_number, patient_id FROM patient_nhs_number "
                f"WHERE nhs_number IN ({', '.join([m] * len(chunk))})",
                tuple(chunk),
            )
            held.update((number, patient) for number, patient in rows)
        return held

    # --- writes ---------------------------------------------------------------------

    def insert(self, resources: Sequence[BulkResource]) -> list[tuple[int, int]]:
        """Store new resources (none of them stored before); return their (seq, rid)."""
        if not resources:
            return []
        keys = self._next_keys(len(resources))
        versions: list[tuple[Any, ...]] = []
        current: list[tuple[Any, ...]] = []
        index: dict[str, list[tuple[Any, ...]]] = {}
        references: list[tuple[Any, ...]] = []
        holders: list[tuple[Any, ...]] = []
        for resource, (seq, rid) in zip(resources, keys, strict=True):
            t, id = resource.resource_type, resource.id
            versions.append(
                (seq, t, id, resource.version_id, resource.last_updated, "create", resource.content)
            )
            current.append((rid, t, id, resource.version_id, seq, resource.last_updated, False))
            self._collect(rid, resource, index, references, holders)
        self._insert_rows("resource_version", KEYED_NAMES["resource_version"], versions)
        self._insert_rows("resource", KEYED_NAMES["resource"], current)
        self._insert_collected(index, references, holders)
        return keys

    def replace(self, resource: BulkResource, current: CurrentResource) -> int:
        """Store resource as the next version of one already stored; return its seq."""
        m = self.mark
        ((seq, _),) = self._next_keys(1)
        self._insert_rows(
            "resource_version",
            KEYED_NAMES["resource_version"],
            [
                (
                    seq,
                    resource.resource_type,
                    resource.id,
                    resource.version_id,
                    resource.last_updated,
                    "update" if not current.deleted else "create",
                    resource.content,
                )
            ],
        )
        self._execute(
            f"UPDATE resource SET version_id = {m}, seq = {m}, last_updated = {m}, "
            f"deleted = {m} WHERE rid = {m}",
            (resource.version_id, seq, resource.last_updated, False, current.rid),
        )
        for table in INDEX_COLUMNS:
            self._execute(f"DELETE FROM index_{table} WHERE rid = {m}", (current.rid,))
        self._execute(f"DELETE FROM patient_nhs_number WHERE patient_id = {m}", (resource.id,))
        index: dict[str, list[tuple[Any, ...]]] = {}
        references: list[tuple[Any, ...]] = []
        holders: list[tuple[Any, ...]] = []
        self._collect(current.rid, resource, index, references, holders)
        self._insert_collected(index, references, holders)
        return seq

    def note_references(self, resource: BulkResource, rid: int) -> None:
        """Keep the references of a resource stored before and left as it was, so they
        are checked with the rest of the load's."""
        references: list[tuple[Any, ...]] = []
        self._collect(rid, resource, {}, references, [])
        self._insert_rows("load_reference", _REFERENCE_COLUMNS, references)

    @staticmethod
    def _collect(
        rid: int,
        resource: BulkResource,
        index: dict[str, list[tuple[Any, ...]]],
        references: list[tuple[Any, ...]],
        holders: list[tuple[Any, ...]],
    ) -> None:
        t = resource.resource_type
        for table, rows in resource.rows:
            into = index.setdefault(table, [])
            into.extend((rid, t, *row) for row in rows)
        for target_type, target_id in resource.references:
            references.append(
                (resource.file, resource.line, rid, t, resource.id, target_type, target_id)
            )
        holders.extend((number, resource.id) for number in resource.nhs_numbers)

    def _insert_collected(
        self,
        index: dict[str, list[tuple[Any, ...]]],
        references: list[tuple[Any, ...]],
        holders: list[tuple[Any, ...]],
    ) -> None:
        for table in INDEX_COLUMNS:
            rows = index.get(table)
            if rows:
                self._insert_rows(
                    f"index_{table}", ("rid", "resource_type", *INDEX_COLUMNS[table]), rows
                )
        if references:
            self._insert_rows("load_reference", _REFERENCE_COLUMNS, references)
        if holders:
            self._insert_rows("patient_nhs_number", ("nhs_number", "patient_id"), holders)

    # --- the end of a load ------------------------------------------------------------

    def unresolved(self) -> list[UnresolvedReference]:
        """Return the load's references to resources stored nowhere (or deleted), of
        resources still stored, in file and line order."""
        rows = self._fetch(
            "SELECT DISTINCT l.file, l.line, l.source_type, l.source_id, l.rid, l.ttype, l.tid "
            "FROM load_reference l JOIN resource s ON s.rid = l.rid AND NOT s.deleted "
            "WHERE NOT EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = l.ttype "
            "AND r.id = l.tid AND NOT r.deleted) ORDER BY l.file, l.line, l.ttype, l.tid",
            (),
        )
        return [UnresolvedReference(*row) for row in rows]

    def rids_of_files(self, files: Iterable[int]) -> list[int]:
        """Return the rids of resources this load stored from the given files."""
        wanted = sorted(set(files))
        if not wanted:
            return []
        m = self.mark
        return [
            int(row[0])
            for row in self._fetch(
                "SELECT DISTINCT rid FROM load_stored "
                f"WHERE file IN ({', '.join([m] * len(wanted))})",
                tuple(wanted),
            )
        ]

    def note_stored(self, file: int, rids: Sequence[int]) -> None:
        """Remember which rids a file created (so a file refused at the end goes whole)."""
        self._insert_rows("load_stored", ("file", "rid"), [(file, rid) for rid in rids])

    def created(self, rids: Iterable[int]) -> set[int]:
        """Return those of rids that this load created (rather than found stored)."""
        wanted = sorted(set(rids))
        found: set[int] = set()
        m = self.mark
        for start in range(0, len(wanted), _CHUNK):
            chunk = tuple(wanted[start : start + _CHUNK])
            rows = self._fetch(
                f"SELECT rid FROM load_stored WHERE rid IN ({', '.join([m] * len(chunk))})", chunk
            )
            found.update(int(row[0]) for row in rows)
        return found

    def discard(self, rids: Iterable[int]) -> int:
        """Remove resources this load created, leaving no trace of them; return how many
        (any other rid is left as it is)."""
        wanted = sorted(self.created(rids))
        m = self.mark
        for start in range(0, len(wanted), _CHUNK):
            chunk = tuple(wanted[start : start + _CHUNK])
            marks = ", ".join([m] * len(chunk))
            self._execute(
                "DELETE FROM patient_nhs_number WHERE patient_id IN "
                f"(SELECT id FROM resource WHERE resource_type = 'Patient' AND rid IN ({marks}))",
                chunk,
            )
            self._execute(
                "DELETE FROM resource_version WHERE seq IN "
                f"(SELECT seq FROM resource WHERE rid IN ({marks}))",
                chunk,
            )
            for table in INDEX_COLUMNS:
                self._execute(f"DELETE FROM index_{table} WHERE rid IN ({marks})", chunk)
            self._execute(f"DELETE FROM load_reference WHERE rid IN ({marks})", chunk)
            self._execute(f"DELETE FROM resource WHERE rid IN ({marks})", chunk)
        return len(wanted)

    # --- what each engine does its own way --------------------------------------------

    def _begin(self) -> None:
        raise NotImplementedError

    def _after_transaction(self) -> None:
        pass

    def _next_keys(self, count: int) -> list[tuple[int, int]]:
        """Return count new (seq, rid) pairs, ascending."""
        raise NotImplementedError

    def _insert_rows(self, table: str, names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
        finally:
            cursor.close()

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def open(self) -> None:
        """Make the load's own temporary tables and tune the connection for the load."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop the temporary tables and put the connection's settings back."""
        raise NotImplementedError


# The temporary tables of a load: the references it made, and the resources each file
# created.
_TEMPORARY = (
    "CREATE TEMPORARY TABLE load_reference (file INTEGER NOT NULL, line INTEGER NOT NULL, "
    "rid BIGINT NOT NULL, source_type TEXT NOT NULL, source_id TEXT NOT NULL, "
    "ttype TEXT NOT NULL, tid TEXT NOT NULL)",
    "CREATE TEMPORARY TABLE load_stored (file INTEGER NOT NULL, rid BIGINT NOT NULL)",
)


class SqliteBulkSession(BulkSession):
    """SQLite: the only writer, so it gives the keys itself; executemany a table at a time.

    While a load runs, its connection keeps a larger page cache (the indexes it extends
    stay in memory) and its temporary tables in a file rather than in memory, so a load
    of any size keeps to the same memory; both are put back when it ends.
    """

    CACHE_KIB = 262_144

    def open(self) -> None:
        cursor = self.connection.cursor()
        try:
            self._saved = {
                name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("cache_size", "temp_store")
            }
            cursor.execute(f"PRAGMA cache_size=-{self.CACHE_KIB}")
            cursor.execute("PRAGMA temp_store=FILE")
            for statement in _TEMPORARY:
                cursor.execute(statement.replace("CREATE TEMPORARY TABLE", "CREATE TEMP TABLE"))
        finally:
            cursor.close()
        self._keys: list[int] | None = None

    def close(self) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute("DROP TABLE IF EXISTS temp.load_reference")
            cursor.execute("DROP TABLE IF EXISTS temp.load_stored")
            for name, value in self._saved.items():
                cursor.execute(f"PRAGMA {name}={value}")
        finally:
            cursor.close()

    def _begin(self) -> None:
        # BEGIN IMMEDIATE follows (the engine's begin for writes), under the lock every
        # writer of this database queues on.
        lock = self.store.write_lock
        if lock is not None:
            lock.acquire()
        self._keys = None

    def _keys_taken(self) -> None:
        self._keys = None

    def _after_transaction(self) -> None:
        lock = self.store.write_lock
        if lock is not None:
            lock.release()
        self._keys = None

    def _next_keys(self, count: int) -> list[tuple[int, int]]:
        if self._keys is None:
            seq, rid = self._fetch(
                "SELECT (SELECT max(seq) FROM resource_version), (SELECT max(rid) FROM resource)",
                (),
            )[0]
            self._keys = [seq or 0, rid or 0]
        seq, rid = self._keys
        self._keys = [seq + count, rid + count]
        return [(seq + n, rid + n) for n in range(1, count + 1)]

    def _insert_rows(self, table: str, names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['?'] * len(names))})"
        self.connection.executemany(sql, rows)


# Fewer rows than this go in as an INSERT: starting a COPY costs more than a few rows
# (resources a write rule watches are written one at a time).
COPY_FROM_ROWS = 32


class PostgresBulkSession(BulkSession):
    """PostgreSQL: keys from the tables' sequences, rows through COPY.

    The load's lookups (which of a chunk's ids and NHS numbers are stored) run without
    sequential scans: planned when the tables were nearly empty, a scan looked cheapest,
    and a connection kept that plan as the tables grew, so each chunk read every row.
    """

    def open(self) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute("SET enable_seqscan = off")
            for statement in _TEMPORARY:
                cursor.execute(statement + " ON COMMIT PRESERVE ROWS")
            self.connection.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute("DROP TABLE IF EXISTS load_reference, load_stored")
            cursor.execute("RESET enable_seqscan")
            self.connection.commit()
        finally:
            cursor.close()

    def _begin(self) -> None:
        pass  # the driver begins a transaction with the first statement

    def _next_keys(self, count: int) -> list[tuple[int, int]]:
        rows = self._fetch(
            "SELECT nextval(pg_get_serial_sequence('resource_version', 'seq')), "
            "nextval(pg_get_serial_sequence('resource', 'rid')) FROM generate_series(1, %s)",
            (count,),
        )
        seqs = sorted(int(row[0]) for row in rows)
        rids = sorted(int(row[1]) for row in rows)
        return list(zip(seqs, rids, strict=True))

    def _insert_rows(self, table: str, names: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cursor = self.connection.cursor()
        try:
            if len(rows) < COPY_FROM_ROWS:
                marks = ", ".join(["%s"] * len(names))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows
                )
                return
            with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()


@contextmanager
def bulk_session(store: RecordStore) -> Iterator[BulkSession]:
    """A load's session on store: its own connection, temporary tables and settings."""
    sqlite = store.dialect.name == "sqlite"
    kind: type[BulkSession] = SqliteBulkSession if sqlite else PostgresBulkSession
    with store.engine.connect().execution_options(bevan_write=True) as connection:
        session = kind(store, connection)
        session.open()
        try:
            yield session
        finally:
            try:
                session.rollback()
            except BaseException:
                # the lock and transaction are gone with the connection
                session._transaction = None
                session._after_transaction()
            session.close()
