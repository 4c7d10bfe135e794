"""SQLite: the write-ahead log is copied into the database file by a thread of its own."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from bevan.records.service import RecordService
from bevan.store.migrate import upgrade
from bevan.store.records import RecordStore


def test_commits_leave_checkpoints_to_the_background_thread(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    store = RecordStore.from_url(f"sqlite:///{path}")
    try:
        upgrade(store.engine)
        with store.engine.connect() as connection:
            setting = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert setting == 0  # no commit pays for a checkpoint
        service = RecordService(store)
        for n in range(50):
            service.create({"resourceType": "Patient", "name": [{"family": f"Ndlovu{n}"}]})
        # Within a few intervals the database file alone holds every committed write:
        # a copy of it without its -wal file has them all.
        deadline = time.monotonic() + 10
        while True:
            copy = tmp_path / f"copy-{time.monotonic_ns()}.db"
            shutil.copyfile(path, copy)
            with sqlite3.connect(copy) as db:
                try:
                    count = db.execute(
                        "SELECT count(*) FROM resource WHERE resource_type = 'Patient'"
                    ).fetchone()[0]
                except sqlite3.OperationalError:  # the tables themselves not yet copied in
                    count = 0
            if count == 50 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert count == 50
    finally:
        store.close()
