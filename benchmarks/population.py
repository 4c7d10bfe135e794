"""The bundles an import benchmark posts: seed bundles first, then one per patient."""

from __future__ import annotations

import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.options import CACHE_DIR, REPO_ROOT

COMPLETE_MARKER = ".complete"
SYNTHEA_DIR = REPO_ROOT.parent / "shared" / "data" / "synthea-small"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FULL_URL_UUID = re.compile(rb'"fullUrl"\s*:\s*"urn:uuid:([0-9a-f-]{36})"')


@dataclass(frozen=True)
class BundleFile:
    name: str
    body: bytes
    entries: int


@dataclass(frozen=True)
class Population:
    """Seed bundles (organisations, practitioners, locations) and patient bundles, in memory."""

    seeds: list[BundleFile]
    patients: list[BundleFile]

    @property
    def patient_entries(self) -> int:
        return sum(bundle.entries for bundle in self.patients)


def _bundle(name: str, body: bytes) -> BundleFile:
    return BundleFile(name, body, len(orjson.loads(body).get("entry", ())))


def synth_directory(patients: int, seed: int) -> Path:
    """Return a directory of `bevan synth` bundles (shared.json, patient-*.json), cached."""
    out = CACHE_DIR / f"synth-{seed}-{patients}"
    if (out / COMPLETE_MARKER).exists():
        print(f"data: reusing {patients} synthetic patients in {out}", file=sys.stderr)
        return out
    from bevan.synth import write_population

    shutil.rmtree(out, ignore_errors=True)
    print(f"data: generating {patients} synthetic patients (seed {seed}) ...", file=sys.stderr)
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        if done == patients or done % 200 < count:
            print(f"data: {done}/{patients} patients written", file=sys.stderr)

    write_population(patients, seed, out, progress=progress)
    (out / COMPLETE_MARKER).touch()
    return out


def synth_population(patients: int, seed: int) -> Population:
    """Return `bevan synth` bundles for patients (generated once per seed and size)."""
    directory = synth_directory(patients, seed)
    shared = _bundle("shared.json", (directory / "shared.json").read_bytes())
    bundles = [_bundle(p.name, p.read_bytes()) for p in sorted(directory.glob("patient-*.json"))]
    return Population([shared], bundles)


def with_fresh_ids(body: bytes, salt: str) -> bytes:
    """Return a transaction bundle whose urn:uuid fullUrls (and references to them) are new."""
    fresh = {
        old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{salt}/{old.decode()}")).encode()
        for old in FULL_URL_UUID.findall(body)
    }
    return UUID.sub(lambda match: fresh.get(match.group(0), match.group(0)), body)


def synthea_population(patients: int, seed: int, source: Path = SYNTHEA_DIR) -> Population:
    """Return the Synthea sample's hospital and practitioner bundles, then `patients` bundles.

    The sample's patient bundles are used in turn; each copy after the first gets fresh
    urn:uuid identities so that it stores as a new patient.
    """
    seeds = [
        _bundle(p.name, p.read_bytes())
        for pattern in ("hospitalInformation*.json", "practitionerInformation*.json")
        for p in sorted(source.glob(pattern))
    ]
    originals = [
        p for p in sorted(source.glob("*.json")) if not p.name.startswith(("hospital", "pract"))
    ]
    if not seeds or not originals:
        raise SystemExit(f"no Synthea bundles in {source}")
    print(f"data: {patients} patients from {len(originals)} Synthea bundles", file=sys.stderr)
    bodies = [p.read_bytes() for p in originals]
    bundles = []
    for index in range(patients):
        original = bodies[index % len(bodies)]
        copy = index // len(bodies)
        body = original if copy == 0 else with_fresh_ids(original, f"{seed}/{copy}")
        bundles.append(_bundle(f"{originals[index % len(bodies)].stem}#{copy}", body))
    return Population(seeds, bundles)
