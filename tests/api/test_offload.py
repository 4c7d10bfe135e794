"""Which searches run on the event loop and which go to the thread pool."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from bevan.api import loop_reads
from bevan.api.loop_reads import LoopReadPolicy
from bevan.api.routes import broad_search, fans_out, small_bundle
from bevan.store import budget
from bevan.store.budget import ReadBudget
from tests.conftest import RunningServer


def _loop_reads(server: RunningServer) -> LoopReadPolicy:
    """The server's policy of which reads are tried on the event loop."""
    policy: LoopReadPolicy = server.app.state.services.loop_reads
    return policy


def _budget(server: RunningServer, seconds: float) -> ReadBudget:
    """The server's read budget, given seconds on the loop."""
    return replace(server.store.read_budget, seconds=seconds)


def _forget_overruns(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_loop_reads(server), "slow_until", {})
    monkeypatch.setattr(_loop_reads(server), "tries", {})


def request(query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/fhir/Patient",
            "query_string": query.encode(),
            "headers": [],
        }
    )


@pytest.mark.parametrize(
    "query",
    [
        "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919",
        "_id=abc,def&_count=5",
        "patient=Patient/1&code=http://loinc.org|8867-4&date=ge2024&_sort=-date",
        "subject=Patient/1&_summary=count",
        "subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919",
        "patient.identifier=x|1&code=8867-4",
    ],
)
def test_searches_pinned_to_named_resources_run_on_the_loop(query: str) -> None:
    assert not broad_search(request(query))


@pytest.mark.parametrize(
    "query",
    [
        "family=smi",
        "code=http://loinc.org|8867-4",
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123",
        "_id=abc&_revinclude=Observation:patient",
        "patient=Patient/1&_include=Observation:performer",
        "subject:Patient.name=smith",
        "patient.general-practitioner.identifier=x|1",
        "performer.identifier=x|1",
        "_has:Observation:patient:code=1234",
        "patient=Patient/1&_total=accurate",
    ],
)
def test_searches_that_can_fan_out_go_to_the_thread_pool(query: str) -> None:
    assert broad_search(request(query))


def test_compartment_searches_go_to_the_pool_only_when_they_fan_out() -> None:
    assert not fans_out(request("code=1234&_count=10"))
    assert fans_out(request("_revinclude=Provenance:target"))


def bundle_request(length: int | None) -> Request:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return Request(
        {"type": "http", "method": "POST", "path": "/fhir", "query_string": b"", "headers": headers}
    )


def test_small_bundles_join_the_group_commit_and_large_ones_do_not() -> None:
    assert small_bundle(bundle_request(20_000))
    assert not small_bundle(bundle_request(2_000_000))
    assert not small_bundle(bundle_request(None))  # chunked: its size is unknown


def test_a_search_past_the_loop_budget_is_answered_from_the_thread_pool(
    server: RunningServer, fhir: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = f"Budget{uuid.uuid4().hex[:8]}"
    for given in ("Ann", "Bob", "Cat"):
        created = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "name": [{"family": family, "given": [given]}]},
        )
        assert created.status_code == 201
    query = {"family": family, "_sort": "given"}
    answered = fhir.get("/Patient", params=query)
    # Every read tried on the loop now runs out of time at its first step.
    monkeypatch.setattr(_loop_reads(server), "budget", _budget(server, 0.0))
    monkeypatch.setattr(budget, "STEPS_PER_CHECK", 1)
    retried = fhir.get("/Patient", params=query)
    assert answered.status_code == retried.status_code == 200
    givens = [e["resource"]["name"][0]["given"][0] for e in retried.json()["entry"]]
    assert givens == ["Ann", "Bob", "Cat"]
    assert retried.json()["entry"] == answered.json()["entry"]


