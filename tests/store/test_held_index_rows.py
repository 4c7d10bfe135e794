"""A write session holds its index rows back and inserts them a table at a time; what
it holds back is never missing from its own reads, never left by an undone block, and
never doubled."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import records
from bevan.store.records import RecordStore
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
    monkeypatch.setattr(records, "MAX_HELD_INDEX_ROWS", 5)
    with store.write() as session:
        for n in range(12):
            service.create_in(session, "Patient", _patient(f"many-{n}", "Many"))
    found = service.search(parse_search("Patient", "family=many&_total=accurate&_count=50"))
    assert found.total == 12
