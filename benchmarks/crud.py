"""CRUD: concurrent clients create, read, update and delete nine linked resources per loop."""

from __future__ import annotations

import asyncio
import copy
import math
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.client import FhirClient, StopLoad, report_progress, run_event_loop
from benchmarks.measure import Latencies, Refusals
from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.server import BevanServer

Resource = dict[str, Any]
Ids = Mapping[str, str]

# Dependency order: each type refers only to types before it.
ORDER = (
    "Patient",
    "Location",
    "Organization",
    "Practitioner",
    "Encounter",
    "Observation",
    "MedicationRequest",
    "Claim",
    "ExplanationOfBenefit",
)
OPERATIONS = ("create", "read", "update", "delete")
REQUESTS_PER_LOOP = len(ORDER) * len(OPERATIONS)
WHEN = "2025-03-14T09:30:00+00:00"
LATER = "2025-03-14T10:45:00+00:00"


def _ref(ids: Ids, resource_type: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{ids[resource_type]}"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


CLAIM_TYPE = _coding("http://terminology.hl7.org/CodeSystem/claim-type", "pharmacy", "Pharmacy")
PRODUCT = _coding("http://snomed.info/sct", "39732311000001104", "Amlodipine 5mg tablets")


def _item(ids: Ids) -> list[dict[str, Any]]:
    return [{"sequence": 1, "productOrService": PRODUCT, "encounter": [_ref(ids, "Encounter")]}]


BUILDERS: dict[str, Callable[[Ids], Resource]] = {
    "Patient": lambda ids: {
        "resourceType": "Patient",
        "active": True,
        "name": [{"use": "official", "family": "Bench", "given": ["Loop"]}],
        "gender": "female",
        "birthDate": "1961-07-05",
    },
    "Location": lambda ids: {
        "resourceType": "Location",
        "status": "active",
        "name": "Ward 7",
        "mode": "instance",
    },
    "Organization": lambda ids: {
        "resourceType": "Organization",
        "active": True,
        "name": "Benchmark NHS Trust",
    },
    "Practitioner": lambda ids: {
        "resourceType": "Practitioner",
        "active": True,
        "name": [{"family": "Okafor", "given": ["Ada"], "prefix": ["Dr"]}],
    },
    "Encounter": lambda ids: {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": _ref(ids, "Patient"),
        "participant": [{"individual": _ref(ids, "Practitioner")}],
        "location": [{"location": _ref(ids, "Location")}],
        "serviceProvider": _ref(ids, "Organization"),
        "period": {"start": WHEN},
    },
    "Observation": lambda ids: {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [
            _coding(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "vital-signs",
                "Vital Signs",
            )
        ],
        "code": _coding("http://loinc.org", "8867-4", "Heart rate"),
        "subject": _ref(ids, "Patient"),
        "encounter": _ref(ids, "Encounter"),
        "effectiveDateTime": WHEN,
        "valueQuantity": {
            "value": 72,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    },
    "MedicationRequest": lambda ids: {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": PRODUCT,
        "subject": _ref(ids, "Patient"),
        "encounter": _ref(ids, "Encounter"),
        "requester": _ref(ids, "Practitioner"),
        "authoredOn": WHEN,
    },
    "Claim": lambda ids: {
        "resourceType": "Claim",
        "status": "active",
        "type": CLAIM_TYPE,
        "use": "claim",
        "patient": _ref(ids, "Patient"),
        "created": WHEN,
        "provider": _ref(ids, "Organization"),
        "priority": _coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "prescription": _ref(ids, "MedicationRequest"),
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "NHS England"}}],
        "item": _item(ids),
    },
    "ExplanationOfBenefit": lambda ids: {
        "resourceType": "ExplanationOfBenefit",
        "status": "active",
        "type": CLAIM_TYPE,
        "use": "claim",
        "patient": _ref(ids, "Patient"),
        "created": WHEN,
        "insurer": _ref(ids, "Organization"),
        "provider": _ref(ids, "Practitioner"),
        "claim": _ref(ids, "Claim"),
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"display": "NHS England"}}],
        "item": _item(ids),
    },
}


def _suffix_name(resource: Resource) -> None:
    resource["name"][0]["family"] += "-Updated"


