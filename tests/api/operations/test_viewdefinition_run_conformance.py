"""The SQL on FHIR v2 suite through $viewdefinition-run, over HTTP, on each engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from bevan.analytics.conformance import cases, run_case
from bevan.fhir.errors import FhirError
from tests.api.operations.people import FHIR_JSON
from tests.conftest import SHARED, RunningServer

CASES = list(cases(SHARED / "conformance" / "sql-on-fhir-v2" / "tests"))


def over_http(client: httpx.Client) -> Callable[..., tuple[list[str], list[Any]]]:
    """Return an engine for the suite that runs each view through the operation."""

    def engine(
        view: dict[str, Any], resources: list[dict[str, Any]]
    ) -> tuple[list[str], list[Any]]:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "viewResource", "resource": view},
                {"name": "_format", "valueCode": "json"},
                *({"name": "resource", "resource": r} for r in resources),
            ],
        }
        answer = client.post("/$viewdefinition-run", content=orjson.dumps(body), headers=FHIR_JSON)
        if answer.status_code >= 400:
            assert answer.json()["resourceType"] == "OperationOutcome"
            raise FhirError(answer.text, status=answer.status_code)
        rows = answer.json()
        return (list(rows[0]) if rows else []), rows

    return engine


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as fhir:
        yield fhir


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_operation_does_what_the_specification_says(case, client: httpx.Client) -> None:
    outcome = run_case(case, over_http(client))
    assert outcome.passed, outcome.error
