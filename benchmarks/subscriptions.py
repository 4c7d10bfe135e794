"""Subscriptions: how long after a write is committed its rest-hook subscriber is told,
while the server takes writes at a steady rate.

A system account subscribes `Task?priority=stat` with the full resource to a receiver in
this process (an aiohttp server on a free port, allowed by BEVAN_SUBSCRIPTION_ENDPOINTS).
Writes are sent at a fixed rate (`--rate`, default 1,000 resources/s, open loop: each at its
planned moment, whether or not earlier ones have been answered): vital-sign Observations,
with every tenth write a stat Task. For each Task, the notification latency is the time
from its 201 answer reaching the client (the commit came before it) to its PUT reaching
the receiver, and the time from sending the write to the PUT.

Baseline (same run): the write latency alone, send to 201 answer, of the same writes.
`ratio` = notification latency / write latency at each percentile.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from benchmarks.client import FhirClient, run_event_loop
from benchmarks.measure import Latencies
from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.server import BevanServer, free_port

TASK_EVERY = 10  # one write in this many is a stat Task, the rest readings
SETTLE_SECONDS = 3.0  # after the last write, how long late notifications are waited for


def _reading(patient: str, n: int) -> dict[str, Any]:
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
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-12-03T09:30:00+00:00",
        "valueQuantity": {
            "value": 60 + n % 60,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _task(patient: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "stat",
        "for": {"reference": f"Patient/{patient}"},
        "description": f"NEWS2 7 (write {n}): emergency assessment",
    }


@dataclass
class Run:
    writes: Latencies = field(default_factory=Latencies)
    notified: Latencies = field(default_factory=Latencies)
    answered_at: dict[str, float] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    arrived_at: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    seconds: float = 0.0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)


async def _receiver(run: Run, port: int) -> web.AppRunner:
    async def hook(request: web.Request) -> web.Response:
        if request.method == "PUT":
            run.arrived_at[request.match_info["id"]] = time.perf_counter()
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    app.router.add_put("/hooks/Task/{id}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _drive(base_url: str, token: str, port: int, rate_per_s: float, seconds: float) -> Run:
    run = Run()
    runner = await _receiver(run, port)
    try:
        async with FhirClient(base_url, token, connections=128) as fhir:
            status, body = await fhir.send(
                "setup",
                "POST",
                "Patient",
                orjson.dumps({"resourceType": "Patient", "name": [{"family": "Ward"}]}),
            )
            assert status == 201, body
            patient = orjson.loads(body)["id"]
            subscription = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "benchmark: stat escalations",
                "criteria": "Task?priority=stat",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": f"http://127.0.0.1:{port}/hooks",
                    "payload": "application/fhir+json",
                },
            }
            status, body = await fhir.send(
                "setup", "POST", "Subscription", orjson.dumps(subscription)
            )
            assert status == 201, body
            id = orjson.loads(body)["id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status, body = await fhir.send("setup", "GET", f"Subscription/{id}")
                if orjson.loads(body)["status"] == "active":
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the subscription did not become active: {body!r}")

            async def write(n: int) -> None:
                is_task = n % TASK_EVERY == 0
                resource = _task(patient, n) if is_task else _reading(patient, n)
                kind = "Task" if is_task else "Observation"
                started = time.perf_counter()
                status, body = await fhir.send("write", "POST", kind, orjson.dumps(resource))
                answered = time.perf_counter()
                if status != 201:
                    run.refused += 1
                    return
                run.writes.add("write", answered - started)
                if is_task:
                    task_id = orjson.loads(body)["id"]
                    run.sent_at[task_id] = started
                    run.answered_at[task_id] = answered

            pending: set[asyncio.Task[None]] = set()
            started = time.perf_counter()
            total = int(rate_per_s * seconds)
            for n in range(total):
                planned = started + n / rate_per_s
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(write(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
            run.seconds = time.perf_counter() - started
            run.sent = total
            run.refusals = fhir.refusals.lines()
            await asyncio.sleep(SETTLE_SECONDS)
    finally:
        await runner.cleanup()
    for task_id, answered in run.answered_at.items():
        arrived = run.arrived_at.get(task_id)
        if arrived is not None:
            run.notified.add("after commit", max(0.0, arrived - answered))
            run.notified.add("after send", arrived - run.sent_at[task_id])
    return run


def run(options: RunOptions) -> ScenarioResult:
    """Run the subscription latency scenario; return its result."""
    seconds = options.duration or (10.0 if options.quick else 60.0)
    writes_per_second = options.rate or 1000.0
    port = free_port()
    os.environ["BEVAN_SUBSCRIPTION_ENDPOINTS"] = f"http://127.0.0.1:{port}/hooks"
    print(
        f"subscriptions: starting a Bevan server ({options.workers} worker(s)) ...",
        file=sys.stderr,
    )
    with BevanServer(options.database, options.workers) as server:
        print(
            f"subscriptions: {writes_per_second:,.0f} writes/s for {seconds:.0f} s, "
            f"one in {TASK_EVERY} a stat Task",
            file=sys.stderr,
        )
        result = run_event_loop(
            lambda: _drive(server.base_url, server.token, port, writes_per_second, seconds)
        )
        server.check_alive()
        problems = server.log_problems()
    write = result.writes.summary("write")
    after_commit = result.notified.summary("after commit")
    after_send = result.notified.summary("after send")
    tasks = len(result.answered_at)
    achieved = write.count / result.seconds if result.seconds else 0.0
    figures = [
        Figure("writes/s answered (planned)", rate(achieved), rate(writes_per_second)),
        Figure(
            "notification p50 ms, commit to delivery",
            f"{after_commit.p50_ms:.1f}",
            f"{write.p50_ms:.1f} (write p50)",
            ratio(after_commit.p50_ms, write.p50_ms),
        ),
        Figure(
            "notification p99 ms, commit to delivery",
            f"{after_commit.p99_ms:.1f}",
            f"{write.p99_ms:.1f} (write p99)",
            ratio(after_commit.p99_ms, write.p99_ms),
        ),
        Figure("notification p50 / p95 / p99 ms, commit", latency_cell(after_commit), ""),
        Figure("notification p50 / p95 / p99 ms, send", latency_cell(after_send), ""),
        Figure("write p50 / p95 / p99 ms", latency_cell(write), ""),
        Figure("Tasks notified / written", f"{after_commit.count:,} / {tasks:,}", ""),
        Figure("non-2xx writes", str(result.refused), "0"),
    ]
    return ScenarioResult(
        scenario="subscriptions",
        title=f"Subscriptions: rest-hook latency at {writes_per_second:,.0f} writes/s, {seconds:.0f} s",
        figures=figures,
        published="none (the published benchmark has no subscription scenario)",
        target="notification p99 under 1 s after the triggering commit",
        settings={
            "writes_per_second": writes_per_second,
            "seconds": seconds,
            "task_every": TASK_EVERY,
            "workers": options.workers,
            "database": options.database or "sqlite (fresh file)",
        },
        details={
            "write": write.as_dict(),
            "notification_after_commit": after_commit.as_dict(),
            "notification_after_send": after_send.as_dict(),
            "tasks_written": tasks,
            "writes_sent": result.sent,
        },
        refusals=result.refusals,
        server_log_problems=problems,
    )
