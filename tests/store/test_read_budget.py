"""Reads given a time budget stop when it runs out (SQLite), and nothing is lost."""

from __future__ import annotations

import pytest

from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.store import budget
from bevan.store.budget import OverBudget, time_budget


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
    if backend == "sqlite":
        with pytest.raises(OverBudget), time_budget(0.0):
            _smiths(smiths)
    else:  # PostgreSQL offers no progress handler: the read just runs
        with time_budget(0.0):
            assert _smiths(smiths) == 3
    # The pooled connection keeps no handler, and the record is all there.
    for _ in range(3):
        assert _smiths(smiths) == 3
    with time_budget(30.0):
        assert _smiths(smiths) == 3


def test_a_write_inside_a_budget_is_never_interrupted(smiths: RecordService) -> None:
    with time_budget(0.0):
        smiths.create({"resourceType": "Patient", "name": [{"family": "Smith"}]})
    assert _smiths(smiths) == 4
