"""How a search is planned never changes what it finds: "ne" prefixes walk the type
instead of listing nearly every row, composites whose leading part is narrow are listed
without counting first, and a page of many matches reads only its own versions."""

from __future__ import annotations

from typing import Any

from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import records
from bevan.store.records import RecordStore

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _weight(kg: float, code: str = "29463-7") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": kg, "unit": "kg", "system": UCUM, "code": "kg"},
    }


def _found(store: RecordStore, query: str, limit: int = 100) -> list[str]:
    with store.read() as session:
        hits = session.search(parse_search("Observation", query), limit)
    return sorted(h.id for h in hits)


def test_ne_walks_the_type_and_finds_every_other_value(
    service: RecordService, store: RecordStore
) -> None:
    ids = {}
    for kg in (60, 70, 70.4, 80):
        stored = service.create(_weight(kg)).stored
        assert stored is not None
        ids[kg] = stored.id
    # ne70 excludes [69.5, 70.5): 70 and 70.4
    assert _found(store, "value-quantity=ne70") == sorted([ids[60], ids[80]])
    assert _found(store, f"value-quantity=ne70|{UCUM}|kg") == sorted([ids[60], ids[80]])
    with store.read() as session:
        plan = " ".join(session.explain(parse_search("Observation", "value-quantity=ne70")))
    assert "ix_quantity_value" not in plan  # the parameter's rows are not listed


def test_composite_pages_agree_listed_or_walked(
    service: RecordService, store: RecordStore, monkeypatch: Any
) -> None:
    wanted = []
    for n in range(30):
        stored = service.create(_weight(70 + (n % 3), "29463-7" if n % 2 else "8302-2")).stored
        assert stored is not None
        if n % 2 and n % 3 == 0:
            wanted.append(stored.id)
    query = "code-value-quantity=29463-7$70"
    listed = _found(store, query)
    assert listed == sorted(wanted)
    monkeypatch.setattr(records, "DENSE_MATCHES", 1)
    monkeypatch.setattr(records, "MIN_DENSE_MATCHES", 1)
    monkeypatch.setattr(records, "MAX_LISTED_MATCHES", 1)
    store.facts._dense.clear()
    assert _found(store, query) == listed


def test_a_page_of_many_matches_holds_their_versions_in_order(
    service: RecordService, store: RecordStore
) -> None:
    created = []
    for n in range(25):
        stored = service.create(_weight(50 + n)).stored
        assert stored is not None
        created.append(stored)
    with store.read() as session:
        page = session.search(parse_search("Observation", "code=29463-7"), 10)
    assert [h.id for h in page] == [c.id for c in created[:10]]
    assert [h.content for h in page] == [c.content for c in created[:10]]
