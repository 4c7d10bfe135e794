"""Two transactions creating the same resource at once: one wins, the other is refused
with a conflict, and the record holds the winner's version only."""

from __future__ import annotations

import threading
import time

import pytest

from bevan.fhir.search_parameters import IndexRows
from bevan.store.record_store import RecordStore
from bevan.store.versions import StoreConflict
from bevan.store.writing import WriteSession


def _create(session: WriteSession, content: str) -> int:
    return session.write_version(
        "Patient",
        "twin",
        version_id=1,
        last_updated="2026-11-30T12:00:00.000Z",
        content=content,
        rows=IndexRows(),
        current=None,
    )


def test_the_second_of_two_concurrent_creates_is_refused(store: RecordStore, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs one writer at a time: the second sees the first's row")
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with store.write() as other:
                _create(other, '{"resourceType":"Patient","id":"twin","gender":"male"}')
            outcome["stored"] = True
        except StoreConflict as error:
            outcome["refused"] = error

    with store.write() as first:
        _create(first, '{"resourceType":"Patient","id":"twin","gender":"female"}')
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.3)  # it now waits for this transaction to end
    racer.join(timeout=10)
    assert "refused" in outcome and "stored" not in outcome
    with store.read() as session:
        current = session.current("Patient", "twin")
    assert current is not None and current.version_id == 1
    assert current.content is not None and '"female"' in current.content
