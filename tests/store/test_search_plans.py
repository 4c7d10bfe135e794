"""How a search is planned never changes what it finds: "ne" prefixes walk the type
instead of listing nearly every row, composites whose leading part is narrow are listed
without counting first, a page of many matches reads only its own versions, and a chain
pages target by target, each match once, and a page by three letters of a name reads
only the prefix's bucket."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir.errors import InvalidRequest
from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import plan_choice
from bevan.store.reading import ReadSession
from bevan.store.record_store import RecordStore

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


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
    monkeypatch.setattr(plan_choice, "DENSE_MATCHES", 1)
    monkeypatch.setattr(plan_choice, "MIN_DENSE_MATCHES", 1)
    monkeypatch.setattr(plan_choice, "MAX_LISTED_MATCHES", 1)
    monkeypatch.setattr(ReadSession, "_composite_walks", lambda *args: True)
    store.facts._answers.clear()
    assert _found(store, query) == listed


def _walks(store: RecordStore, query: str, limit: int) -> bool:
    with store.read() as session:
        planned, _ = session._planned(parse_search("Observation", query))
        return session._dense(planned, limit)


def test_a_composite_of_common_parts_walks_only_when_a_sample_finds_them_together(
    service: RecordService, store: RecordStore, monkeypatch: Any
) -> None:
    """Both parts of `8867-4$ge98` have many rows (heart rates; values of 98 or more,
    mostly body weights): whether a page walks the type or lists the matches is judged
    from how many of the first heart rates are 98 or more, and either way the page holds
    the same Observations."""
    monkeypatch.setattr(plan_choice, "DENSE_MATCHES", 5)
    monkeypatch.setattr(plan_choice, "COMPOSITE_SAMPLE", 8)

    def counting(*args: object) -> None:
        raise AssertionError("every match was counted to choose the plan")

    monkeypatch.setattr(ReadSession, "_driving_count", counting)
    fast = []
    for n in range(12):  # heart rates, 10 of them 98 or more
        stored = service.create(_weight(100 + n if n < 10 else 60, "8867-4")).stored
        assert stored is not None
        if n < 10:
            fast.append(stored.id)
    for n in range(24):  # body weights, all 98 or more
        assert service.create(_weight(98 + n)).stored is not None
    often = "combo-code-value-quantity=8867-4$ge98"
    assert _walks(store, often, 2)  # 8 of the first 8 heart rates match
    assert _found(store, often) == sorted(fast)

    # 16 rows of 108 or more, two of them heart rates, neither among the first 8
    rarely = "combo-code-value-quantity=8867-4$ge108"
    store.facts._answers.clear()
    assert not _walks(store, rarely, 2)
    assert _found(store, rarely) == sorted(fast[8:10])


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


def _practitioner(service: RecordService, family: str) -> str:
    stored = service.create({"resourceType": "Practitioner", "name": [{"family": family}]}).stored
    assert stored is not None
    return stored.id


def _seen_by(service: RecordService, *performers: str, status: str = "final") -> str:
    observation = {
        **_weight(70),
        "status": status,
        "performer": [{"reference": f"Practitioner/{p}"} for p in performers],
    }
    stored = service.create(observation).stored
    assert stored is not None
    return stored.id


def _pages(service: RecordService, text: str) -> list[list[str]]:
    """Return every page's ids, following next links from the first page."""
    pages = []
    query = parse_search("Observation", text)
    while True:
        page = service.search(query)
        pages.append([v.id for v in page.matches])
        if page.next_cursor is None:
            return pages
        query = parse_search("Observation", f"{text}&_cursor={page.next_cursor.encode()}")


