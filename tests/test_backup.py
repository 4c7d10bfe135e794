"""`bevan backup` and `bevan restore`: a backup taken while the server writes loses nothing
acknowledged before it began, and brings the signing key and an intact audit chain."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import psycopg

from bevan.store.backup import search_path_schema
from tests.api.test_crud import FHIR_JSON, patient
from tests.conftest import POSTGRES_URL, RunningServer, database_url, start_server
from tests.test_cli import bevan

WRITERS = 3


def write_until(server: RunningServer, stop: threading.Event, acknowledged: list[str]) -> None:
    """Create patients until told to stop, noting each one the server acknowledged."""
    with server.client() as fhir:
        while not stop.is_set():
            response = fhir.post("/Patient", json=patient(family="Backup"), headers=FHIR_JSON)
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["id"])


def test_a_backup_under_write_load_restores_every_acknowledged_write_and_the_chain(
    backend: str, tmp_path: Path
) -> None:
    live_dir, backup_dir = tmp_path / "live", tmp_path / "backup"
    live_dir.mkdir()
    url = database_url(backend, live_dir)
    serving = start_server(url, live_dir)
    server = next(serving)
    acknowledged: list[str] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=write_until, args=(server, stop, acknowledged))
        for _ in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    try:
        while len(acknowledged) < 30:
            stop.wait(0.05)
        before_backup = list(acknowledged)
        made = bevan("backup", "--data-dir", str(live_dir), "--database", url, str(backup_dir))
        written_during = len(acknowledged) - len(before_backup)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        next(serving, None)
    assert made.returncode == 0, made.stderr
    assert written_during > 0  # the backup really ran under load
    assert (backup_dir / "signing-key.pem").exists()

    restored_dir = tmp_path / "restored"
    if backend == "sqlite":
        restored_url = f"sqlite:///{restored_dir / 'bevan.db'}"
    else:  # the disaster: the live schema is lost, and the backup goes back in its place
        restored_url = url
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {search_path_schema(url)} CASCADE")
    put_back = bevan(
        "restore", "--data-dir", str(restored_dir), "--database", restored_url, str(backup_dir)
    )
    assert put_back.returncode == 0, put_back.stderr
    verified = bevan("audit", "verify", "--data-dir", str(restored_dir), "--database", restored_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain verified" in verified.stdout

    restored = start_server(restored_url, restored_dir)
    again = next(restored)
    try:
        # The signing key travelled: a token from before the backup is still good.
        with httpx.Client(
            base_url=again.base_url, headers={"Authorization": f"Bearer {server.token}"}
        ) as fhir:
            for patient_id in before_backup:
                assert fhir.get(f"/Patient/{patient_id}").status_code == 200, patient_id
    finally:
        next(restored, None)


def test_restore_refuses_to_overwrite_a_database_in_use(tmp_path: Path) -> None:
    live = tmp_path / "live"
    assert bevan("db", "upgrade", "--data-dir", str(live)).returncode == 0
    bevan("token", "create", "--role", "system", "--data-dir", str(live))
    made = bevan("backup", "--data-dir", str(live), str(tmp_path / "copy"))
    assert made.returncode == 0, made.stderr
    refused = bevan("restore", "--data-dir", str(live), str(tmp_path / "copy"))
    assert refused.returncode == 1
    assert "--replace" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_backup_refuses_a_directory_that_holds_something(tmp_path: Path) -> None:
    assert bevan("db", "upgrade", "--data-dir", str(tmp_path / "live")).returncode == 0
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    refused = bevan("backup", "--data-dir", str(tmp_path / "live"), str(occupied))
    assert refused.returncode == 1
    assert "not empty" in refused.stderr
    assert (occupied / "notes.txt").read_text() == "mine"
