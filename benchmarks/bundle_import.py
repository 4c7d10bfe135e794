"""Import: POST every patient transaction Bundle, unchanged, with concurrent clients."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.client import FhirClient, report_progress, run_event_loop
from benchmarks.measure import Latencies, outcome_text
from benchmarks.options import RunOptions
from benchmarks.population import BundleFile, Population, synth_population, synthea_population
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.server import BevanServer


@dataclass(frozen=True)
class ImportRun:
    latencies: Latencies
    refusals: list[str]
    refused: int
    seconds: float
    bundles: int
    resources: int


async def _drive(base_url: str, token: str, clients: int, population: Population) -> ImportRun:
    bundles = population.patients
    async with FhirClient(base_url, token, connections=clients) as client:
        for seed in population.seeds:
            status, payload = await client.send("seed", "POST", "", seed.body)
            if status != 200:
                raise SystemExit(f"import: {seed.name} was refused: {outcome_text(payload)}")
            print(f"import: loaded {seed.name} ({seed.entries} entries)", file=sys.stderr)
        queue: asyncio.Queue[BundleFile] = asyncio.Queue()
        for bundle in bundles:
            queue.put_nowait(bundle)
        done_bundles = done_resources = 0

        async def one_client() -> None:
            nonlocal done_bundles, done_resources
            while not queue.empty():
                bundle = queue.get_nowait()
                status, _ = await client.send("transaction", "POST", "", bundle.body)
                if status == 200:
                    done_bundles += 1
                    done_resources += bundle.entries

        def describe(elapsed: float) -> str:
            return (
                f"import: {done_bundles:,}/{len(bundles):,} bundles, {done_resources:,} resources "
                f"({done_resources / elapsed:,.0f}/s), {client.refusals.total} non-2xx"
            )

        started = time.perf_counter()
        ticker = asyncio.create_task(report_progress(describe, 5.0, started))
        await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
        ticker.cancel()
        return ImportRun(
            client.latencies,
            client.refusals.lines(),
            client.refusals.total,
            seconds,
            done_bundles,
            done_resources,
        )


def _rows(bundle: bytes) -> list[tuple[str, str, str]]:
    """Return (type, id, json) for each entry: the id from a PUT url, else a fresh uuid."""
    rows = []
    for entry in orjson.loads(bundle).get("entry", ()):
        resource, request = entry["resource"], entry.get("request", {})
        is_put = request.get("method") == "PUT"
        resource["id"] = request["url"].split("/", 1)[1] if is_put else str(uuid.uuid4())
        rows.append((resource["resourceType"], resource["id"], orjson.dumps(resource).decode()))
    return rows


def sqlite_baseline(population: Population, path: Path) -> Latencies:
    """Return the time taken per bundle to insert its resources' JSON rows directly into SQLite.

    One table (type, id, version, json); WAL with synchronous=NORMAL; one transaction per
    bundle, single process. Parsing the bundle and writing each resource's JSON are timed.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE resource (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
        " json TEXT NOT NULL, PRIMARY KEY (type, id))"
    )
    insert = "INSERT OR REPLACE INTO resource VALUES (?, ?, 1, ?)"
    for seed in population.seeds:
        db.execute("BEGIN")
        db.executemany(insert, _rows(seed.body))
        db.execute("COMMIT")
    latencies = Latencies()
    for bundle in population.patients:
        started = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(insert, _rows(bundle.body))
        db.execute("COMMIT")
        latencies.add("transaction", time.perf_counter() - started)
    db.close()
    return latencies


def run(options: RunOptions) -> ScenarioResult:
    """Run the import scenario against a fresh server and the SQLite baseline; return it."""
    patients, clients = options.import_patients(), options.import_clients()
    load_population = synthea_population if options.source == "synthea" else synth_population
    population = load_population(patients, options.seed)
    bundles, total_entries = population.patients, population.patient_entries
    print(f"import: starting a Bevan server ({options.workers} worker(s)) ...", file=sys.stderr)
    with BevanServer(options.database, options.workers) as server:
        print(
            f"import: {len(bundles):,} bundles ({total_entries:,} resources) "
            f"with {clients} clients to {server.base_url}",
            file=sys.stderr,
        )
        load = run_event_loop(lambda: _drive(server.base_url, server.token, clients, population))
        server.check_alive()
        problems = server.log_problems()
    print(f"import: baseline, {len(bundles):,} bundles directly into SQLite ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bevan-bench-sqlite-") as scratch:
        base = sqlite_baseline(population, Path(scratch) / "base.db")
    base_seconds = base.seconds()

    ours_rate, base_rate = load.resources / load.seconds, total_entries / base_seconds
    ours_bundles, base_bundles = load.bundles / load.seconds, len(bundles) / base_seconds
    figures = [
        Figure("resources/s", rate(ours_rate), rate(base_rate), ratio(ours_rate, base_rate)),
        Figure(
            "bundles/s",
            f"{ours_bundles:,.1f}",
            f"{base_bundles:,.1f}",
            ratio(ours_bundles, base_bundles),
        ),
        Figure(
            "bundle p50 / p95 / p99 ms",
            latency_cell(load.latencies.summary("transaction")),
            latency_cell(base.summary("transaction")),
        ),
        Figure("resources stored", f"{load.resources:,}", f"{total_entries:,}"),
        Figure("wall time s", f"{load.seconds:.1f}", f"{base_seconds:.1f}"),
        Figure("non-2xx answers", str(load.refused), "0"),
    ]
    details: dict[str, Any] = {
        "patients": patients,
        "bundles": len(bundles),
        "bundles_stored": load.bundles,
        "resources": load.resources,
        "resources_offered": total_entries,
        "seconds": load.seconds,
        "resources_per_second": ours_rate,
        "bundle_latency": load.latencies.summary("transaction").as_dict(),
        "baseline": {
            "seconds": base_seconds,
            "resources_per_second": base_rate,
            "bundle_latency": base.summary("transaction").as_dict(),
        },
    }
    mean_entries = total_entries / max(1, len(bundles))
    return ScenarioResult(
        scenario="import" if options.source == "synth" else f"import-{options.source}",
        title=(
            f"Import: {len(bundles):,} {options.source} patient transaction bundles "
            f"(mean {mean_entries:.0f} entries) with {clients} clients"
        ),
        figures=figures,
        published=(
            "import resources/s, 2026 run: Aidbox 2,678 / HAPI 2,214 / Medplum 764 "
            "(8 CPUs per server, Synthea bundles of up to ~2.6k entries)"
        ),
        target=">= 5,000 resources/s through transaction bundles on 2 cores",
        settings={
            "source": options.source,
            "patients": patients,
            "seed": options.seed,
            "clients": clients,
            "workers": options.workers,
            "database": options.database or "sqlite (fresh file)",
        },
        details=details,
        refusals=load.refusals,
        server_log_problems=problems,
    )
