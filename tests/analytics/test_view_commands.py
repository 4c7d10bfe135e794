"""`bevan view run` over the stored record on each engine, and `bevan view conformance`
writing the suite's report in its own schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import orjson
import pytest

from bevan.analytics.view_definition import compile_view
from tests.conftest import SHARED, database_url
from tests.test_cli import bevan

SUITE = SHARED / "conformance" / "sql-on-fhir-v2"
VIEW = {
    "resourceType": "ViewDefinition",
    "name": "observations",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.first().code"},
                {"name": "effective", "path": "effective.ofType(dateTime)"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "unit", "path": "value.ofType(Quantity).unit"},
            ]
        }
    ],
}


def test_the_conformance_command_writes_a_report_in_the_official_schema(tmp_path: Path) -> None:
    report = tmp_path / "test_report.json"
    result = bevan("view", "conformance", "--tests", str(SUITE / "tests"), "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "134 of 134 cases passed" in result.stdout
    written = json.loads(report.read_text())
    schema = json.loads((SUITE / "test-report.schema.json").read_text())
    jsonschema_rs.validate(schema, written)
    results = [t["result"]["passed"] for suite in written.values() for t in suite["tests"]]
    assert len(results) == 134 and all(results)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("views-synth") / "population"
    made = bevan("synth", "--patients", "25", "--seed", "22", "--ndjson", "--out", str(out))
    assert made.returncode == 0, made.stderr
    return out


def test_view_run_over_the_stored_record_gives_the_rows_of_the_resources_loaded(
    backend: str, population: Path, tmp_path: Path
) -> None:
    url = database_url(backend, tmp_path)
    loaded = bevan("load", "--data-dir", str(tmp_path), "--database", url, str(population))
    assert loaded.returncode == 0, loaded.stderr
    view_file = tmp_path / "view.json"
    view_file.write_bytes(orjson.dumps(VIEW))
    out = tmp_path / "rows.ndjson"
    ran = bevan(
        "view", "run", str(view_file), "--data-dir", str(tmp_path), "--database", url,
        "--format", "ndjson", "--out", str(out),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "observations" in ran.stderr  # the progress bar
    stored = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    resources = [
        orjson.loads(line)
        for path in sorted(population.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]
    expected = list(compile_view(VIEW).rows_as_dicts(resources))
    assert len(expected) > 50
    key = lambda row: row["id"]  # noqa: E731
    assert sorted(stored, key=key) == sorted(expected, key=key)
    assert f"{len(expected)} rows; as of seq=" in ran.stderr


def test_view_run_names_what_is_wrong_in_the_view(tmp_path: Path) -> None:
    view_file = tmp_path / "view.json"
    view_file.write_bytes(
        orjson.dumps({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "("}]}]})
    )
    ran = bevan("view", "run", str(view_file), "--data-dir", str(tmp_path))
    assert ran.returncode == 1
    assert "select[0].column[0].path" in ran.stderr