def test_a_kind_of_search_that_keeps_overrunning_goes_straight_to_the_thread_pool(
    server: RunningServer, fhir: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forget_overruns(server, monkeypatch)
    families = [f"Slow{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for family in families:
        created = fhir.post(
            "/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}
        )
        assert created.status_code == 201
    monkeypatch.setattr(_loop_reads(server), "budget", _budget(server, 0.0))
    monkeypatch.setattr(budget, "STEPS_PER_CHECK", 1)
    # Judged after the budget's judged_after overruns (the first try may run out counting
    # how common the value is, which its run on a thread remembers: not counted).
    for _ in range(server.store.read_budget.judged_after + 1):
        first = fhir.get("/Patient", params={"family": families[0]})
        assert first.status_code == 200 and first.json()["total"] == 1

    def not_on_the_loop(seconds: float) -> None:
        raise AssertionError("a read of a kind known to overrun was tried on the loop")

    # The same kind of search with another value is not tried on the loop again.
    monkeypatch.setattr(loop_reads, "time_budget", not_on_the_loop)
    second = fhir.get("/Patient", params={"family": families[1]})
    assert second.status_code == 200
    assert second.json()["entry"][0]["resource"]["name"][0]["family"] == families[1]
    # Another kind still is (and here, meets the trap).
    other = fhir.get("/Patient", params={"name": families[1]})
    assert other.status_code == 500


def test_a_kind_of_search_that_overruns_now_and_then_stays_on_the_loop(
    server: RunningServer, fhir: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forget_overruns(server, monkeypatch)
    family = f"Once{uuid.uuid4().hex[:8]}"
    created = fhir.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert created.status_code == 201
    overruns = server.store.read_budget.judged_after
    tries = overruns * loop_reads.OVERRUN_SHARE  # one in OVERRUN_SHARE overruns, no more
    monkeypatch.setattr(budget, "STEPS_PER_CHECK", 1)
    for number in range(tries):
        # The overruns come last, after the value's density is known.
        last = number >= tries - overruns
        monkeypatch.setattr(_loop_reads(server), "budget", _budget(server, 0.0 if last else 30.0))
        answered = fhir.get("/Patient", params={"family": family})  # overruns: from a thread
        assert answered.status_code == 200 and answered.json()["total"] == 1
    monkeypatch.setattr(_loop_reads(server), "budget", _budget(server, 30.0))
    tried: list[float] = []
    real_budget = loop_reads.time_budget

    def counted(seconds: float) -> Any:
        tried.append(seconds)
        return real_budget(seconds)

    monkeypatch.setattr(loop_reads, "time_budget", counted)
    again = fhir.get("/Patient", params={"family": family})
    assert again.status_code == 200 and again.json()["total"] == 1
    assert tried == [30.0], f"{overruns} overruns in {tries} tries sent the search off the loop"


def test_an_overrun_while_compiling_a_new_shape_of_search_is_not_held_against_it(
    server: RunningServer, fhir: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first search of a shape compiles its statement, a few milliseconds of the
    loop's budget that later searches of the shape do not spend: running out then does
    not send the kind to the thread pool, however often it happens."""
    if server.store.dialect.name != "sqlite":
        pytest.skip("PostgreSQL times the statement from its arrival, after compiling")
    _forget_overruns(server, monkeypatch)
    family = f"Shape{uuid.uuid4().hex[:8]}"
    created = fhir.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert created.status_code == 201
    params = {"family": family, "_count": "7"}
    assert fhir.get("/Patient", params=params).json()["total"] == 1  # facts counted
    monkeypatch.setattr(_loop_reads(server), "budget", _budget(server, 0.0))
    monkeypatch.setattr(budget, "STEPS_PER_CHECK", 1)
    for _ in range(server.store.read_budget.judged_after + 2):
        server.store.shapes._compiled.clear()  # each try compiles anew, and overruns
        answered = fhir.get("/Patient", params=params)
        assert answered.status_code == 200 and answered.json()["total"] == 1
    assert _loop_reads(server).slow_until == {}