def _rename(resource: Resource) -> None:
    resource["name"] += " (updated)"


def _flip(field: str, value: Any) -> Callable[[Resource], None]:
    def change(resource: Resource) -> None:
        resource[field] = value

    return change


# One small change per type: a name suffix, a status flip or a new timestamp.
CHANGES: dict[str, Callable[[Resource], None]] = {
    "Patient": _suffix_name,
    "Location": _flip("status", "suspended"),
    "Organization": _rename,
    "Practitioner": _suffix_name,
    "Encounter": _flip("status", "finished"),
    "Observation": _flip("status", "final"),
    "MedicationRequest": _flip("status", "completed"),
    "Claim": _flip("created", LATER),
    "ExplanationOfBenefit": _flip("created", LATER),
}


def changed(resource_type: str, resource: Resource) -> Resource:
    """Return a copy of resource with its type's one small change applied."""
    updated = copy.deepcopy(resource)
    CHANGES[resource_type](updated)
    return updated


async def crud_loop(client: FhirClient) -> bool:
    """Run one 36-request loop; return True if every request succeeded."""
    created: dict[str, Resource] = {}
    ok = True
    try:
        for resource_type in ORDER:
            body = BUILDERS[resource_type]({t: r["id"] for t, r in created.items()})
            status, payload = await client.send("create", "POST", resource_type, orjson.dumps(body))
            if status != 201:
                return False
            body["id"] = orjson.loads(payload)["id"]
            created[resource_type] = body
        for resource_type, body in created.items():
            status, _ = await client.send("read", "GET", f"{resource_type}/{body['id']}")
            ok = ok and status == 200
        for resource_type, body in created.items():
            update = orjson.dumps(changed(resource_type, body))
            status, _ = await client.send("update", "PUT", f"{resource_type}/{body['id']}", update)
            ok = ok and status == 200
    finally:
        for resource_type, body in reversed(created.items()):
            status, _ = await client.send("delete", "DELETE", f"{resource_type}/{body['id']}")
            ok = ok and status in (200, 204)
    return ok


@dataclass(frozen=True)
class LoadRun:
    latencies: Latencies
    refusals: list[str]
    refused: int
    seconds: float
    loops: int


async def _drive(base_url: str, token: str, clients: int, duration: float) -> LoadRun:
    async with FhirClient(base_url, token, connections=clients) as client:
        # One loop alone first: a refused body stops the run with the OperationOutcome.
        if not await crud_loop(client):
            raise SystemExit(
                "crud: the server refused a request:\n" + "\n".join(client.refusals.lines())
            )
        client.latencies, client.refusals = Latencies(), Refusals()
        loops = 0

        async def one_client() -> None:
            nonlocal loops
            try:
                while True:
                    await crud_loop(client)
                    loops += 1
            except StopLoad:
                pass

        started = time.perf_counter()
        client.stop_at = started + duration

        def describe(elapsed: float) -> str:
            done = client.latencies.count()
            return (
                f"crud: {min(elapsed, duration):.0f}/{duration:.0f} s, {done:,} requests "
                f"({done / elapsed:,.0f} req/s), {loops:,} loops, "
                f"{client.refusals.total} non-2xx"
            )

        ticker = asyncio.create_task(report_progress(describe, 5.0, started))
        await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
        ticker.cancel()
        return LoadRun(
            client.latencies, client.refusals.lines(), client.refusals.total, seconds, loops
        )


