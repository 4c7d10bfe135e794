"""The change feed gives every committed version once, in sequence order, and never
skips one that commits after a higher number was already read."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir.dates import now_instant
from bevan.records.service import RecordService
from bevan.store import changes
from bevan.store.changes import ChangeFeed, ChangeFollower
from bevan.store.record_store import RecordStore
from bevan.store.schema import resource_version


def basic(text: str) -> dict[str, Any]:
    return {"resourceType": "Basic", "code": {"text": text}}


def test_changes_since_lists_creates_updates_and_deletes_in_order(
    store: RecordStore, service: RecordService
) -> None:
    feed = ChangeFeed(store.engine)
    start = feed.latest_seq()
    made = service.create(basic("first")).stored
    service.update("Basic", made.id, {**basic("second"), "id": made.id})
    service.delete("Basic", made.id)
    page = feed.changes_since(start, limit=10)
    assert [(c.id, c.version_id, c.deleted) for c in page.changes] == [
        (made.id, 1, False),
        (made.id, 2, False),
        (made.id, 3, True),
    ]
    assert [c.seq for c in page.changes] == sorted(c.seq for c in page.changes)
    assert page.latest_seq == page.changes[-1].seq == feed.latest_seq()
    assert feed.changes_since(start, limit=2).changes == page.changes[:2]


def test_a_follower_gives_each_change_once(store: RecordStore, service: RecordService) -> None:
    follower = ChangeFollower.from_now(ChangeFeed(store.engine))
    assert follower.poll() == []
    ids = [service.create(basic(str(n))).stored.id for n in range(5)]
    first = follower.poll(limit=3)
    second = follower.poll(limit=3)
    assert [c.id for c in first + second] == ids
    assert follower.poll() == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_change_committed_after_a_higher_one_is_still_given_out(
    store: RecordStore, service: RecordService
) -> None:
    follower = ChangeFollower.from_now(ChangeFeed(store.engine))
    with store.engine.connect() as slow:
        slow.begin()
        slow.execute(
            resource_version.insert().values(
                resource_type="Basic",
                id="slow-writer",
                version_id=1,
                last_updated=now_instant(),
                method="create",
                content="{}",
            )
        )
        quick = service.create(basic("quick")).stored
        assert [c.id for c in follower.poll()] == [quick.id]
        assert [c.id for c in follower.poll()] == []  # the slow one is not committed yet
        slow.commit()
    assert [c.id for c in follower.poll()] == ["slow-writer"]
    assert follower.poll() == []
    assert not follower.gaps


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_number_whose_transaction_rolled_back_is_forgotten(
    store: RecordStore, service: RecordService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "GAP_SETTLE_SECONDS", 0.0)
    follower = ChangeFollower.from_now(ChangeFeed(store.engine))
    with store.engine.connect() as abandoned:
        abandoned.begin()
        abandoned.execute(
            resource_version.insert().values(
                resource_type="Basic",
                id="rolled-back",
                version_id=1,
                last_updated=now_instant(),
                method="create",
                content="{}",
            )
        )
        after = service.create(basic("after")).stored
        assert [c.id for c in follower.poll()] == [after.id]
        assert follower.gaps  # still running: it may yet commit
        follower.poll()
        assert follower.gaps
        abandoned.rollback()
    assert follower.poll() == []
    assert not follower.gaps
    assert follower.watermark == after.seq
