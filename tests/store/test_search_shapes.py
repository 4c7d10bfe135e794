"""Searches of one shape share a compiled statement, and each still gets its own answers."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import literal, select

from bevan.fhir.search import StringMatch, TokenMatch, TokenValue, parse_search
from bevan.records.service import RecordService, SearchPage
from bevan.store.record_store import RecordStore
from bevan.store.shapes import ShapeCache, shape_of

SYSTEM = "https://example.org/mrn"


def _patient(family: str, mrn: str, gender: str = "female") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "gender": gender,
    }


def _families(service: RecordService, query: str) -> list[str]:
    return _families_on(service.search(parse_search("Patient", query + "&_sort=family")))


def _families_on(page: SearchPage) -> list[str]:
    return [orjson.loads(hit.content or "{}")["name"][0]["family"] for hit in page.matches]


def test_one_shape_is_compiled_once_and_answers_with_each_searchs_values(
    service: RecordService, store: RecordStore
) -> None:
    ids = {}
    for family, mrn in [
        ("Smith", "1"),
        ("Smithers", "2"),
        ("Jones", "3"),
        ("Under_score", "4"),
        ("Hundred%", "5"),
    ]:
        stored = service.create(_patient(family, mrn)).stored
        assert stored is not None
        ids[family] = stored.id

    pairs = [
        ("name=smi", ["Smith", "Smithers"], "name=jon", ["Jones"]),
        ("name:contains=ith", ["Smith", "Smithers"], "name:contains=_", ["Under_score"]),
        ("name:contains=%25", ["Hundred%"], "name:contains=one", ["Jones"]),
        ("identifier=" + SYSTEM + "|1", ["Smith"], "identifier=" + SYSTEM + "|3", ["Jones"]),
        ("name:exact=Jones,Smith", ["Jones", "Smith"], "name:exact=Smithers,x", ["Smithers"]),
        (
            f"_id={ids['Smith']},{ids['Jones']}",
            ["Jones", "Smith"],
            f"_id={ids['Smithers']},{ids['Jones']}",
            ["Jones", "Smithers"],
        ),
    ]
    for first, first_families, second, second_families in pairs:
        assert _families(service, first) == first_families, first
        shapes = len(store.shapes)
        assert _families(service, second) == second_families, second
        assert len(store.shapes) == shapes, f"{second} was compiled again"


def test_a_page_cursor_and_a_total_bind_their_own_values(
    service: RecordService, store: RecordStore
) -> None:
    for n, family in enumerate(["Ada", "Bea", "Cal", "Dot", "Eve"]):
        service.create(_patient(family, str(n), "male" if n % 2 else "female"))
    first = service.search(parse_search("Patient", "_sort=family&_count=2&_total=accurate"))
    assert first.total == 5
    assert _families_on(first) == ["Ada", "Bea"]
    assert first.next_cursor is not None
    pages = "_sort=family&_count=2&_cursor="
    second = service.search(parse_search("Patient", pages + first.next_cursor.encode()))
    assert _families_on(second) == ["Cal", "Dot"]
    assert second.next_cursor is not None
    shapes = len(store.shapes)
    last = service.search(parse_search("Patient", pages + second.next_cursor.encode()))
    assert _families_on(last) == ["Eve"]
    assert len(store.shapes) == shapes
    males = service.search(parse_search("Patient", "gender=male&_total=accurate"))
    females = service.search(parse_search("Patient", "gender=female&_total=accurate"))
    assert (males.total, females.total) == (2, 3)


def test_the_shape_keeps_what_the_compiler_branches_on_and_drops_the_values() -> None:
    def shape(*criteria: Any) -> Any:
        return shape_of(("Patient", criteria))[0]

    assert shape(StringMatch("name", ("smi",))) == shape(StringMatch("name", ("jones",)))
    assert shape(StringMatch("name", ("smi",))) != shape(StringMatch("name", ("smi", "jo")))
    assert shape(StringMatch("name", ("smi",))) != shape(
        StringMatch("name", ("smi",), modifier="contains")
    )
    assert shape(StringMatch("name", ("smi",))) != shape(StringMatch("family", ("smi",)))
    # An empty string, no system and "no system" (|code) are different statements.
    assert shape(StringMatch("name", ("smi",))) != shape(StringMatch("name", ("",)))
    by_system = {
        shape(TokenMatch("identifier", (TokenValue("1", system),))) for system in ("a", "", None)
    }
    assert len(by_system) == 3
    assert shape_of(("Patient", (TokenMatch("identifier", (TokenValue("1", "a"),)),)))[1] == [
        "1",
        "a",
    ]


def test_a_statement_holding_a_value_as_a_constant_is_compiled_again(store: RecordStore) -> None:
    cache = ShapeCache(store.engine.dialect)

    def build(parts: tuple[Any, ...]) -> Any:
        (match,) = parts
        # A value made without `derived`: a plain constant of the compiled statement.
        return select(literal(match.values[0] + "%"))

    with store.read() as session:
        for value in ("smi", "jon"):
            row = cache.execute(session.raw, "test", (StringMatch("name", (value,)),), build)
            assert row.fetchone()[0] == value + "%"
    assert len(cache) == 0
