"""Probes and metrics for operators: /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from tests.api.test_crud import create, patient
from tests.conftest import RunningServer, database_url, start_server


def root(server: RunningServer) -> str:
    return server.base_url.removesuffix("/fhir")


def test_healthz_answers_without_a_token(server: RunningServer) -> None:
    response = httpx.get(f"{root(server)}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "up"}


def test_readyz_says_ready_when_the_schema_is_current(server: RunningServer) -> None:
    response = httpx.get(f"{root(server)}/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_probes_are_not_audited(server: RunningServer, fhir: httpx.Client) -> None:
    log = AuditLog(server.store.engine)
    fhir.get("/Patient", params={"_count": "1"})
    before = log.count()
    for _ in range(3):
        assert httpx.get(f"{root(server)}/healthz").status_code == 200
        assert httpx.get(f"{root(server)}/readyz").status_code == 200
    assert log.count() == before
    fhir.get("/Patient", params={"_count": "1"})
    assert log.count() == before + 1  # an API request, by contrast, is audited


def test_metrics_need_a_system_token(server: RunningServer) -> None:
    url = f"{root(server)}/metrics"
    assert httpx.get(url).status_code == 401
    clinician = TokenAuthority.in_directory(server.data_dir).issue(
        "dr-metrics", "clinician", organisation="A81001"
    )
    refused = httpx.get(url, headers={"Authorization": f"Bearer {clinician}"})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_metrics_count_requests_by_route_and_status(
    server: RunningServer, fhir: httpx.Client
) -> None:
    created = create(fhir, patient(family="Metric")).json()
    fhir.get(f"/Patient/{created['id']}")
    fhir.get("/Patient/no-such-patient")
    response = httpx.get(
        f"{root(server)}/metrics", headers={"Authorization": f"Bearer {server.token}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'bevan_http_requests_total{method="GET",route="/fhir/{type}/{id}",status="200"}' in text
    assert 'route="/fhir/{type}/{id}",status="404"' in text
    assert created["id"] not in text  # ids never become labels
    assert "bevan_http_request_duration_seconds_bucket" in text
    assert "bevan_group_commit_batch_size_count" in text
    assert "bevan_audit_queue_depth" in text
    assert "bevan_database_pool_connections_in_use" in text


@pytest.fixture(scope="module")
def scraped(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that lets a scraper on this machine read the metrics without a token."""
    tmp: Path = tmp_path_factory.mktemp(f"bevan-scraped-{backend}")
    yield from start_server(database_url(backend, tmp), tmp, metrics_allow=("127.0.0.0/8",))


def test_an_allowed_scraper_reads_the_metrics_without_a_token(scraped: RunningServer) -> None:
    response = httpx.get(f"{root(scraped)}/metrics")
    assert response.status_code == 200
    assert "bevan_http_requests_total" in response.text


@pytest.fixture(scope="module")
def behind(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose database is marked as a schema older than this release's."""
    tmp: Path = tmp_path_factory.mktemp(f"bevan-behind-{backend}")
    for running in start_server(database_url(backend, tmp), tmp):
        with running.store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        yield running


def test_readyz_says_not_ready_while_the_schema_is_behind(behind: RunningServer) -> None:
    response = httpx.get(f"{root(behind)}/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert "bevan db upgrade" in response.json()["reason"]
    assert httpx.get(f"{root(behind)}/healthz").status_code == 200  # the process is up