def test_a_chain_pages_target_by_target_listing_each_match_once(service: RecordService) -> None:
    first, second = _practitioner(service, "Okafor"), _practitioner(service, "Okafor")
    other = _practitioner(service, "Smith")
    a = _seen_by(service, second)
    b = _seen_by(service, first)
    both = _seen_by(service, first, second)  # listed once, under the first target
    _seen_by(service, other)
    c = _seen_by(service, second, other)
    _seen_by(service, first, status="amended")
    gone = _seen_by(service, first)
    service.delete("Observation", gone)
    text = "performer:Practitioner.name=okafor&status:not=amended&_count=2"

    pages = _pages(service, text)

    assert pages == [[b, both], [a, c]]
    whole = service.search(parse_search("Observation", f"{text}&_total=accurate"))
    assert whole.total == 4
    last = service.search(
        parse_search("Observation", f"{text}&_cursor={_cursor_after(service, text)}")
    )
    assert [v.id for v in last.matches] == [a, c]
    assert last.previous_cursor is not None
    back = service.search(
        parse_search("Observation", f"{text}&_cursor={last.previous_cursor.encode()}")
    )
    assert [v.id for v in back.matches] == [b, both]


def _cursor_after(service: RecordService, text: str) -> str:
    first = service.search(parse_search("Observation", text))
    assert first.next_cursor is not None
    return first.next_cursor.encode()


def test_a_cursor_made_for_another_order_is_refused(service: RecordService) -> None:
    doctor = _practitioner(service, "Okafor")
    for _ in range(3):
        _seen_by(service, doctor)
    sorted_page = service.search(parse_search("Observation", "_sort=date,status&_count=1"))
    assert sorted_page.next_cursor is not None
    cursor = sorted_page.next_cursor.encode()
    with pytest.raises(InvalidRequest, match="_cursor is not a page of this search"):
        service.search(
            parse_search("Observation", f"performer:Practitioner.name=okafor&_cursor={cursor}")
        )


def test_present_alone_drives_a_search_and_a_composite_needs_every_part(
    service: RecordService, store: RecordStore
) -> None:
    weighed = service.create(_weight(70)).stored
    coded = service.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "266919005"}]},
        }
    ).stored
    asked = service.create(
        {"resourceType": "Observation", "status": "final", "code": {"text": "smoking?"}}
    ).stored
    assert weighed and coded and asked
    # :missing=false is the only criterion, so its rows drive the search.
    assert _found(store, "value-quantity:missing=false") == [weighed.id]
    assert _found(store, "code:missing=false") == sorted([weighed.id, coded.id, asked.id])
    # code-value-concept is read from the code and value-concept rows, yet is present only
    # where the resource has both.
    assert _found(store, "code-value-concept:missing=false") == [coded.id]
    assert _found(store, "combo-code-value-concept:missing=false") == [coded.id]
    assert _found(store, "code-value-concept:missing=true") == sorted([weighed.id, asked.id])
    assert _found(store, "code-value-quantity:missing=false") == [weighed.id]


def test_everything_explains_its_own_reads_by_key(
    service: RecordService, store: RecordStore
) -> None:
    # What the benchmark prints for $everything: its reads of a Patient's record, each
    # found through a key (row key, or type and id), not by reading a whole table.
    patient = service.create({"resourceType": "Patient", "name": [{"family": "Plan"}]}).stored
    assert patient is not None
    for kg in (70.0, 71.5):
        weight = {**_weight(kg), "subject": {"reference": f"Patient/{patient.id}"}}
        service.create(weight)
    with store.read() as session:
        lines = session.explain_everything(patient.id, {"Observation": ("subject",)}, 100)
    assert lines[0] == "members (2 resources in the compartment):"
    assert any(line.startswith("referenced (2 resources") for line in lines)
    steps = [line.strip() for line in lines if line.startswith("  ")]
    assert len(steps) >= 4
    if (
        store.dialect.name == "sqlite"
    ):  # PostgreSQL reads tables this small whole; its probes are checked
        # in test_postgres_plans.py
        assert all(not step.startswith("SCAN ") or step.startswith("SCAN anon_") for step in steps)


