"""Fixtures: a real Bevan server over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bevan.app import create_app
from bevan.config import Settings
from bevan.records.service import RecordService
from bevan.security.tokens import TokenAuthority
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore

SHARED = Path(__file__).resolve().parents[2] / "shared"
POSTGRES_URL = os.environ.get(
    "BEVAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_unavailable() -> str | None:
    """Return why PostgreSQL tests cannot run here, or None if they can."""
    import psycopg

    try:
        with psycopg.connect(
            POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3
        ):
            return None
    except Exception as error:  # any failure to connect means: skip, and say why
        return (
            f"no PostgreSQL at {POSTGRES_URL} ({type(error).__name__}: {str(error).strip()[:120]})"
        )


_SCHEMAS: list[str] = []


def fresh_postgres_url() -> str:
    """Return a URL for a new, empty schema in the test database (one per caller; all
    are dropped when the test session ends)."""
    import psycopg

    schema = f"bevan_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    _SCHEMAS.append(schema)
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'bevan.db'}"
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    return fresh_postgres_url()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def serve_command(data_dir: Path, port: int, *flags: str) -> list[str]:
    """`bevan serve` on data_dir and a local port, quietly, with further flags."""
    return [
        sys.executable,
        "-m",
        "bevan.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--log-level",
        "warning",
        *flags,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A Bevan server in this process, answering real HTTP on a local port."""

    base_url: str
    token: str
    store: RecordStore
    data_dir: Path
    app: Any = None

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=120)

    @property
    def records(self) -> RecordService:
        return RecordService(self.store)


def start_server(url: str, data_dir: Path, **settings_given: Any) -> Iterator[RunningServer]:
    """Serve url's database on a free port (settings_given: further Settings fields)."""
    store = RecordStore.from_url(url)
    upgrade(store.engine)
    port = free_port()
    settings = Settings(data_dir=data_dir, database_url=url, port=port, **settings_given)
    app = create_app(settings, store)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    token = TokenAuthority.in_directory(data_dir).issue("test-system", "system")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}/fhir", token, store, data_dir, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server shared by a test module, on each backend in turn."""
    tmp = tmp_path_factory.mktemp(f"bevan-{backend}")
    yield from start_server(database_url(backend, tmp), tmp)


@pytest.fixture
def fhir(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="session", autouse=True)
def drop_test_schemas() -> Iterator[None]:
    yield
    if not _SCHEMAS:
        return
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
            for schema in _SCHEMAS:
                connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except psycopg.Error:
        pass  # a server that went away leaves nothing to tidy
