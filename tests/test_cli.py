"""The `bevan` command: token, db upgrade, synth and load (bundles and NDJSON)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import SHARED


def bevan(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bevan.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **environment},
    )


def test_token_create_prints_the_token_as_its_last_line(tmp_path: Path) -> None:
    result = bevan("token", "create", "--role", "system", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    token = result.stdout.strip().splitlines()[-1]
    assert token.count(".") == 2  # a JWT
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o077 == 0  # the key is private


def test_token_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = bevan("token", "create", "--role", "wizard", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "wizard" in result.stderr


def test_db_upgrade_reports_what_it_did(tmp_path: Path) -> None:
    first = bevan("db", "upgrade", "--data-dir", str(tmp_path))
    assert first.returncode == 0 and "upgraded" in first.stdout
    again = bevan("db", "upgrade", "--data-dir", str(tmp_path))
    assert "already" in again.stdout


def test_synth_then_load_bundles_with_progress(tmp_path: Path) -> None:
    out = tmp_path / "population"
    made = bevan("synth", "--patients", "30", "--seed", "3", "--out", str(out))
    assert made.returncode == 0, made.stderr
    loaded = bevan("load", "--data-dir", str(tmp_path / "data"), str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert "Loading" in loaded.stderr  # the progress bar
    assert "30 Patient" in loaded.stdout
    assert "refused 0" in loaded.stdout


def test_load_ndjson_reports_bad_lines_by_number(tmp_path: Path) -> None:
    example = orjson.loads(
        (SHARED / "data" / "hl7-r4-examples" / "Patient-example.json").read_bytes()
    )
    lines = [
        orjson.dumps(example),
        b'{"resourceType": "Patient", "gender": "sometimes"}',
        b"{not json",
        orjson.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}}),
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # The official example refers to an Organization it does not carry: partial data.
    result = bevan(
        "load",
        "--data-dir",
        str(tmp_path / "data"),
        "--partial",  # keep the good lines
        str(path),
        BEVAN_REFERENTIAL_INTEGRITY="off",
    )
    assert result.returncode == 1
    assert "Stored 2 resources" in result.stdout
    assert f"{path}: line 2" in result.stderr and "Patient.gender" in result.stderr
    assert f"{path}: line 3" in result.stderr


def test_load_synthea_seed_bundles(tmp_path: Path) -> None:
    hospital = next((SHARED / "data" / "synthea-small").glob("hospitalInformation*.json"))
    result = bevan("load", "--data-dir", str(tmp_path), str(hospital))
    assert result.returncode == 0, result.stderr
    assert "Organization" in result.stdout


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    result = bevan("load", "--data-dir", str(tmp_path), str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "nope.json" in result.stderr


def test_reindex_rebuilds_the_index_rows(tmp_path: Path) -> None:
    from bevan.fhir.search import parse_search
    from bevan.records.service import RecordService
    from bevan.store.record_store import RecordStore
    from bevan.store.schema import index_string

    hospital = next((SHARED / "data" / "synthea-small").glob("hospitalInformation*.json"))
    assert bevan("load", "--data-dir", str(tmp_path), str(hospital)).returncode == 0
    store = RecordStore.from_url(f"sqlite:///{tmp_path / 'bevan.db'}")
    service = RecordService(store)
    query = parse_search("Organization", "name=ST&_total=accurate")
    before = service.search(query).total
    assert before and before > 0
    with store.engine.begin() as connection:  # lose the string index, as if it were new
        connection.execute(index_string.delete())
    assert service.search(query).total == 0
    result = bevan("reindex", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Reindexed" in result.stdout
    assert service.search(query).total == before
    store.close()


def test_serve_refuses_a_port_in_use_in_one_line_before_creating_anything(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "never-made"
        result = bevan("serve", "--data-dir", str(data_dir), "--port", str(port))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert not data_dir.exists()


def test_serve_logs_one_json_line_per_request_by_default(tmp_path: Path) -> None:
    import time

    import httpx

    from tests.conftest import free_port, serve_command

    port = free_port()
    server = subprocess.Popen(
        serve_command(tmp_path, port), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz?probe=1", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert answer.status_code == 200
    finally:
        server.terminate()
        stdout, _ = server.communicate(timeout=30)
    lines = [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    [probe] = [line for line in lines if line["path"] == "/healthz"]
    assert probe["status"] == 200 and probe["query"] == ["probe"]
    assert probe["request_id"] == answer.headers["x-request-id"]


def test_load_takes_ndjson_files_in_any_order_and_names_references_to_nothing(
    tmp_path: Path,
) -> None:
    practice = {"resourceType": "Organization", "id": "practice", "name": "The Surgery"}
    patients = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "managingOrganization": {"reference": "Organization/practice"},
        },
        {
            "resourceType": "Patient",
            "id": "p2",
            "managingOrganization": {"reference": "Organization/nowhere"},
        },
    ]
    first = tmp_path / "a-patients.ndjson"  # read first, though it refers to the second
    first.write_bytes(b"\n".join(orjson.dumps(p) for p in patients) + b"\n")
    (tmp_path / "b-organisations.ndjson").write_bytes(orjson.dumps(practice) + b"\n")
    result = bevan("load", "--data-dir", str(tmp_path / "data"), "--partial", str(tmp_path))
    assert result.returncode == 1
    assert "Stored 2 resources" in result.stdout  # the practice and the patient at it
    assert f"{first}: line 2" in result.stderr and "Organization/nowhere" in result.stderr


def test_the_demo_population_is_made_once_and_reused(tmp_path: Path) -> None:
    from bevan.cli.serve import demo_population

    first = demo_population(tmp_path, 20, 5)
    assert first and all(p.suffix == ".ndjson" for p in first)
    made = [p.stat().st_mtime_ns for p in first]
    again = demo_population(tmp_path, 20, 5)
    assert again == first
    assert [p.stat().st_mtime_ns for p in again] == made