def test_a_first_page_by_three_letters_of_a_name_stops_at_its_last_row(
    service: RecordService, store: RecordStore
) -> None:
    # Each page by a prefix of three letters reads the prefix's bucket in row-key order
    # from its cursor and stops at a page's worth; longer prefixes list every match.
    # Either way each matching Patient comes once, in the order they were stored, and a
    # previous link leads back to the page before.
    names = [
        ("Smith", ["Ann"]),
        ("Smyth", ["Bob"]),  # no match: smy
        ("Smith", ["Smiley"]),  # matches by both names, listed once
        ("Jones", ["Smita"]),  # by a given name
        ("Sm", ["Al"]),  # shorter than the prefix: no match
    ] * 6
    created = []
    for family, given in names:
        patient = {"resourceType": "Patient", "name": [{"family": family, "given": given}]}
        stored = service.create(patient).stored
        assert stored is not None
        created.append((stored.id, family, given))
    deleted = created[0][0]
    service.delete("Patient", deleted)

    def matching(prefix: str) -> list[str]:
        return [
            id
            for id, family, given in created
            if id != deleted and any(n.lower().startswith(prefix) for n in [family, *given])
        ]

    def ids_of(page: Any) -> list[str]:
        return [hit.id for hit in page.matches]

    expected = matching("smi")
    assert len(expected) == 17
    first = service.search(parse_search("Patient", "name=SMI&_count=10"))
    assert len(first.matches) == 10 and first.next_cursor is not None
    rest = service.search(
        parse_search("Patient", f"name=SMI&_count=10&_cursor={first.next_cursor.encode()}")
    )
    assert ids_of(first) + ids_of(rest) == expected
    assert rest.next_cursor is None
    assert rest.previous_cursor is not None
    back = service.search(
        parse_search("Patient", f"name=SMI&_count=10&_cursor={rest.previous_cursor.encode()}")
    )
    assert ids_of(back) == ids_of(first)
    middle = service.search(
        parse_search("Patient", f"name=smi&_count=5&_cursor={first.next_cursor.encode()}")
    )
    assert ids_of(middle) == expected[10:15]
    longer = service.search(parse_search("Patient", "name=smit&_count=50"))
    assert ids_of(longer) == matching("smit")
    if store.dialect.name == "sqlite":  # PostgreSQL's plan: test_postgres_plans.py
        later = f"name=smi&_count=10&_cursor={first.next_cursor.encode()}"
        with store.read() as session:
            by_three = " ".join(session.explain(parse_search("Patient", "name=smi&_count=10")))
            by_four = " ".join(session.explain(parse_search("Patient", "name=smit&_count=10")))
            page_two = " ".join(session.explain(parse_search("Patient", later)))
        assert "ix_string_bucket" in by_three and "ix_string_bucket" not in by_four
        assert "ix_string_bucket" in page_two


def test_the_statements_that_choose_a_plan_are_explained_too(
    service: RecordService, store: RecordStore, monkeypatch: Any
) -> None:
    """What the benchmark's full-scan check reads: a composite of common parts counts
    each part and samples the leading one; a plain criterion counts its matches; a
    search by three letters of a name, which reads its bucket, chooses nothing."""
    monkeypatch.setattr(plan_choice, "DENSE_MATCHES", 2)
    for n in range(4):
        assert service.create(_weight(98 + n, "8867-4")).stored is not None
    with store.read() as session:
        composite = session.explain_choice(
            parse_search("Observation", "combo-code-value-quantity=8867-4$ge98")
        )
        token = session.explain_choice(parse_search("Observation", "code=8867-4"))
        bucket = session.explain_choice(parse_search("Patient", "name=smi"))
    headers = [line for line in composite if not line.startswith("  ")]
    assert headers == [
        "choosing the plan, a component's rows:",
        "choosing the plan, a component's rows:",
        "choosing the plan, a sample:",
    ]
    assert token[0] == "choosing the plan, the driving matches:" and len(token) > 1
    assert bucket == []
