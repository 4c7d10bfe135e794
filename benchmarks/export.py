"""Bulk export: a system $export of a `bevan synth` population, over HTTP, to NDJSON.

Ours: kick off `GET /fhir/$export` (Prefer: respond-async), poll the status URL until the
manifest comes, then download every file; resources/s to the manifest, and to the last
byte downloaded. Baseline, same run, same data: the current version of every resource
read from the version table's content column with Python's sqlite3 and written to one
file per type, as a bare minimum of what an export must do.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, rate, ratio
from benchmarks.search_data import ndjson_directory, resource_counts, sqlite_data_dir
from benchmarks.server import BevanServer

POLL_SECONDS = 0.05
CHUNK = 1024 * 1024


def _say(text: str) -> None:
    print(f"export: {text}", file=sys.stderr, flush=True)


def _request(
    url: str, token: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> urllib.request.Request:
    return urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {token}", **(headers or {})}
    )


def http_export(base_url: str, token: str) -> dict[str, Any]:
    """Return the seconds to the manifest and to the last file downloaded, and counts."""
    started = time.perf_counter()
    kick_off = _request(
        f"{base_url}/$export",
        token,
        {"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    with urllib.request.urlopen(kick_off) as answer:
        if answer.status != 202:
            raise SystemExit(f"export: the kick-off answered {answer.status}")
        status_url = answer.headers["Content-Location"]
    polls = 0
    while True:
        with urllib.request.urlopen(_request(status_url, token)) as answer:
            polls += 1
            if answer.status == 200:
                manifest = orjson.loads(answer.read())
                break
        time.sleep(POLL_SECONDS)
    to_manifest = time.perf_counter() - started
    lines = size = 0
    for output in manifest["output"]:
        fetch = _request(output["url"], token, {"Accept": "application/fhir+ndjson"})
        with urllib.request.urlopen(fetch) as answer:
            while chunk := answer.read(CHUNK):
                size += len(chunk)
                lines += chunk.count(b"\n")
    downloaded = time.perf_counter() - started
    with urllib.request.urlopen(_request(status_url, token, method="DELETE")):
        pass
    counted = sum(o["count"] for o in manifest["output"])
    if lines != counted:
        raise SystemExit(f"export: the files hold {lines:,} lines, the manifest {counted:,}")
    return {
        "to_manifest": to_manifest,
        "downloaded": downloaded,
        "resources": counted,
        "bytes": size,
        "polls": polls,
        "files": len(manifest["output"]),
    }


def sqlite_baseline(database: Path, out_dir: Path) -> tuple[int, float]:
    """Return (resources, seconds) writing each current version's content, by type, to
    Type.ndjson straight from the version table."""
    started = time.perf_counter()
    db = sqlite3.connect(database)
    types = [row[0] for row in db.execute("SELECT DISTINCT resource_type FROM resource")]
    total = 0
    for resource_type in sorted(types):
        rows = db.execute(
            "SELECT v.content FROM resource r JOIN resource_version v ON v.seq = r.seq "
            "WHERE r.resource_type = ? AND NOT r.deleted ORDER BY r.rid",
            (resource_type,),
        )
        with (out_dir / f"{resource_type}.ndjson").open("wb") as out:
            for (content,) in rows:
                out.write(content.encode())
                out.write(b"\n")
                total += 1
    db.close()
    return total, time.perf_counter() - started


def run(options: RunOptions) -> ScenarioResult:
    """Export a loaded population over HTTP and beside the baseline; return the result."""
    patients = (
        options.patients if options.patients is not None else (400 if options.quick else 5000)
    )
    directory = ndjson_directory(patients, options.seed)
    expected = sum(resource_counts(directory).values())
    loaded = sqlite_data_dir(patients, options.seed, directory, expected)
    with tempfile.TemporaryDirectory(prefix="bevan-bench-export-") as scratch:
        # A copy: the export writes its files and job rows, and the loaded data is shared
        # with the search benchmark, which serves it as it is.
        data_dir = Path(scratch) / "data"
        shutil.copytree(loaded, data_dir)
        _say(f"{expected:,} resources; starting a Bevan server ...")
        with BevanServer(None, options.workers, data_dir=data_dir) as server:
            ours = http_export(server.base_url, server.token)
            server.check_alive()
            problems = server.log_problems()
        _say("baseline: the version table's content straight to files ...")
        out_dir = Path(scratch) / "baseline"
        out_dir.mkdir()
        base_resources, base_seconds = sqlite_baseline(data_dir / "bevan.db", out_dir)
    if ours["resources"] != base_resources:
        raise SystemExit(
            f"export: exported {ours['resources']:,} resources, the baseline {base_resources:,}"
        )
    base_rate = base_resources / base_seconds
    manifest_rate = ours["resources"] / ours["to_manifest"]
    download_rate = ours["resources"] / ours["downloaded"]
    figures = [
        Figure(
            "resources/s, kick-off to manifest",
            rate(manifest_rate),
            rate(base_rate),
            ratio(manifest_rate, base_rate),
        ),
        Figure(
            "resources/s, kick-off to last file downloaded",
            rate(download_rate),
            rate(base_rate),
            ratio(download_rate, base_rate),
        ),
        Figure("resources exported", f"{ours['resources']:,}", f"{base_resources:,}"),
        Figure("MB of NDJSON", f"{ours['bytes'] / 1e6:,.1f}", ""),
    ]
    return ScenarioResult(
        scenario="export",
        title=f"Bulk $export: {patients:,} synth patients, {ours['resources']:,} resources, {ours['files']} files",
        figures=figures,
        published="none comparable",
        target="an export at a good share of the rate of reading the stored JSON straight to files",
        settings={"patients": patients, "seed": options.seed, "workers": options.workers},
        details={"ours": ours, "baseline": {"resources": base_resources, "seconds": base_seconds}},
        server_log_problems=problems,
    )
