"""A write session holds its index rows (and, on SQLite, its version and resource rows)
back and inserts them a table at a time; what it holds back is never missing from its
own reads, never left by an undone block, and never doubled."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import writing
from bevan.store.record_store import RecordStore
from bevan.store.versions import StoredVersion
from tests.store.patients import SYSTEM, patient


def _patient(mrn: str, family: str = "Held") -> dict[str, Any]:
    return patient(mrn, family)


def _ids(service: RecordService, query: str) -> list[str]:
    return [hit.id for hit in service.search(parse_search("Patient", query)).matches]


def test_a_session_finds_what_it_wrote_before_it_commits(
    service: RecordService, store: RecordStore
) -> None:
    with store.write() as session:
        created = service.create_in(session, "Patient", _patient("1")).stored
        assert created is not None
        # A conditional create later in the same transaction matches the first.
        again = service.create_in(
            session, "Patient", _patient("1"), if_none_exist=f"identifier={SYSTEM}|1"
        )
        assert again.status == 200 and again.stored is not None
        assert again.stored.id == created.id
    assert _ids(service, f"identifier={SYSTEM}|1") == [created.id]


def test_an_update_in_the_same_session_leaves_one_set_of_rows(
    service: RecordService, store: RecordStore
) -> None:
    with store.write() as session:
        created = service.create_in(session, "Patient", _patient("2", "Before")).stored
        assert created is not None
        service.update_in(session, "Patient", created.id, _patient("2", "After"))
    assert _ids(service, "family=before") == []
    assert _ids(service, "family=after") == [created.id]
    assert service.search(parse_search("Patient", "family=after&_total=accurate")).total == 1


def test_rows_of_an_undone_block_are_dropped(service: RecordService, store: RecordStore) -> None:
    with store.write() as session:
        kept = service.create_in(session, "Patient", _patient("3", "Kept")).stored
        with pytest.raises(RuntimeError), session.savepoint():
            service.create_in(session, "Patient", _patient("4", "Undone"))
            raise RuntimeError("this entry fails")
        # The next resource may be given the undone one's row key: it must not inherit
        # the undone one's rows.
        after = service.create_in(session, "Patient", _patient("5", "After")).stored
    assert kept is not None and after is not None
    assert _ids(service, "family=kept") == [kept.id]
    assert _ids(service, "family=undone") == []
    assert _ids(service, "family=after") == [after.id]


def test_many_rows_are_stored_in_several_goes(
    service: RecordService, store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writing, "MAX_HELD_ROWS", 5)
    with store.write() as session:
        for n in range(12):
            service.create_in(session, "Patient", _patient(f"many-{n}", "Many"))
    found = service.search(parse_search("Patient", "family=many&_total=accurate&_count=50"))
    assert found.total == 12


def test_a_session_reads_its_own_new_versions_every_way(
    service: RecordService, store: RecordStore
) -> None:
    with store.write() as session:

        def new(mrn: str) -> StoredVersion:
            stored = service.create_in(session, "Patient", _patient(mrn, "Own")).stored
            assert stored is not None
            return stored

        made = new("6a")
        assert [v.id for v in session.history("Patient", made.id)] == [made.id]
        made = new("6b")
        assert session.version("Patient", made.id, 1) is not None
        new("6c")
        assert session.resource_counts().get("Patient") == 3
        made = new("6d")
        assert session.last_seq() == made.seq
        made = new("6e")
        current = session.current("Patient", made.id)
        assert current is not None and current.content == made.content
        updated = service.update_in(session, "Patient", made.id, _patient("6e", "Owner"))
        assert updated.stored is not None and updated.stored.version_id == 2
    history = store_history(store, made.id)
    assert [v.version_id for v in history] == [2, 1]
    assert history[0].seq > history[1].seq


def store_history(store: RecordStore, id: str) -> list[StoredVersion]:
    with store.read() as session:
        return session.history("Patient", id)


def test_versions_of_an_undone_block_are_gone_and_later_ones_keep_their_order(
    service: RecordService, store: RecordStore
) -> None:
    with store.write() as session:
        first = service.create_in(session, "Patient", _patient("7", "First")).stored
        with pytest.raises(RuntimeError), session.savepoint():
            undone = service.create_in(session, "Patient", _patient("8", "Gone")).stored
            raise RuntimeError("this entry fails")
        last = service.create_in(session, "Patient", _patient("9", "Last")).stored
    assert first is not None and undone is not None and last is not None
    with store.read() as session:
        assert session.current("Patient", undone.id) is None
        assert session.resource_counts().get("Patient") == 2
        stored_first = session.current("Patient", first.id)
        stored_last = session.current("Patient", last.id)
    assert stored_first is not None and stored_last is not None
    assert stored_first.seq < stored_last.seq


def test_writes_grouped_in_one_transaction_get_increasing_keys(
    service: RecordService, store: RecordStore
) -> None:
    made = []
    with store.batch():
        for n in range(3):
            with store.write() as session:
                made.append(service.create_in(session, "Patient", _patient(f"b{n}", "Batched")))
    seqs = [m.stored.seq for m in made if m.stored is not None]
    assert len(seqs) == 3 and seqs == sorted(seqs) and len(set(seqs)) == 3
    assert len(_ids(service, "family=batched")) == 3
