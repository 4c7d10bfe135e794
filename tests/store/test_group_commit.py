"""Group commit: writes queued together share a transaction, yet each succeeds or fails alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bevan.records.service import RecordService
from bevan.store.group import GroupWriter
from bevan.store.record_store import RecordStore


@pytest.fixture
def writer(store: RecordStore) -> Iterator[GroupWriter]:
    writer = GroupWriter(store)
    yield writer
    writer.stop()


@pytest.fixture
def batches(store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> CountedBatches:
    return CountedBatches(store, monkeypatch)


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


class CountedBatches:
    """Counts the transactions the writer opens, and can hold the first one open."""

    def __init__(self, store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        self.release = threading.Event()
        self.entered = threading.Event()
        original = store.batch

        @contextmanager
        def counted() -> Iterator[None]:
            self.opened += 1
            with original():
                yield

        monkeypatch.setattr(store, "batch", counted)

    def hold(self) -> None:
        """Block the writer thread until release is set (run as the first write)."""
        self.entered.set()
        self.release.wait(timeout=30)


async def queue_behind_a_held_write(
    writer: GroupWriter, batches: CountedBatches, functions: list[Any]
) -> list[Any]:
    """Run functions while the writer is held inside a batch, so they all queue behind it."""
    held = asyncio.ensure_future(writer.run(batches.hold))
    while not batches.entered.is_set():
        await asyncio.sleep(0.005)
    queued = [asyncio.ensure_future(writer.run(function)) for function in functions]
    await asyncio.sleep(0.05)
    batches.release.set()
    results = await asyncio.gather(held, *queued, return_exceptions=True)
    return results[1:]


def test_queued_writes_commit_together_and_are_stored(
    store: RecordStore, service: RecordService, writer: GroupWriter, batches: CountedBatches
) -> None:
    creates = [lambda n=n: service.create(patient(f"Queued-{n}")) for n in range(20)]
    results = asyncio.run(queue_behind_a_held_write(writer, batches, creates))

    assert [r.status for r in results] == [201] * 20
    # all twenty queued behind the held write and joined its transaction
    assert batches.opened == 1
    # acknowledged means committed: a fresh connection reads every one of them
    families = {
        service.read("Patient", r.stored.id).content.split('"family":"')[1].split('"')[0]
        for r in results
    }
    assert families == {f"Queued-{n}" for n in range(20)}


def test_a_failing_write_is_undone_alone(
    store: RecordStore, service: RecordService, writer: GroupWriter, batches: CountedBatches
) -> None:
    def create_then_fail() -> None:
        with service.writing() as session:
            service.create_in(session, "Patient", patient("Half-Written"))
            raise RuntimeError("refused after writing")

    functions = [
        lambda: service.create(patient("Before")),
        create_then_fail,
        lambda: service.create(patient("After")),
    ]
    before, failed, after = asyncio.run(queue_behind_a_held_write(writer, batches, functions))

    assert batches.opened == 1
    assert isinstance(failed, RuntimeError)
    assert before.status == after.status == 201
    with store.read() as session:
        contents = [session.current("Patient", r.stored.id).content for r in (before, after)]
        everything = session.connection.exec_driver_sql(
            "SELECT COUNT(*) FROM resource WHERE resource_type = 'Patient'"
        ).scalar()
    assert all(c is not None for c in contents)
    assert everything == 2  # "Half-Written" was undone with the failure after it


def test_a_write_sees_what_earlier_writes_in_its_batch_stored(
    store: RecordStore, service: RecordService, writer: GroupWriter, batches: CountedBatches
) -> None:
    first = service.create(patient("Original"))
    assert first.stored is not None
    id = first.stored.id

    def rename() -> Any:
        return service.update(
            "Patient", id, {"resourceType": "Patient", "id": id, **patient("Renamed")}
        )

    def read_back() -> str | None:
        return service.read("Patient", id).content

    renamed, seen = asyncio.run(queue_behind_a_held_write(writer, batches, [rename, read_back]))

    assert renamed.status == 200
    assert seen is not None and '"Renamed"' in seen


def test_writes_after_stop_start_a_new_writer(service: RecordService, writer: GroupWriter) -> None:
    async def one() -> int:
        return (await writer.run(lambda: service.create(patient("Again")))).status

    assert asyncio.run(one()) == 201
    writer.stop()
    assert asyncio.run(one()) == 201
