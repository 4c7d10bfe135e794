"""Virtual ward: home readings scored with NEWS2 on arrival, through Observation/$ingest
(NDJSON batches) and through transaction Bundles of one set each, against the same
readings written straight into a SQLite table; and the cost of one look for overdue
readings over many enrolled patients, against reading the same plans from plain SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.client import FhirClient, run_event_loop
from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.server import BevanServer

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NDJSON = {"Content-Type": "application/fhir+ndjson"}
SETS_PER_INGEST = 40  # 280 readings a request: a hub's few minutes
# The overdue look is judged as if run every 5 minutes (BEVAN_OVERDUE_CHECK_SECONDS).
LOOK_EVERY_SECONDS = 300
TARGET_ENROLLED = 100_000
Resource = dict[str, Any]


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _observation(patient: str, when: str, code: dict[str, Any], **value: Any) -> Resource:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": code,
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        **value,
    }


def reading_set(patient: str, when: str, n: int) -> list[Resource]:
    """Return the seven readings of one set; every tenth set is a deteriorating one."""
    high = n % 10 == 0
    loinc = lambda code: {"coding": [{"system": LOINC, "code": code}]}  # noqa: E731
    return [
        _observation(patient, when, loinc("9279-1"), valueQuantity=_quantity(26 if high else 16, "/min")),
        _observation(patient, when, loinc("59408-5"), valueQuantity=_quantity(90 if high else 97, "%")),
        _observation(patient, when, {"coding": [{"system": SNOMED, "code": "722742002"}]}),
        _observation(
            patient, when, loinc("85354-9"),
            component=[
                {"code": loinc("8480-6"), "valueQuantity": _quantity(122, "mm[Hg]")},
                {"code": loinc("8462-4"), "valueQuantity": _quantity(78, "mm[Hg]")},
            ],
        ),
        _observation(patient, when, loinc("8867-4"), valueQuantity=_quantity(118 if high else 72, "/min")),
        _observation(
            patient, when, {"coding": [{"system": SNOMED, "code": "1104441000000107"}]},
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": "248234008"}]},
        ),
        _observation(patient, when, loinc("8310-5"), valueQuantity=_quantity(37.1, "Cel")),
    ]  # fmt: skip


def _at(n: int) -> str:
    """Set n's time: sets of one patient an hour apart, ending now."""
    moment = datetime.now(UTC) - timedelta(hours=n)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def patients_bundle(count: int) -> tuple[list[str], bytes]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": id, "name": [{"family": "Ward"}]},
            "request": {"method": "PUT", "url": f"Patient/{id}"},
        }
        for id in ids
    ]
    return ids, orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


async def _ingest(server: BevanServer, patients: list[str], sets: int, clients: int) -> dict:
    """Send `sets` sets per patient through $ingest, SETS_PER_INGEST sets a request."""
    bodies: list[bytes] = []
    batch: list[Resource] = []
    for n in range(sets, 0, -1):  # oldest first, as devices send
        for patient in patients:
            batch += reading_set(patient, _at(n), n)
            if len(batch) >= SETS_PER_INGEST * 7:
                bodies.append(b"\n".join(orjson.dumps(r) for r in batch))
                batch = []
    if batch:
        bodies.append(b"\n".join(orjson.dumps(r) for r in batch))
    readings = sum(body.count(b"\n") + 1 for body in bodies)
    async with FhirClient(server.base_url, server.token, clients) as client:
        client._headers.update(NDJSON)  # noqa: SLF001
        assert client._session is not None  # noqa: SLF001
        client._session.headers.update(NDJSON)  # noqa: SLF001
        queue = list(reversed(bodies))

        async def worker() -> None:
            while queue:
                await client.send("ingest", "POST", "Observation/$ingest", queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "readings": readings,
        "requests": len(bodies),
        "seconds": seconds,
        "latency": client.latencies.summary("ingest"),
        "refusals": client.refusals.lines(),
    }


