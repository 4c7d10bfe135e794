"""Load: `bevan load` of `bevan synth` NDJSON into an empty database, then a second
population into the filled one, against Python inserting the same lines into one table.

The baseline (same run) parses every line of the first population with orjson and
inserts (type, id, line) into one SQLite table with one unique index on (type, id), in
one transaction: the least any load of these files can do. Bevan's load validates,
versions, indexes every search parameter, checks references and NHS numbers, and
audits the load.
"""

from __future__ import annotations

import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from benchmarks.options import CACHE_DIR, RunOptions
from benchmarks.report import Figure, ScenarioResult, rate, ratio

TENTHS = 10


def _say(text: str) -> None:
    print(f"load: {text}", file=sys.stderr, flush=True)


def ndjson_population(patients: int, seed: int) -> Path:
    """Return a directory of `bevan synth --ndjson` files, generated once per seed and size."""
    out = CACHE_DIR / f"load-ndjson-{seed}-{patients}"
    if out.is_dir():
        return out
    from bevan.synth import write_population

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _say(f"generating {patients:,} patients (seed {seed}) ...")
    write_population(patients, seed, partial, ndjson=True)
    partial.rename(out)
    return out


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.ndjson"))


def baseline(directory: Path) -> tuple[int, float, float]:
    """Return (resources, seconds, CPU seconds) for orjson parsing and one-table inserts
    of every line."""
    with tempfile.TemporaryDirectory(prefix="bevan-load-baseline-") as scratch:
        connection = sqlite3.connect(Path(scratch) / "baseline.db", isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE resource (type TEXT, id TEXT, json TEXT)")
        connection.execute("CREATE UNIQUE INDEX resource_key ON resource (type, id)")
        started = time.perf_counter()
        cpu = time.process_time()
        count = 0
        connection.execute("BEGIN")
        for path in _files(directory):
            with path.open("rb") as lines:
                for line in lines:
                    if not line.strip():
                        continue
                    resource = orjson.loads(line)
                    connection.execute(
                        "INSERT INTO resource VALUES (?, ?, ?)",
                        (resource["resourceType"], resource["id"], line.decode()),
                    )
                    count += 1
        connection.execute("COMMIT")
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        connection.close()
    return count, seconds, cpu


class Timeline:
    """The time at which a load passed each tenth of its resources."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = 0
        self.started = time.perf_counter()
        self.marks: list[float] = []

    def __call__(self, count: int) -> None:
        self.done += count
        while (
            len(self.marks) < TENTHS and self.done >= self.expected * (len(self.marks) + 1) / TENTHS
        ):
            self.marks.append(time.perf_counter() - self.started)

    def tenth_rates(self) -> list[float]:
        step = self.expected / TENTHS
        rates, last = [], 0.0
        for mark in self.marks:
            rates.append(step / (mark - last) if mark > last else 0.0)
            last = mark
        return rates


def _cpu_seconds() -> float:
    """Return the CPU time of this process and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load(url: str, directory: Path, label: str) -> tuple[int, float, list[float], int, float]:
    """Return (stored, seconds, rate in each tenth, refused, CPU seconds of this process
    and its workers) of one `bevan load`."""
    from bevan.app import record_service
    from bevan.config import Settings
    from bevan.records.loader import load_files
    from bevan.store.migrate import upgrade
    from bevan.store.record_store import RecordStore

    expected = sum(1 for path in _files(directory) for line in path.open("rb") if line.strip())
    store = RecordStore.from_url(url)
    upgrade(store.engine)
    # The service `bevan load` uses, with the write rules of the other services.
    service = record_service(Settings(database_url=url), store)
    timeline = Timeline(expected)
    _say(f"{label}: loading {expected:,} resources ...")
    started = time.perf_counter()
    cpu = _cpu_seconds()
    report = load_files(service, _files(directory), timeline)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    store.close()
    for line in report.refused[:10]:
        _say(f"{label}: refused {line}")
    _say(f"{label}: {report.total:,} stored in {seconds:,.1f} s ({report.total / seconds:,.0f}/s)")
    return report.total, seconds, timeline.tenth_rates(), len(report.refused), cpu


def _fresh_postgres_schema(url: str) -> str:
    from sqlalchemy import text

    from bevan.store.engine import make_engine

    schema = "bevan_load_bench"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _engine_figures(
    engine: str,
    url_for: Callable[[], str],
    first: Path,
    second: Path,
    base_rate: float,
    base_cpu: float,
    figures: list[Figure],
    details: dict[str, object],
) -> None:
    url = url_for()
    stored1, seconds1, tenths1, refused1, cpu1 = _load(url, first, f"{engine} first")
    stored2, seconds2, tenths2, refused2, cpu2 = _load(url, second, f"{engine} second")
    rate1, rate2 = stored1 / seconds1, stored2 / seconds2
    figures.append(
        Figure(
            f"{engine}: first population, resources/s",
            rate(rate1),
            rate(base_rate),
            ratio(rate1, base_rate),
        )
    )
    figures.append(
        Figure(
            f"{engine}: second population (filled db), resources/s",
            rate(rate2),
            rate(base_rate),
            ratio(rate2, base_rate),
        )
    )
    figures.append(
        Figure(f"{engine}: second / first", f"{rate2 / rate1:.2f}", "1.00", rate2 / rate1)
    )
    # CPU per resource (this process and its workers; not PostgreSQL's server): on a
    # shared machine the wall-clock rates move with the neighbours, this does less.
    per = cpu1 / stored1 * 1e6
    figures.append(
        Figure(
            f"{engine}: first, CPU microseconds a resource",
            f"{per:,.0f}",
            f"{base_cpu:,.0f}",
            base_cpu / per if per else None,
        )
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures.append(
        Figure(
            f"{engine}: peak memory so far, MB (loader / largest worker)",
            f"{own:,.0f} / {workers:,.0f}",
            "",
        )
    )
    for label, tenths in (("first", tenths1), ("second", tenths2)):
        figures.append(
            Figure(f"{engine}: {label}, rate in each tenth", " ".join(rate(r) for r in tenths), "")
        )
    details[engine] = {
        "first": {
            "stored": stored1,
            "seconds": seconds1,
            "tenths": tenths1,
            "refused": refused1,
            "cpu_seconds": cpu1,
        },
        "second": {
            "stored": stored2,
            "seconds": seconds2,
            "tenths": tenths2,
            "refused": refused2,
            "cpu_seconds": cpu2,
        },
    }


def run(options: RunOptions) -> ScenarioResult:
    patients = (
        options.patients if options.patients is not None else (2_000 if options.quick else 20_000)
    )
    first = ndjson_population(patients, options.seed)
    second = ndjson_population(patients, options.seed + 1)
    count, base_seconds, base_cpu_seconds = baseline(first)
    base_rate = count / base_seconds
    base_cpu = base_cpu_seconds / count * 1e6
    _say(f"baseline: {count:,} lines in {base_seconds:,.1f} s ({base_rate:,.0f}/s)")
    figures: list[Figure] = [Figure("baseline resources/s", "", rate(base_rate))]
    details: dict[str, object] = {"baseline": {"resources": count, "seconds": base_seconds}}
    with tempfile.TemporaryDirectory(prefix="bevan-load-") as scratch:
        _engine_figures(
            "SQLite",
            lambda: f"sqlite:///{Path(scratch) / 'bevan.db'}",
            first,
            second,
            base_rate,
            base_cpu,
            figures,
            details,
        )
    if options.database and options.database.startswith("postgresql"):
        database = options.database
        _engine_figures(
            "PostgreSQL",
            lambda: _fresh_postgres_schema(database),
            first,
            second,
            base_rate,
            base_cpu,
            figures,
            details,
        )
    return ScenarioResult(
        scenario="load",
        title=f"bevan load: {patients:,} synthetic patients twice ({count:,} resources each)",
        figures=figures,
        published="a commercial server's published bulk load: 20,000 resources/s on 16 cores",
        target="at least 0.4 of the baseline on SQLite, 0.25 on PostgreSQL; "
        "second population at least 0.75 of the first",
        settings={"patients": patients, "seed": options.seed, "database": options.database},
        details=details,
    )
