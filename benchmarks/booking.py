"""Booking: a race for a few slots, bookings per second on a large free diary, and
free-slot search on a larger one, each beside a plain-SQLite baseline in the same run.

1. **Race.** 200 clients at once book 10 slots (20 to a slot): there must be exactly
   10 bookings (201), 190 clean refusals (409 with an OperationOutcome) and no errors.
2. **Bookings/s.** The diary is filled to 100,000 free slots (5,000 quick) through
   Schedule/$generate-slots; then `--clients` clients (50) book distinct slots for
   `--duration` seconds (60; 10 quick). Baseline: the same number of bookings directly
   in a SQLite file, each its own transaction (BEGIN IMMEDIATE; read the slot's status;
   if free mark it busy and insert the appointment; COMMIT).
3. **Free-slot search.** The diary grows to 1,000,000 slots (20,000 quick), one
   Schedule (and Location) per 4,845 slots; 20 clients search
   `Slot?schedule.actor=Location/<one>&status=free&service-type=...&start=ge<day>&
   start=le<day + 13>&_count=20`. Baseline: the same searches in SQLite over one table
   `slot(schedule, status, service, start, json)` with an index on
   (schedule, status, start), parsing each row with orjson.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.client import FhirClient, StopLoad, report_progress, run_event_loop
from benchmarks.measure import Latencies, LatencySummary
from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.server import BevanServer

RACERS, RACED_SLOTS = 200, 10
SNOMED = "http://snomed.info/sct"
GP = {"coding": [{"system": SNOMED, "code": "394814009", "display": "General practice"}]}
# One template call: 17 days of 5-minute slots round the clock, every day of the week.
TEMPLATE_DAYS, SLOT_MINUTES = 17, 5
SLOTS_PER_SCHEDULE = TEMPLATE_DAYS * (24 * 60 - 15) // SLOT_MINUTES  # 4,845
SEARCH_DAYS = 14
RUN = uuid.uuid4().hex[:8]


@dataclass
class Diary:
    """What the benchmark has made: schedules (id, location id, first day) and slots."""

    first_day: date
    schedules: list[tuple[str, str]]
    free_slots: list[dict[str, Any]]

    @property
    def slots(self) -> int:
        return len(self.schedules) * SLOTS_PER_SCHEDULE


async def _put(client: FhirClient, resource: dict[str, Any]) -> None:
    path = f"{resource['resourceType']}/{resource['id']}"
    status, payload = await client.send("setup", "PUT", path, orjson.dumps(resource))
    if status not in (200, 201):
        raise SystemExit(f"booking: PUT {path} answered {status}: {payload[:300]!r}")


async def _grow(client: FhirClient, diary: Diary, slots: int, keep: int) -> None:
    """Add schedules until the diary holds at least slots; keep up to keep free slots."""
    while diary.slots < slots:
        n = len(diary.schedules)
        # Named for this run: a PostgreSQL database is not emptied between runs.
        location, schedule = f"bench-{RUN}-clinic-{n}", f"bench-{RUN}-diary-{n}"
        await _put(client, {"resourceType": "Location", "id": location, "name": f"Room {n}"})
        await _put(
            client,
            {
                "resourceType": "Schedule",
                "id": schedule,
                "active": True,
                "serviceType": [GP],
                "actor": [{"reference": f"Location/{location}"}],
            },
        )
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDate": diary.first_day.isoformat()},
                {"name": "days", "valueInteger": TEMPLATE_DAYS},
                {"name": "session", "valueString": "00:00-23:45"},
                {"name": "minutes", "valueInteger": SLOT_MINUTES},
                {"name": "weekdays", "valueString": "mon,tue,wed,thu,fri,sat,sun"},
            ],
        }
        status, payload = await client.send(
            "generate", "POST", f"Schedule/{schedule}/$generate-slots", orjson.dumps(parameters)
        )
        if status != 201:
            raise SystemExit(f"booking: $generate-slots answered {status}: {payload[:300]!r}")
        made = orjson.loads(payload)
        diary.schedules.append((schedule, location))
        if len(diary.free_slots) < keep:
            diary.free_slots += [e["resource"] for e in made.get("entry", [])]
        print(f"booking: diary holds {diary.slots:,} slots", file=sys.stderr, flush=True)


def _appointment(slot: dict[str, Any], location: str) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "serviceType": [GP],
            "slot": [{"reference": f"Slot/{slot['id']}"}],
            "start": slot["start"],
            "end": slot["end"],
            "participant": [
                {"actor": {"reference": "Patient/bench-patient"}, "status": "accepted"},
                {"actor": {"reference": f"Location/{location}"}, "status": "accepted"},
            ],
        }
    )


@dataclass(frozen=True)
class RaceResult:
    booked: int
    conflicts: int
    errors: int
    outcomes_clean: bool
    slots_busy: int


async def _race(client: FhirClient, diary: Diary) -> RaceResult:
    raced = [diary.free_slots.pop() for _ in range(RACED_SLOTS)]
    location = diary.schedules[0][1]
    bodies = [_appointment(raced[n % RACED_SLOTS], location) for n in range(RACERS)]
    answers = await asyncio.gather(
        *(client.send("race", "POST", "Appointment", body) for body in bodies)
    )
    statuses = [status for status, _ in answers]
    clean = all(
        orjson.loads(payload).get("resourceType") == "OperationOutcome"
        for status, payload in answers
        if status == 409
    )
    busy = 0
    for slot in raced:
        status, payload = await client.send("check", "GET", f"Slot/{slot['id']}")
        busy += status == 200 and orjson.loads(payload)["status"] == "busy"
    return RaceResult(
        statuses.count(201),
        statuses.count(409),
        len(statuses) - statuses.count(201) - statuses.count(409),
        clean,
        busy,
    )


async def _book(
    client: FhirClient, diary: Diary, clients: int, duration: float
) -> tuple[Latencies, float, int]:
    client.latencies = Latencies()
    location = diary.schedules[0][1]
    queue = list(diary.free_slots)
    random.Random(7).shuffle(queue)
    refused = 0

    async def one_client() -> None:
        nonlocal refused
        try:
            while queue:
                slot = queue.pop()
                status, _ = await client.send(
                    "book", "POST", "Appointment", _appointment(slot, location)
                )
                refused += status != 201
        except StopLoad:
            pass

    started = time.perf_counter()
    client.stop_at = started + duration
    ticker = asyncio.create_task(
        report_progress(
            lambda elapsed: (
                f"booking: {client.latencies.count('book'):,} bookings in {elapsed:.0f} s"
            ),
            5.0,
            started,
        )
    )
    await asyncio.gather(*(one_client() for _ in range(clients)))
    ticker.cancel()
    client.stop_at = None
    return client.latencies, time.perf_counter() - started, refused


def _search_path(diary: Diary, rng: random.Random) -> str:
    _, location = rng.choice(diary.schedules)
    first = diary.first_day + timedelta(days=rng.randint(0, TEMPLATE_DAYS - SEARCH_DAYS))
    last = first + timedelta(days=SEARCH_DAYS - 1)
    return (
        f"Slot?schedule.actor=Location/{location}&status=free"
        f"&service-type={SNOMED}|394814009&start=ge{first}&start=le{last}&_count=20"
    )


async def _search(
    client: FhirClient, diary: Diary, clients: int, duration: float
) -> tuple[LatencySummary, float]:
    client.latencies = Latencies()
    rng = random.Random(11)
    started = time.perf_counter()
    client.stop_at = started + duration

    async def one_client() -> None:
        try:
            while True:
                await client.send("search", "GET", _search_path(diary, rng))
        except StopLoad:
            pass

    await asyncio.gather(*(one_client() for _ in range(clients)))
    client.stop_at = None
    seconds = time.perf_counter() - started
    return client.latencies.summary("search"), client.latencies.count("search") / seconds


@dataclass(frozen=True)
class LoadRun:
    race: RaceResult
    booking: LatencySummary
    bookings_per_second: float
    booking_refused: int
    booking_diary: int
    search: LatencySummary
    searches_per_second: float
    search_diary: int
    refusals: list[str]


async def _drive(base_url: str, token: str, options: RunOptions) -> LoadRun:
    quick = options.quick
    booking_diary, search_diary = (5_000, 20_000) if quick else (100_000, 1_000_000)
    duration = options.duration or (10.0 if quick else 60.0)
    clients = options.clients or 50
    monday = date.today() + timedelta(days=7 - date.today().weekday())
    diary = Diary(monday, [], [])
    async with FhirClient(base_url, token, connections=RACERS) as client:
        await _put(
            client,
            {"resourceType": "Patient", "id": "bench-patient", "name": [{"family": "Bench"}]},
        )
        await _grow(client, diary, booking_diary, keep=booking_diary)
        print(f"booking: {RACERS} clients race for {RACED_SLOTS} slots", file=sys.stderr)
        race = await _race(client, diary)
        races = client.refusals.lines()
        print(f"booking: {clients} clients book for {duration:.0f} s", file=sys.stderr)
        latencies, seconds, refused = await _book(client, diary, clients, duration)
        booking = latencies.summary("book")
        await _grow(client, diary, search_diary, keep=0)
        print(f"booking: 20 clients search free slots for {duration:.0f} s", file=sys.stderr)
        search, searches = await _search(client, diary, 20, duration)
        # The race's 409s are expected (counted in the race figures); any other refusal is listed.
        lines = [line for line in client.refusals.lines() if line not in races] + races[:1]
    return LoadRun(
        race,
        booking,
        booking.count / seconds,
        refused,
        booking_diary,
        search,
        searches,
        diary.slots,
        lines,
    )


def sqlite_baseline(bookings: int, slots: int, searches: int, path: Path) -> dict[str, Any]:
    """Return the same bookings and free-slot searches done directly in a SQLite file."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE slot (id TEXT PRIMARY KEY, schedule TEXT, status TEXT, service TEXT,"
        " start TEXT, json TEXT)"
    )
    db.execute("CREATE INDEX slot_free ON slot (schedule, status, start)")
    db.execute("CREATE TABLE appointment (id TEXT PRIMARY KEY, json TEXT)")
    first = datetime.combine(date.today(), datetime.min.time(), UTC)
    schedules = max(1, slots // SLOTS_PER_SCHEDULE)
    db.execute("BEGIN")
    for n in range(slots):
        start = first + timedelta(minutes=SLOT_MINUTES * (n % SLOTS_PER_SCHEDULE))
        body = {
            "resourceType": "Slot",
            "id": f"s{n}",
            "status": "free",
            "serviceType": [GP],
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=SLOT_MINUTES)).isoformat(),
            "schedule": {"reference": f"Schedule/d{n // SLOTS_PER_SCHEDULE}"},
        }
        db.execute(
            "INSERT INTO slot VALUES (?, ?, 'free', '394814009', ?, ?)",
            (body["id"], f"d{n // SLOTS_PER_SCHEDULE}", body["start"], orjson.dumps(body).decode()),
        )
    db.execute("COMMIT")
    clock = time.perf_counter
    booking = Latencies()
    for n in range(bookings):
        started = clock()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT status, json FROM slot WHERE id = ?", (f"s{n}",)).fetchone()
        if row[0] == "free":
            slot = orjson.loads(row[1])
            slot["status"] = "busy"
            db.execute(
                "UPDATE slot SET status = 'busy', json = ? WHERE id = ?",
                (orjson.dumps(slot).decode(), f"s{n}"),
            )
            appointment = {"resourceType": "Appointment", "status": "booked", "slot": [slot["id"]]}
            db.execute(
                "INSERT INTO appointment VALUES (?, ?)",
                (str(uuid.uuid4()), orjson.dumps(appointment).decode()),
            )
        db.execute("COMMIT")
        booking.add("book", clock() - started)
    search = Latencies()
    rng = random.Random(11)
    for _ in range(searches):
        schedule = f"d{rng.randrange(schedules)}"
        low = first + timedelta(days=rng.randint(0, TEMPLATE_DAYS - SEARCH_DAYS))
        high = low + timedelta(days=SEARCH_DAYS)
        started = clock()
        rows = db.execute(
            "SELECT json FROM slot WHERE schedule = ? AND status = 'free' AND service = ?"
            " AND start >= ? AND start < ? ORDER BY start LIMIT 20",
            (schedule, "394814009", low.isoformat(), high.isoformat()),
        ).fetchall()
        for row in rows:
            orjson.loads(row[0])
        search.add("search", clock() - started)
    db.close()
    return {"booking": booking, "search": search}


