"""The SQL on FHIR v2 conformance suite, every case, over the in-memory engine."""

from __future__ import annotations

import pytest

from bevan.analytics.conformance import cases, run_case
from tests.conftest import SHARED

SUITE = SHARED / "conformance" / "sql-on-fhir-v2" / "tests"
CASES = list(cases(SUITE))


def test_the_whole_suite_is_here() -> None:
    assert len(CASES) == 134


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_engine_does_what_the_specification_says(case) -> None:
    outcome = run_case(case)
    assert outcome.passed, outcome.error
