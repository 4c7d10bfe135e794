"""SQLite: the write-ahead log is copied into the database file by a thread of its own,
and still starts again from its beginning under writes that never pause."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from bevan.records.service import RecordService
from bevan.store import sqlite_dialect
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore


def patient(n: int) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": f"Ndlovu{n}", "given": ["Thandi"]}]}


def test_the_database_file_catches_up_without_waiting_for_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    store = RecordStore.from_url(f"sqlite:///{path}")
    try:
        upgrade(store.engine)
        service = RecordService(store)
        for n in range(50):
            service.create(patient(n))
        # Well under the commits' own checkpoint threshold, yet within a few of the
        # thread's intervals the database file alone (copied without its -wal file)
        # holds every committed write.
        deadline = time.monotonic() + 10
        while True:
            copy = tmp_path / f"copy-{time.monotonic_ns()}.db"
            shutil.copyfile(path, copy)
            with sqlite3.connect(copy) as db:
                try:
                    count = db.execute(
                        "SELECT count(*) FROM resource WHERE resource_type = 'Patient'"
                    ).fetchone()[0]
                except sqlite3.DatabaseError:
                    # The tables not yet copied in, or the copy caught the thread halfway
                    # through writing pages into the file ("malformed"): look again.
                    count = 0
            if count == 50 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert count == 50
    finally:
        store.close()


def test_the_log_stays_bounded_under_writes_that_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_dialect, "WAL_BACKSTOP_PAGES", 64)
    path = tmp_path / "record.db"
    store = RecordStore.from_url(f"sqlite:///{path}")
    try:
        upgrade(store.engine)
        service = RecordService(store)
        largest = 0
        for n in range(400):  # back to back: never a pause for the thread to finish in
            service.create(patient(n))
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
        # Without the writers' own checkpoints the log passes 50 MB here; with them it
        # stays under 1 MB on a quiet machine and has reached 2.4 MB on a busy one, when
        # the thread's checkpoint held the log as a commit tried to start it afresh.
        assert largest < 8 * 1024 * 1024
    finally:
        store.close()
