"""SIGKILL the server in the middle of a load: every acknowledged write survives a
restart, and a transaction caught in flight is either all there or not there at all."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.synth import write_population
from tests.conftest import BACKENDS, database_url, free_port, serve_command


def start(data_dir: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        serve_command(data_dir, port, "--database", url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        f"bevan serve did not start: {process.stderr.read().decode() if process.stderr else ''}"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_writes_survive_sigkill(backend: str, tmp_path: Path) -> None:
    url = database_url(backend, tmp_path)
    bundles = tmp_path / "population"
    write_population(400, seed=7, out_dir=bundles, workers=1)
    port = free_port()
    server = start(tmp_path, url, port)
    token = TokenAuthority.in_directory(tmp_path).issue("crash-test", "system")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    base = f"http://127.0.0.1:{port}/fhir"

    shared = httpx.post(
        base, content=(bundles / "shared.json").read_bytes(), headers=headers, timeout=60
    )
    assert shared.status_code == 200, shared.text
    acknowledged: list[tuple[Path, list[str]]] = []  # bundle, locations of what it created
    attempted: list[Path] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers=headers, timeout=30) as client:
            for path in sorted(bundles.glob("patient-*.json")):
                if stop.is_set():
                    return
                attempted.append(path)
                try:
                    response = client.post(base, content=path.read_bytes())
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    locations = [e["response"]["location"] for e in response.json()["entry"]]
                    acknowledged.append((path, locations))

    loaders = [threading.Thread(target=load) for _ in range(1)]
    for thread in loaders:
        thread.start()
    while len(acknowledged) < 40:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    stop.set()
    for thread in loaders:
        thread.join()

    assert len(acknowledged) >= 40
    server = start(tmp_path, url, port)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for path, locations in acknowledged:
                for location in locations:
                    resource_path = location.split("/_history")[0]
                    response = client.get(f"/{resource_path}")
                    assert response.status_code == 200, (
                        f"{path.name}: {location} lost after SIGKILL"
                    )
            # The bundle in flight at the kill is all there or absent: count Patients.
            patients = client.get("/Patient", params={"_count": 0}).json()["total"]
            assert patients in (len(acknowledged), len(acknowledged) + 1)
            if patients == len(acknowledged) + 1:
                in_flight = attempted[len(acknowledged)]
                import orjson

                expected = len(orjson.loads(in_flight.read_bytes())["entry"])
                total = sum(
                    client.get(f"/{t}", params={"_count": 0}).json()["total"]
                    for t in (
                        "Patient",
                        "Encounter",
                        "Observation",
                        "Condition",
                        "MedicationRequest",
                        "AllergyIntolerance",
                        "Immunization",
                        "Consent",
                        "EpisodeOfCare",
                        "CarePlan",
                    )
                )
                acknowledged_total = sum(len(locs) for _, locs in acknowledged)
                assert total == acknowledged_total + expected
    finally:
        server.terminate()
        server.wait(timeout=20)