async def _bundles(server: BevanServer, patients: list[str], sets: int, clients: int) -> dict:
    """Send `sets` sets per patient, each as a transaction Bundle of its seven readings."""
    bodies = []
    for n in range(sets, 0, -1):
        for patient in patients:
            entries = [
                {"resource": r, "request": {"method": "POST", "url": "Observation"}}
                for r in reading_set(patient, _at(n), n)
            ]
            bodies.append(
                orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
            )
    async with FhirClient(server.base_url, server.token, clients) as client:
        queue = list(reversed(bodies))

        async def worker() -> None:
            while queue:
                await client.send("bundle", "POST", "", queue.pop(), label="POST /")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "readings": 7 * len(bodies),
        "requests": len(bodies),
        "seconds": seconds,
        "latency": client.latencies.summary("bundle"),
        "refusals": client.refusals.lines(),
    }


def raw_baseline(readings: int, per_transaction: int, path: Path) -> float:
    """Return readings/s written straight into one SQLite table (type, id, json), in
    transactions of per_transaction readings, as each request is one."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE resource (type TEXT, id TEXT, json TEXT, PRIMARY KEY (type, id))")
    patient = str(uuid.uuid4())
    rows = [
        ("Observation", str(uuid.uuid4()), orjson.dumps(r).decode())
        for n in range(readings // 7 + 1)
        for r in reading_set(patient, _at(n), n)
    ][:readings]
    started = time.perf_counter()
    for start in range(0, len(rows), per_transaction):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO resource VALUES (?, ?, ?)", rows[start : start + per_transaction]
        )
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return len(rows) / seconds


def overdue_cost(enrolled: int, scratch: Path, database: str | None) -> dict[str, float]:
    """Return the CPU seconds of one overdue look over `enrolled` more patients (each with
    an active plan and a recent score) in the record (the database given, else a SQLite
    file), and of reading the same plans and scores as JSON from a plain SQLite table."""
    from bevan.app import record_service
    from bevan.config import Settings
    from bevan.monitoring.overdue import look_for_overdue
    from bevan.store.migrate import upgrade
    from bevan.store.record_store import RecordStore

    url = database or f"sqlite:///{scratch / 'overdue.db'}"
    store = RecordStore.from_url(url)
    upgrade(store.engine)
    settings = Settings(data_dir=scratch, database_url=url, referential_integrity=False)
    service = record_service(settings, store)
    now = datetime.now(UTC)
    recent = (now - timedelta(hours=2)).isoformat(timespec="seconds")
    plans: list[tuple[str, Resource]] = []
    with service.writing() as session:
        for n in range(enrolled):
            patient = str(uuid.uuid4())
            plan = {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Patient/{patient}"},
                "period": {"start": (now - timedelta(days=3)).isoformat(timespec="seconds")},
                "activity": [
                    {
                        "detail": {
                            "status": "in-progress",
                            "scheduledTiming": {
                                "repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}
                            },
                        }
                    }
                ],
            }
            score = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": SNOMED, "code": "1104051000000101"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": recent,
                "valueQuantity": {"value": 1, "system": UCUM, "code": "{ScoreOf}"},
            }
            if n % 50 == 0:  # one in fifty has sent nothing for a day: overdue
                score["effectiveDateTime"] = (now - timedelta(days=1)).isoformat(timespec="seconds")
            service.create_in(session, "CarePlan", plan)
            service.create_in(session, "Observation", score)
            plans += [("CarePlan", plan), ("Observation", score)]
    store.analyse()
    look_for_overdue(service, now)  # the first look raises the Tasks
    started = time.process_time()
    look = look_for_overdue(service, now)  # a steady-state look: the cost every 5 minutes
    ours = time.process_time() - started
    store.close()

    db = sqlite3.connect(scratch / "plain.db")
    db.execute("CREATE TABLE resource (type TEXT, id TEXT, json TEXT)")
    db.executemany(
        "INSERT INTO resource VALUES (?, ?, ?)",
        [(t, r["id"], orjson.dumps(r).decode()) for t, r in plans],
    )
    db.commit()
    started = time.process_time()
    for (text,) in db.execute(
        "SELECT json FROM resource WHERE type IN ('CarePlan', 'Observation')"
    ):
        orjson.loads(text)
    base = time.process_time() - started
    db.close()
    return {"ours": ours, "baseline": base, "enrolled": look.enrolled, "overdue": look.overdue}


def run(options: RunOptions) -> ScenarioResult:
    quick = options.quick
    patients_count = options.patients or (100 if quick else 1_000)
    sets = 3 if quick else 10
    clients = options.clients or 4
    enrolled = 2_000 if quick else 20_000
    print(f"virtual-ward: {patients_count} patients, {sets} sets each ...", file=sys.stderr)
    with BevanServer(options.database, options.workers) as server:

        async def drive() -> tuple[dict, dict]:
            ids_a, body_a = patients_bundle(patients_count)
            ids_b, body_b = patients_bundle(patients_count)
            async with FhirClient(server.base_url, server.token, 1) as setup:
                for body in (body_a, body_b):
                    status, answer = await setup.send("setup", "POST", "", body)
                    assert status == 200, answer[:500]
            ingest = await _ingest(server, ids_a, sets, clients)
            bundles = await _bundles(server, ids_b, sets, max(clients, 8))
            return ingest, bundles

        ingest, bundles = run_event_loop(drive)
        server.check_alive()
        problems = server.log_problems()
    with tempfile.TemporaryDirectory(prefix="bevan-bench-ward-") as scratch:
        base_ingest = raw_baseline(ingest["readings"], SETS_PER_INGEST * 7, Path(scratch) / "a.db")
        base_bundles = raw_baseline(bundles["readings"], 7, Path(scratch) / "b.db")
        print(f"virtual-ward: overdue look over {enrolled:,} enrolled ...", file=sys.stderr)
        overdue = overdue_cost(enrolled, Path(scratch), options.database)
    ingest_rate = ingest["readings"] / ingest["seconds"]
    bundle_rate = bundles["readings"] / bundles["seconds"]
    # A database given may hold earlier runs' plans too: the look's cost is per plan seen.
    per_look_at_target = overdue["ours"] / max(overdue["enrolled"], 1) * TARGET_ENROLLED
    share = per_look_at_target / LOOK_EVERY_SECONDS
    figures = [
        Figure("readings/s scored via $ingest", rate(ingest_rate), rate(base_ingest),
               ratio(ingest_rate, base_ingest)),
        Figure("$ingest p50 / p95 / p99 ms (280 readings)", latency_cell(ingest["latency"]), ""),
        Figure("readings/s scored via one-set Bundles", rate(bundle_rate), rate(base_bundles),
               ratio(bundle_rate, base_bundles)),
        Figure("Bundle p50 / p95 / p99 ms", latency_cell(bundles["latency"]), ""),
        Figure(f"overdue look CPU s ({overdue['enrolled']:,} enrolled)", f"{overdue['ours']:.2f}",
               f"{overdue['baseline']:.2f}", ratio(overdue["ours"], overdue["baseline"])),
        Figure(f"overdue look share of a core at {TARGET_ENROLLED:,} enrolled, every "
               f"{LOOK_EVERY_SECONDS} s", f"{share:.1%}", ""),
        Figure("non-2xx answers", str(len(ingest["refusals"]) + len(bundles["refusals"])), "0"),
    ]  # fmt: skip
    return ScenarioResult(
        scenario="virtual-ward",
        title=(
            f"Virtual ward: {ingest['readings']:,} readings via $ingest, "
            f"{bundles['readings']:,} via one-set Bundles, {clients} clients"
        ),
        figures=figures,
        published="none comparable (NEWS2 scored on arrival is Bevan's own)",
        target=(
            ">= 10,000 readings/s via $ingest and >= 3,000 via one-set Bundles on 2 cores; "
            "overdue detection < 5 % of one core at 100,000 enrolled"
        ),
        settings={
            "patients": patients_count,
            "sets_per_patient": sets,
            "clients": clients,
            "workers": options.workers,
            "database": options.database or "sqlite (fresh file)",
            "enrolled_for_overdue": enrolled,
        },
        details={
            "ingest": {k: v for k, v in ingest.items() if k != "latency"},
            "bundles": {k: v for k, v in bundles.items() if k != "latency"},
            "overdue": overdue,
        },
        refusals=[*ingest["refusals"], *bundles["refusals"]],
        server_log_problems=problems,
        notes=[
            "Baselines: the same readings inserted as JSON rows into one plain SQLite table, "
            "one transaction per request's worth; the overdue baseline reads and parses the "
            "same plans and scores from a plain table. Overdue share = CPU of one look, "
            "scaled linearly to 100,000 enrolled, over a 5-minute interval."
        ],
    )