def sqlite_baseline(loops: int, path: Path) -> tuple[Latencies, float]:
    """Return latencies and seconds spent doing the same loops directly in a SQLite file.

    One table (type, id, version, json); WAL with synchronous=NORMAL; each statement its
    own transaction, as each HTTP request is. Seconds count only the timed operations.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE resource (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,"
        " json TEXT NOT NULL, PRIMARY KEY (type, id))"
    )
    latencies = Latencies()
    clock = time.perf_counter
    for _ in range(loops):
        created: dict[str, Resource] = {}
        for resource_type in ORDER:
            body = BUILDERS[resource_type]({t: r["id"] for t, r in created.items()})
            body["id"] = str(uuid.uuid4())
            started = clock()
            db.execute(
                "INSERT INTO resource VALUES (?, ?, 1, ?)",
                (resource_type, body["id"], orjson.dumps(body).decode()),
            )
            latencies.add("create", clock() - started)
            created[resource_type] = body
        for resource_type, body in created.items():
            started = clock()
            row = db.execute(
                "SELECT json FROM resource WHERE type = ? AND id = ?", (resource_type, body["id"])
            ).fetchone()
            orjson.loads(row[0])
            latencies.add("read", clock() - started)
        for resource_type, body in created.items():
            update = changed(resource_type, body)
            started = clock()
            db.execute(
                "UPDATE resource SET version = version + 1, json = ? WHERE type = ? AND id = ?",
                (orjson.dumps(update).decode(), resource_type, body["id"]),
            )
            latencies.add("update", clock() - started)
        for resource_type, body in reversed(created.items()):
            started = clock()
            db.execute(
                "DELETE FROM resource WHERE type = ? AND id = ?", (resource_type, body["id"])
            )
            latencies.add("delete", clock() - started)
    db.close()
    return latencies, latencies.seconds()


def run(options: RunOptions) -> ScenarioResult:
    """Run the CRUD scenario against a fresh server and the SQLite baseline; return the result."""
    clients, duration = options.crud_clients(), options.crud_duration()
    print(f"crud: starting a Bevan server ({options.workers} worker(s)) ...", file=sys.stderr)
    with BevanServer(options.database, options.workers) as server:
        print(
            f"crud: {clients} clients for {duration:.0f} s against {server.base_url}",
            file=sys.stderr,
        )
        load = run_event_loop(lambda: _drive(server.base_url, server.token, clients, duration))
        server.check_alive()
        problems = server.log_problems()
    total = load.latencies.count()
    baseline_loops = max(1, math.ceil(total / REQUESTS_PER_LOOP))
    print(f"crud: baseline, {baseline_loops:,} loops directly in SQLite ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bevan-bench-sqlite-") as scratch:
        base_latencies, base_seconds = sqlite_baseline(baseline_loops, Path(scratch) / "base.db")

    ours_rate = total / load.seconds
    base_rate = base_latencies.count() / base_seconds
    figures = [
        Figure(
            "CRUD req/s, all operations",
            rate(ours_rate),
            rate(base_rate),
            ratio(ours_rate, base_rate),
        ),
    ]
    details: dict[str, Any] = {
        "seconds": load.seconds,
        "requests": total,
        "loops_completed": load.loops,
        "requests_per_second": ours_rate,
        "baseline": {
            "operations": base_latencies.count(),
            "seconds": base_seconds,
            "operations_per_second": base_rate,
        },
        "operations": {},
    }
    for op in OPERATIONS:
        ours, base = load.latencies.summary(op), base_latencies.summary(op)
        op_rate, op_base_rate = ours.count / load.seconds, base.count / base_seconds
        figures.append(
            Figure(f"{op} req/s", rate(op_rate), rate(op_base_rate), ratio(op_rate, op_base_rate))
        )
        figures.append(Figure(f"{op} p50 / p95 / p99 ms", latency_cell(ours), latency_cell(base)))
        details["operations"][op] = {
            "ours": {**ours.as_dict(), "requests_per_second": op_rate},
            "baseline": {**base.as_dict(), "operations_per_second": op_base_rate},
        }
    figures.append(Figure("non-2xx answers", str(load.refused), "0"))
    return ScenarioResult(
        scenario="crud",
        title=f"CRUD: {clients} clients, {load.seconds:.0f} s, {load.loops:,} loops of {REQUESTS_PER_LOOP}",
        figures=figures,
        published=(
            "CRUD req/s Aidbox 3,777 / HAPI 3,755 / Medplum 1,354 (2025-06-18 report); "
            "2026 run Aidbox 5,212 / HAPI 3,058 / Medplum 1,420; "
            "p99 ms POST/GET/PUT/DELETE Aidbox 43/37/45/38, HAPI 74/68/74/72, "
            "Medplum 328/132/355/268 (8 CPUs per server)"
        ),
        target=">= 1,500 CRUD req/s on 2 cores",
        settings={
            "clients": clients,
            "duration": duration,
            "workers": options.workers,
            "database": options.database or "sqlite (fresh file)",
        },
        details=details,
        refusals=load.refusals,
        server_log_problems=problems,
    )
