"""The request log: one JSON line per request, naming no query values."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import RunningServer, database_url, start_server


@pytest.fixture(scope="module")
def logged(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with its request log on, as `bevan serve` runs by default."""
    tmp = tmp_path_factory.mktemp(f"bevan-log-{backend}")
    yield from start_server(database_url(backend, tmp), tmp, request_log=True)


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """The request log's lines written while a test runs."""
    caught: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    handler = Catch()
    logger = logging.getLogger("bevan.requests")
    logger.addHandler(handler)
    try:
        yield caught
    finally:
        logger.removeHandler(handler)


def test_each_request_logs_one_line_without_its_query_values(
    logged: RunningServer, lines: list[str]
) -> None:
    with logged.client() as fhir:
        response = fhir.get("/Patient", params={"identifier": "9434765919", "name": "Bevan"})
    assert response.status_code == 200
    [line] = [orjson.loads(text) for text in lines]
    assert line["method"] == "GET"
    assert line["path"] == "/fhir/Patient"
    assert line["query"] == ["identifier", "name"]
    assert line["status"] == 200
    assert line["user"] == "test-system"
    assert line["duration_ms"] >= 0
    assert line["time"].endswith("Z")
    assert line["request_id"] == response.headers["x-request-id"]
    assert "9434765919" not in lines[0] and "Bevan" not in lines[0]


def test_refused_and_unknown_requests_are_logged_too(
    logged: RunningServer, lines: list[str]
) -> None:
    assert httpx.get(f"{logged.base_url}/Patient").status_code == 401
    assert httpx.get(f"{logged.base_url.removesuffix('/fhir')}/nowhere").status_code == 404
    logged_lines = [orjson.loads(text) for text in lines]
    assert [(line["status"], line["user"]) for line in logged_lines] == [(401, None), (404, None)]


def test_the_log_is_off_unless_asked_for(server: RunningServer, lines: list[str]) -> None:
    with server.client() as fhir:
        fhir.get("/metadata")
    assert lines == []
