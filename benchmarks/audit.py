"""What auditing costs: read requests/second with every access audited, against the same
server with the audit trail replaced by one that writes nothing, measured in one run.

Run: python -m benchmarks.audit [--duration S] [--clients C] [--rounds N]
(Auditing cannot be switched off in Bevan; only this benchmark builds an app without it.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from benchmarks.client import FhirClient, StopLoad, run_event_loop
from benchmarks.report import Figure, ScenarioResult
from benchmarks.server import free_port
from bevan.app import create_app
from bevan.config import Settings
from bevan.records.service import RecordService
from bevan.security.tokens import TokenAuthority
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore

REPO = Path(__file__).resolve().parent.parent


class UnwrittenTrail:
    """An audit trail that records nothing: the baseline for the cost of auditing."""

    log: Any = None

    async def record(self, record: object) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def audited_app() -> Starlette:
    return create_app(Settings.from_environment())


def unaudited_app() -> Starlette:
    return create_app(Settings.from_environment(), trail=UnwrittenTrail())


def _serve(factory: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BEVAN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"benchmarks.audit:{factory}",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{factory} did not start")


async def _reads(base_url: str, token: str, path: str, clients: int, duration: float) -> float:
    async with FhirClient(base_url, token, clients) as client:
        await client.send("warm", "GET", path)
        started = time.perf_counter()
        client.stop_at = started + duration
        done = 0

        async def loop() -> None:
            nonlocal done
            try:
                while True:
                    status, _ = await client.send("read", "GET", path)
                    if status == 200:
                        done += 1
            except StopLoad:
                return

        await asyncio.gather(*(loop() for _ in range(clients)))
        return done / (time.perf_counter() - started)


def run(duration: float, clients: int, rounds: int) -> ScenarioResult:
    data_dir = Path(tempfile.mkdtemp(prefix="bevan-audit-bench-"))
    store = RecordStore.from_url(f"sqlite:///{data_dir / 'bevan.db'}")
    upgrade(store.engine)
    patient = RecordService(store).create(
        {"resourceType": "Patient", "name": [{"family": "Bevan"}]}
    )
    assert patient.stored is not None
    store.close()
    token = TokenAuthority.in_directory(data_dir).issue("bench", "system")
    path = f"Patient/{patient.stored.id}"
    rates: dict[str, list[float]] = {"audited": [], "unaudited": []}
    for round_number in range(rounds):
        for variant in ("unaudited", "audited"):
            port = free_port()
            server = _serve(f"{variant}_app", data_dir, port)
            base_url = f"http://127.0.0.1:{port}/fhir"
            try:
                rate = run_event_loop(
                    lambda url=base_url: _reads(url, token, path, clients, duration)  # type: ignore[misc]
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
            rates[variant].append(rate)
            print(
                f"round {round_number + 1}/{rounds}: {variant} {rate:,.0f} reads/s",
                file=sys.stderr,
                flush=True,
            )
    audited = sum(rates["audited"]) / rounds
    unaudited = sum(rates["unaudited"]) / rounds
    return ScenarioResult(
        scenario="audit",
        title=f"Audit: reads with every access audited, {clients} clients, {rounds} x {duration:.0f} s each way",
        figures=[
            Figure(
                "read req/s",
                f"{audited:,.0f}",
                f"{unaudited:,.0f} (unaudited)",
                audited / unaudited,
            )
        ],
        published="no published figure; the target is a ratio",
        target="audited / unaudited read throughput >= 0.8",
        settings={"clients": clients, "duration": duration, "rounds": rounds},
        details={"rates": rates},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(run(args.duration, args.clients, args.rounds).table())


if __name__ == "__main__":
    main()
