"""The SQL on FHIR v2 conformance suite run over the engine, and its report.

Each case of the suite gives resources, a view and either the rows it must produce
(compared as a multiset: the specification leaves row order open), the columns in their
order, or that the view must be refused. `write_report` writes test_report.json in the
suite's own report schema (test-report.schema.json beside the tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bevan.analytics.view_definition import compile_view
from bevan.fhir.errors import FhirError

# Runs a view over resources; returns (column names, rows as dicts). Engines other than
# the in-memory one (the stored record) supply their own.
Engine = Callable[[dict[str, Any], list[dict[str, Any]]], tuple[list[str], list[dict[str, Any]]]]


@dataclass(frozen=True)
class Case:
    """One test of the suite: the file it is in, its title and its data."""

    file: str
    title: str
    resources: list[dict[str, Any]]
    test: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.title}"


@dataclass(frozen=True)
class Outcome:
    passed: bool
    error: str | None = None


def in_memory(
    view: dict[str, Any], resources: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Return a view's column names and rows over resources held in memory."""
    compiled = compile_view(view)
    return list(compiled.column_names), list(compiled.rows_as_dicts(resources))


def cases(directory: Path) -> Iterator[Case]:
    """Yield every case of the suite in directory, file by file, in file order."""
    for path in sorted(directory.glob("*.json")):
        suite = json.loads(path.read_text())
        for test in suite["tests"]:
            yield Case(path.name, test["title"], suite.get("resources", []), test)


def _same_rows(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> bool:
    remaining = list(actual)
    for row in expected:
        for i, candidate in enumerate(remaining):
            if candidate == row:
                del remaining[i]
                break
        else:
            return False
    return not remaining


def run_case(case: Case, engine: Engine = in_memory) -> Outcome:
    """Return whether the engine does what the case expects, and if not, how it differed."""
    test = case.test
    try:
        columns, rows = engine(test["view"], case.resources)
    except FhirError as error:
        if test.get("expectError"):
            return Outcome(True)
        return Outcome(False, f"refused: {error}")
    if test.get("expectError"):
        return Outcome(False, "the view was run, but it should have been refused")
    if "expectColumns" in test and columns != test["expectColumns"]:
        return Outcome(False, f"columns {columns}, expected {test['expectColumns']}")
    expected = test.get("expect", [])
    if not _same_rows(expected, rows):
        return Outcome(False, f"rows {rows}, expected {expected}")
    return Outcome(True)


def report(results: Iterable[tuple[Case, Outcome]]) -> dict[str, Any]:
    """Return the results in the suite's report schema: {file: {tests: [...]}}."""
    found: dict[str, Any] = {}
    for case, outcome in results:
        result: dict[str, Any] = {"passed": outcome.passed}
        if outcome.error:
            result["error"] = outcome.error
        found.setdefault(case.file, {"tests": []})["tests"].append(
            {"name": case.title, "result": result}
        )
    return found


def write_report(directory: Path, out: Path, engine: Engine = in_memory) -> tuple[int, int]:
    """Run the suite in directory and write its report to out; return (passed, total)."""
    results = [(case, run_case(case, engine)) for case in cases(directory)]
    out.write_text(json.dumps(report(results), indent=2) + "\n")
    return sum(1 for _, o in results if o.passed), len(results)
