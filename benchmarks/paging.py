"""Paging: how fast a client walks every page of a search, a history and a patient's
`$everything` by following next links, against reading the same pages' rows straight
from the SQLite file (the raw baseline), measured in one run.

Run: python -m benchmarks.paging [--quick] [--count N] [--rounds N]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.report import Figure, ScenarioResult
from benchmarks.server import BevanServer


def _observation(patient_id: str, n: int) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "valueQuantity": {"value": 60 + n % 40, "unit": "/min"},
    }


def _load(client: httpx.Client, resources: int) -> str:
    """Return the id of a Patient with resources Observations and as many versions."""
    made = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Page"}]})
    made.raise_for_status()
    patient = made.json()
    for n in range(resources):
        client.post("/Observation", json=_observation(patient["id"], n)).raise_for_status()
        patient["name"][0]["given"] = [f"V{n}"]
        client.put(f"/Patient/{patient['id']}", json=patient).raise_for_status()
    return str(patient["id"])


def _walk(client: httpx.Client, url: str) -> int:
    """Return how many pages following url's next links took."""
    pages = 0
    following: str | None = url
    while following is not None:
        answer = client.get(following)
        answer.raise_for_status()
        pages += 1
        links = {link["relation"]: link["url"] for link in answer.json().get("link", [])}
        following = links.get("next")
    return pages


def _raw_walk(database: Path, sql: str, key: str, count: int) -> Callable[[], int]:
    """Return a walk over sql's rows count at a time, keyed on its first column (the
    baseline: the same pages read with the standard library's sqlite3)."""

    def walk() -> int:
        with sqlite3.connect(database) as connection:
            pages, after = 0, None
            while True:
                rows = connection.execute(sql, {"key": key, "after": after, "n": count}).fetchall()
                pages += 1
                if len(rows) < count:
                    return pages
                after = rows[-1][0]

    return walk


def _rate(walk: Callable[[], int], rounds: int) -> float:
    started = time.perf_counter()
    pages = sum(walk() for _ in range(rounds))
    return pages / (time.perf_counter() - started)


def run(resources: int, count: int, rounds: int) -> ScenarioResult:
    figures: list[Figure] = []
    with BevanServer() as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
            patient_id = _load(client, resources)
            database = server._data_dir / "bevan.db"
            walks = {
                "search": (
                    f"/Observation?subject=Patient/{patient_id}&_count={count}",
                    "SELECT r.rid, v.content FROM resource r JOIN index_reference x ON x.rid = r.rid "
                    "JOIN resource_version v ON v.seq = r.seq "
                    "WHERE x.resource_type = 'Observation' AND x.param = 'subject' "
                    "AND x.target_id = :key "
                    "AND (:after IS NULL OR r.rid > :after) ORDER BY r.rid LIMIT :n",
                ),
                "history": (
                    f"/Patient/{patient_id}/_history?_count={count}",
                    "SELECT v.seq, v.content FROM resource_version v "
                    "WHERE v.resource_type = 'Patient' AND v.id = :key "
                    "AND (:after IS NULL OR v.seq < :after) ORDER BY v.seq DESC LIMIT :n",
                ),
                "$everything": (
                    f"/Patient/{patient_id}/$everything?_count={count}",
                    "SELECT r.rid, v.content FROM resource r JOIN index_reference x ON x.rid = r.rid "
                    "JOIN resource_version v ON v.seq = r.seq "
                    "WHERE x.target_id = :key AND (:after IS NULL OR r.rid > :after) "
                    "ORDER BY r.rid LIMIT :n",
                ),
            }
            for name, (url, sql) in walks.items():
                ours = _rate(lambda url=url: _walk(client, url), rounds)  # type: ignore[misc]
                raw = _rate(_raw_walk(database, sql, patient_id, count), rounds)
                figures.append(
                    Figure(f"{name} pages/s", f"{ours:,.0f}", f"{raw:,.0f} (raw)", ours / raw)
                )
                print(f"{name}: {ours:,.0f} pages/s, raw {raw:,.0f}", file=sys.stderr, flush=True)
    return ScenarioResult(
        scenario="paging",
        title=f"Paging: every page of {resources} resources, {count} a page, {rounds} walks each",
        figures=figures,
        published="no published figure; the target is a ratio",
        target="pages/s through the API against the same rows read raw",
        settings={"resources": resources, "count": count, "rounds": rounds},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paging", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 resources, 3 walks each")
    parser.add_argument("--resources", type=int, help="Observations and versions (default 1,000)")
    parser.add_argument("--count", type=int, default=50, help="resources a page (default 50)")
    parser.add_argument("--rounds", type=int, help="walks of each kind (default 10)")
    args = parser.parse_args(argv)
    resources = args.resources or (200 if args.quick else 1000)
    rounds = args.rounds or (3 if args.quick else 10)
    result = run(resources, args.count, rounds)
    print(result.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
