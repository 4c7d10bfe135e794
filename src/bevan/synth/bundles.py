"""Writing a population: transaction Bundles (one per patient) or NDJSON by resource type.

Output is byte-identical for the same seed and count: keys are sorted, resources come in
a fixed order, and the work is split into fixed chunks whose results are written in order.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bevan.synth.diaries import diary_bundle, diary_resources
from bevan.synth.organisations import directory_resources, service_directory
from bevan.synth.record import patient_record

_DUMP_OPTIONS = orjson.OPT_SORT_KEYS
CHUNK = 500  # patients per unit of parallel work
DIARIES = "diaries.json"
PROGRESS_EVERY = 100


def shared_resources(seed: int) -> list[dict[str, Any]]:
    """Return the Organizations (GP practices, trusts, with ODS codes), Practitioners and Locations the patients reference."""
    return directory_resources(service_directory(seed))


def generate_patients(count: int, seed: int, start: int = 0) -> Iterator[list[dict[str, Any]]]:
    """Yield, per patient, the list of FHIR R4 resources (dicts) for that patient, deterministic by (seed, index).

    Each resource carries its stable id and refers to the patient's other resources as
    Type/id and to shared ones as Organization/, Practitioner/ or Location/<id>.
    """
    directory = service_directory(seed)
    for index in range(start, start + count):
        # a fresh copy, so callers may change what they are given without touching tables
        yield orjson.loads(orjson.dumps(patient_record(seed, index, directory)))


def shared_bundle(seed: int) -> dict[str, Any]:
    """Return a transaction Bundle that PUTs every shared resource at Type/id."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in shared_resources(seed)
        ],
    }