def run(options: RunOptions) -> ScenarioResult:
    """Run the booking scenario against a fresh server and the SQLite baseline."""
    print(f"booking: starting a Bevan server ({options.workers} worker(s)) ...", file=sys.stderr)
    with BevanServer(options.database, options.workers) as server:
        load = run_event_loop(lambda: _drive(server.base_url, server.token, options))
        server.check_alive()
        problems = server.log_problems()
    bookings = max(1, load.booking.count)
    baseline_slots = min(load.search_diary, 200_000)
    searches = max(1, min(load.search.count, 20_000))
    print(f"booking: baseline, {bookings:,} bookings directly in SQLite ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bevan-bench-booking-") as scratch:
        base = sqlite_baseline(
            bookings, max(baseline_slots, bookings), searches, Path(scratch) / "base.db"
        )
    base_booking, base_search = base["booking"], base["search"]
    base_booking_rate = base_booking.count("book") / base_booking.seconds()
    base_search_rate = base_search.count("search") / base_search.seconds()
    race = load.race
    figures = [
        Figure(
            f"race: {RACERS} clients for {RACED_SLOTS} slots (201 / 409 / other)",
            f"{race.booked} / {race.conflicts} / {race.errors}",
            f"{RACED_SLOTS} / {RACERS - RACED_SLOTS} / 0",
        ),
        Figure(
            "race: slots busy afterwards; 409s with an OperationOutcome",
            f"{race.slots_busy}; {'all' if race.outcomes_clean else 'NOT all'}",
            f"{RACED_SLOTS}; all",
        ),
        Figure(
            f"bookings/s ({load.booking_diary:,} free slots)",
            rate(load.bookings_per_second),
            rate(base_booking_rate),
            ratio(load.bookings_per_second, base_booking_rate),
        ),
        Figure(
            "booking p50 / p95 / p99 ms",
            latency_cell(load.booking),
            latency_cell(base_booking.summary("book")),
        ),
        Figure("bookings refused (should be 0)", str(load.booking_refused), "0"),
        Figure(
            f"free-slot search req/s ({load.search_diary:,} slots)",
            rate(load.searches_per_second),
            rate(base_search_rate),
            ratio(load.searches_per_second, base_search_rate),
        ),
        Figure(
            "free-slot search p50 / p95 / p99 ms",
            latency_cell(load.search),
            latency_cell(base_search.summary("search")),
            ratio(load.search.p95_ms, base_search.summary("search").p95_ms),
        ),
    ]
    notes = []
    if baseline_slots < load.search_diary:
        notes.append(f"The search baseline's table holds {baseline_slots:,} slots.")
    return ScenarioResult(
        scenario="booking",
        title=(
            f"Booking: race, bookings on {load.booking_diary:,} free slots, "
            f"search on {load.search_diary:,}"
        ),
        figures=figures,
        published="none: no published FHIR server benchmark books appointments",
        target=(
            "race exactly 10 / 190 / 0; at least 500 bookings/s on 2 cores; free-slot "
            "search p95 under 50 ms on 1,000,000 slots"
        ),
        settings={
            "clients": options.clients or 50,
            "duration": options.duration or (10.0 if options.quick else 60.0),
            "workers": options.workers,
            "database": options.database or "sqlite (fresh file)",
        },
        details={
            "race": race.__dict__,
            "booking": {**load.booking.as_dict(), "per_second": load.bookings_per_second},
            "booking_baseline": {
                **base_booking.summary("book").as_dict(),
                "per_second": base_booking_rate,
            },
            "search": {**load.search.as_dict(), "per_second": load.searches_per_second},
            "search_baseline": {
                **base_search.summary("search").as_dict(),
                "per_second": base_search_rate,
            },
        },
        refusals=load.refusals,
        server_log_problems=problems,
        notes=notes,
    )
