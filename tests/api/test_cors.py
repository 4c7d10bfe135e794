"""CORS for browser SMART apps: only the origins an operator names may call the API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer, database_url, start_server

APP_ORIGIN = "https://smart-app.example.nhs.uk"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture(scope="module")
def open_to_app(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose operator allows one browser app's origin."""
    tmp = tmp_path_factory.mktemp(f"bevan-cors-{backend}")
    yield from start_server(database_url(backend, tmp), tmp, cors_origins=(APP_ORIGIN,))


def test_an_allowed_origin_gets_its_preflight_answered(open_to_app: RunningServer) -> None:
    response = httpx.options(
        f"{open_to_app.base_url}/Patient", headers={"Origin": APP_ORIGIN, **PREFLIGHT}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_an_allowed_origin_can_read_the_answer_and_its_etag(open_to_app: RunningServer) -> None:
    response = httpx.get(
        f"{open_to_app.base_url}/Patient",
        headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {open_to_app.token}"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "ETag" in response.headers["access-control-expose-headers"]


def test_another_origin_is_refused_its_preflight(open_to_app: RunningServer) -> None:
    response = httpx.options(
        f"{open_to_app.base_url}/Patient",
        headers={"Origin": "https://elsewhere.example.com", **PREFLIGHT},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_no_origin_is_allowed_by_default(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/metadata", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{server.base_url}/Patient", headers={"Origin": APP_ORIGIN, **PREFLIGHT}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert response.json()["rest"][0]["security"]["cors"] is False


def test_the_capability_statement_says_when_browsers_of_other_origins_are_answered(
    open_to_app: RunningServer,
) -> None:
    statement = httpx.get(f"{open_to_app.base_url}/metadata").json()
    assert statement["rest"][0]["security"]["cors"] is True