def patient_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a transaction Bundle that POSTs a patient's resources, named by urn:uuid fullUrls.

    The resources must have been built with transaction-style references; their ids
    become fullUrls and are removed, since the server assigns ids on POST.
    """
    entries = []
    for resource in resources:
        id_ = resource.pop("id")
        entries.append(
            {
                "fullUrl": f"urn:uuid:{id_}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _bundle_file(out_dir: Path, index: int) -> Path:
    return out_dir / f"patient-{index + 1:06d}.json"


def _write_bundle_chunk(seed: int, start: int, stop: int, out_dir: str) -> dict[str, int]:
    directory = service_directory(seed)
    counts: Counter[str] = Counter()
    folder = Path(out_dir)
    for index in range(start, stop):
        resources = patient_record(seed, index, directory, transaction=True)
        counts.update(r["resourceType"] for r in resources)
        _bundle_file(folder, index).write_bytes(
            orjson.dumps(patient_bundle(resources), option=_DUMP_OPTIONS)
        )
    return dict(counts)


def _write_ndjson_chunk(seed: int, start: int, stop: int, out_dir: str) -> dict[str, int]:
    """Write the chunk's resources to part files (one per type) for later concatenation."""
    directory = service_directory(seed)
    counts: Counter[str] = Counter()
    parts: dict[str, BinaryIO] = {}
    folder = Path(out_dir)
    try:
        for index in range(start, stop):
            for resource in patient_record(seed, index, directory):
                kind = resource["resourceType"]
                counts[kind] += 1
                handle = parts.get(kind)
                if handle is None:
                    handle = parts[kind] = (folder / f"{kind}.{start:012d}.part").open("wb")
                handle.write(orjson.dumps(resource, option=_DUMP_OPTIONS) + b"\n")
    finally:
        for handle in parts.values():
            handle.close()
    return dict(counts)


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def write_population(
    count: int,
    seed: int,
    out_dir: Path,
    ndjson: bool = False,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    diaries_from: date | None = None,
) -> dict[str, int]:
    """Write the population; return counts by resource type.

    Bundles: out_dir/shared.json (a transaction Bundle PUTting the shared resources), then
    out_dir/patient-000001.json ... (one transaction Bundle per patient). With ndjson=True,
    one Type.ndjson file per resource type, shared resources first. progress(n) is called
    with the number of patients just written. Large populations use up to two worker
    processes (workers=1 keeps everything in this process); the output is the same.
    With diaries_from (a Monday), the busiest practices' diaries from that week are
    written too (synth.diaries): out_dir/diaries.json, or in the NDJSON files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    shared = shared_resources(seed)
    counts.update(r["resourceType"] for r in shared)
    if ndjson:
        for stale in out_dir.glob("*.part"):
            stale.unlink()
    else:
        (out_dir / "shared.json").write_bytes(
            orjson.dumps(shared_bundle(seed), option=_DUMP_OPTIONS)
        )

    chunks = [(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    write_chunk = _write_ndjson_chunk if ndjson else _write_bundle_chunk
    workers = workers if workers is not None else _default_workers()

    def done(chunk_counts: dict[str, int], patients: int) -> None:
        counts.update(chunk_counts)
        if progress is not None:
            progress(patients)

    if workers <= 1 or len(chunks) <= 1:
        for start, stop in chunks:
            # smaller steps in-process so progress moves smoothly
            for step in range(start, stop, PROGRESS_EVERY):
                end = min(step + PROGRESS_EVERY, stop)
                done(write_chunk(seed, step, end, str(out_dir)), end - step)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                (stop - start, pool.submit(write_chunk, seed, start, stop, str(out_dir)))
                for start, stop in chunks
            ]
            for patients, future in futures:
                done(future.result(), patients)

    if ndjson:
        _join_ndjson(out_dir, shared)
    if diaries_from is not None:
        counts.update(_write_diaries(seed, count, out_dir, diaries_from, ndjson))
    return dict(sorted(counts.items()))


def _write_diaries(
    seed: int, count: int, out_dir: Path, first_day: date, ndjson: bool
) -> Counter[str]:
    """Write the practice diaries beside the population; return their counts by type."""
    resources = diary_resources(
        seed, count, service_directory(seed), first_day, transaction=not ndjson
    )
    if not ndjson:
        (out_dir / DIARIES).write_bytes(orjson.dumps(diary_bundle(resources), option=_DUMP_OPTIONS))
    else:
        for resource in resources:
            with (out_dir / f"{resource['resourceType']}.ndjson").open("ab") as target:
                target.write(orjson.dumps(resource, option=_DUMP_OPTIONS) + b"\n")
    return Counter(r["resourceType"] for r in resources)


def _join_ndjson(out_dir: Path, shared: list[dict[str, Any]]) -> None:
    """Concatenate shared resources and the part files, in chunk order, into Type.ndjson."""
    parts: dict[str, list[Path]] = {}
    for part in out_dir.glob("*.part"):
        kind = part.name.split(".", 1)[0]
        parts.setdefault(kind, []).append(part)
    shared_by_kind: dict[str, list[bytes]] = {}
    for resource in shared:
        shared_by_kind.setdefault(resource["resourceType"], []).append(
            orjson.dumps(resource, option=_DUMP_OPTIONS) + b"\n"
        )
    for kind in sorted(set(parts) | set(shared_by_kind)):
        with (out_dir / f"{kind}.ndjson").open("wb") as target:
            target.writelines(shared_by_kind.get(kind, []))
            for part in sorted(parts.get(kind, [])):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, target, 1 << 20)
                part.unlink()


def population_files(out_dir: Path) -> list[Path]:
    """Return the Bundles write_population wrote, in the order to load them: the shared
    resources first, so every patient's references resolve as it arrives, and the
    practice diaries (if written) last, once the patients they book are in."""
    shared = out_dir / "shared.json"
    patients = sorted(out_dir.glob("patient-*.json"))
    diaries = out_dir / DIARIES
    return (
        ([shared] if shared.exists() else []) + patients + ([diaries] if diaries.exists() else [])
    )
