"""Transactions are prepared before their writes: what changes in between is caught.

A transaction Bundle's entries are checked, given ids, rewritten and indexed on a read
snapshot; only then are they written, under the write lock. Each test changes the record
in that gap (through the commit hook, which runs just before the writes) and checks the
transaction still gives what it would have given had nothing been prepared early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bevan.fhir.search import parse_search
from bevan.records.bundles import process_bundle
from bevan.records.service import RecordService
from tests.store.patients import SYSTEM
from tests.store.patients import patient as a_patient

BASE = "https://bevan.test/fhir"


def patient(mrn: str, family: str = "Okafor") -> dict[str, Any]:
    return a_patient(mrn, family)


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def first_then(change: Callable[[], None]) -> Callable[[Callable[[], Any]], Any]:
    """A commit hook that makes change, then runs the transaction's writes."""

    def commit(work: Callable[[], Any]) -> Any:
        change()
        return work()

    return commit


def ids(service: RecordService, resource_type: str, query: str) -> list[str]:
    with service.reading() as session:
        return session.search_ids(parse_search(resource_type, query), limit=100)


def test_nothing_is_written_before_the_commit_runs(service: RecordService) -> None:
    seen: list[list[str]] = []
    body = transaction(
        {"resource": patient("100"), "request": {"method": "POST", "url": "Patient"}}
    )
    process_bundle(
        service, body, BASE, commit=first_then(lambda: seen.append(ids(service, "Patient", "")))
    )
    assert seen == [[]]
    assert len(ids(service, "Patient", "")) == 1


def test_a_match_for_if_none_exist_that_appears_meanwhile_is_used(
    service: RecordService,
) -> None:
    made: list[str] = []

    def someone_else_registers() -> None:
        made.append(service.create(patient("200", "Mensah")).stored.id)  # type: ignore[union-attr]

    body = transaction(
        {
            "fullUrl": "urn:uuid:0d6f4a1e-0000-4000-8000-000000000001",
            "resource": patient("200"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={SYSTEM}|200",
            },
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "urn:uuid:0d6f4a1e-0000-4000-8000-000000000001"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    answer = process_bundle(service, body, BASE, commit=first_then(someone_else_registers))
    assert answer["entry"][0]["response"]["status"] == "200 OK"
    assert answer["entry"][0]["response"]["location"].startswith(f"Patient/{made[0]}/")
    assert ids(service, "Patient", f"identifier={SYSTEM}|200") == made
    assert ids(service, "Observation", f"subject=Patient/{made[0]}") != []


def test_if_none_exist_without_a_full_url_matches_too(service: RecordService) -> None:
    existing = service.create(patient("300")).stored
    assert existing is not None
    body = transaction(
        {
            "resource": patient("300"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={SYSTEM}|300",
            },
        }
    )
    answer = process_bundle(service, body, BASE)
    assert answer["entry"][0]["response"]["status"] == "200 OK"
    assert ids(service, "Patient", f"identifier={SYSTEM}|300") == [existing.id]


def test_a_conditional_reference_retargeted_meanwhile_follows_the_change(
    service: RecordService,
) -> None:
    old = service.create(
        {"resourceType": "Organization", "identifier": [{"system": SYSTEM, "value": "ORG1"}]}
    ).stored
    assert old is not None
    replacement: list[str] = []

    def practice_merges() -> None:
        service.delete("Organization", old.id)
        stored = service.create(
            {"resourceType": "Organization", "identifier": [{"system": SYSTEM, "value": "ORG1"}]}
        ).stored
        assert stored is not None
        replacement.append(stored.id)

    body = transaction(
        {
            "resource": {
                **patient("400"),
                "managingOrganization": {"reference": f"Organization?identifier={SYSTEM}|ORG1"},
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    process_bundle(service, body, BASE, commit=first_then(practice_merges))
    assert ids(service, "Patient", f"organization=Organization/{replacement[0]}") != []
    assert ids(service, "Patient", f"organization=Organization/{old.id}") == []


def test_a_put_whose_resource_changed_meanwhile_becomes_the_next_version(
    service: RecordService,
) -> None:
    service.update("Patient", "p500", {**patient("500"), "id": "p500"})

    def someone_else_edits() -> None:
        service.update("Patient", "p500", {**patient("500", "Edited"), "id": "p500"})

    body = transaction(
        {
            "resource": {**patient("500", "Final"), "id": "p500"},
            "request": {"method": "PUT", "url": "Patient/p500"},
        }
    )
    answer = process_bundle(service, body, BASE, commit=first_then(someone_else_edits))
    assert answer["entry"][0]["response"]["etag"] == 'W/"3"'
    stored = service.read("Patient", "p500")
    assert stored.version_id == 3
    assert '"versionId":"3"' in (stored.content or "")
    assert ids(service, "Patient", "family=final") == ["p500"]
