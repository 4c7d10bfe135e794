"""Reads given a time budget stop when it runs out, and nothing is lost: interrupted by
SQLite, cancelled by PostgreSQL's statement_timeout, or not begun once it is spent."""

from __future__ import annotations

import pytest

from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import budget
from bevan.store.budget import OverBudget, learning, time_budget


def _smiths(service: RecordService) -> int:
    return len(service.search(parse_search("Patient", "family=smith")).matches)


@pytest.fixture
def smiths(service: RecordService, monkeypatch: pytest.MonkeyPatch) -> RecordService:
    for given in ("Ann", "Bob", "Cat"):
        patient = {"resourceType": "Patient", "name": [{"family": "Smith", "given": [given]}]}
        service.create(patient)
    monkeypatch.setattr(budget, "STEPS_PER_CHECK", 1)  # check the clock at every step
    return service


def test_a_read_past_its_budget_is_interrupted_and_the_next_read_is_not(
    smiths: RecordService, backend: str
) -> None:
    with pytest.raises(OverBudget), time_budget(0.0):
        _smiths(smiths)
    # The pooled connection keeps no handler or timeout, and the record is all there.
    for _ in range(3):
        assert _smiths(smiths) == 3
    with time_budget(30.0):
        assert _smiths(smiths) == 3


def test_a_write_inside_a_budget_is_never_interrupted(smiths: RecordService) -> None:
    with time_budget(0.0):
        smiths.create({"resourceType": "Patient", "name": [{"family": "Smith"}]})
    assert _smiths(smiths) == 4


def test_a_postgresql_statement_past_the_budget_is_cancelled_by_the_server(
    smiths: RecordService, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("statement_timeout is PostgreSQL's")
    store = smiths.store
    with pytest.raises(OverBudget), time_budget(0.05), store.snapshot() as connection:
        connection.exec_driver_sql("SELECT pg_sleep(2)")
    with time_budget(5.0), store.snapshot() as connection:
        assert connection.exec_driver_sql("SELECT pg_sleep(0.2), 1").one()[1] == 1
    with store.snapshot() as connection:  # unbudgeted reads have no timeout
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
    assert _smiths(smiths) == 3


@pytest.mark.parametrize("counting_facts", [True, False])
def test_an_overrun_counting_facts_for_a_plan_is_told_apart(
    smiths: RecordService, backend: str, counting_facts: bool
) -> None:
    sqlite = backend == "sqlite"
    long_read = "SELECT count(*) FROM resource" if sqlite else "SELECT pg_sleep(2)"
    with (
        pytest.raises(OverBudget) as caught,
        time_budget(0.0 if sqlite else 0.05),
        smiths.store.snapshot() as connection,
    ):
        if counting_facts:
            with learning():
                connection.exec_driver_sql(long_read)
        else:
            connection.exec_driver_sql(long_read)
    assert caught.value.learning is counting_facts
