"""The search scenario's data: `bevan synth` NDJSON loaded once per seed and size, cached.

SQLite: the loaded data directory (database and signing key) is kept in
`benchmarks/.cache/search-db-<seed>-<n>/` and served in place (searches do not write).
PostgreSQL: the data is loaded into a schema named after seed and size, reused while it
holds every resource. The facts searches need (NHS numbers, names, codes, ids) are read
from the NDJSON files, so they are real values of the loaded data.
"""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.options import CACHE_DIR
from benchmarks.server import BEVAN

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
SAMPLE = 1000  # values kept per kind; requests rotate among them
STORED = re.compile(r"Stored (\d+) resources .*; refused (\d+)\.")


def _say(text: str) -> None:
    print(f"search: {text}", file=sys.stderr, flush=True)


def _bevan(*args: str) -> str:
    """Run a bevan command with its progress bar on stderr; return its stdout."""
    done = subprocess.run([str(BEVAN), *args], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"search: bevan {' '.join(args[:1])} failed (exit {done.returncode})")
    return done.stdout


def ndjson_directory(patients: int, seed: int) -> Path:
    """Return `bevan synth --ndjson` output for patients (generated once per seed and size)."""
    out = CACHE_DIR / f"search-ndjson-{seed}-{patients}"
    if out.is_dir():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _say(f"generating {patients:,} patients with bevan synth (seed {seed}) ...")
    printed = _bevan(
        "synth", "--patients", str(patients), "--seed", str(seed), "--out", str(partial), "--ndjson"
    )
    _say(printed.strip())
    partial.rename(out)
    return out


def resource_counts(directory: Path) -> dict[str, int]:
    """Return the number of resources in each Type.ndjson file of directory."""
    counts = {}
    for path in sorted(directory.glob("*.ndjson")):
        with path.open("rb") as lines:
            counts[path.stem] = sum(1 for line in lines if line.strip())
    return counts


def _load(flags: list[str], directory: Path, expected: int) -> None:
    started = time.perf_counter()
    printed = _bevan("load", *flags, str(directory))
    found = STORED.search(printed)
    if found is None or int(found.group(1)) != expected or found.group(2) != "0":
        raise SystemExit(f"search: bevan load did not store all {expected:,} resources:\n{printed}")
    seconds = time.perf_counter() - started
    _say(f"loaded {expected:,} resources in {seconds:,.0f} s ({expected / seconds:,.0f}/s)")


def sqlite_data_dir(patients: int, seed: int, directory: Path, expected: int) -> Path:
    """Return a data directory holding the loaded data (loaded once per seed and size)."""
    target = CACHE_DIR / f"search-db-{seed}-{patients}"
    marker = target / "loaded.json"
    if marker.exists():
        _say(f"reusing the loaded SQLite data in {target}")
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    _say(f"loading {expected:,} resources into SQLite with bevan load (about 2k/s) ...")
    _load(["--data-dir", str(partial)], directory, expected)
    marker = partial / "loaded.json"
    marker.write_bytes(orjson.dumps({"seed": seed, "patients": patients, "resources": expected}))
    partial.rename(target)
    return target


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'bevan.db').resolve()}"


def postgres_schema_url(url: str, patients: int, seed: int, directory: Path, expected: int) -> str:
    """Return url pointed at schema bevan_search_<seed>_<n>, loading it unless it is complete."""
    from sqlalchemy import text

    from bevan.store.engine import make_engine

    schema = f"bevan_search_{seed}_{patients}"
    schema_url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            exists = connection.execute(
                text("SELECT to_regclass(:table)"), {"table": f"{schema}.resource"}
            ).scalar()
            stored = (
                connection.execute(text(f'SELECT count(*) FROM "{schema}".resource')).scalar()
                if exists
                else 0
            )
        if stored == expected:
            _say(f"reusing PostgreSQL schema {schema} ({expected:,} resources)")
            return schema_url
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    _say(f"loading {expected:,} resources into PostgreSQL schema {schema} with bevan load ...")
    with tempfile.TemporaryDirectory(prefix="bevan-bench-load-") as scratch:
        _load(["--data-dir", scratch, "--database", schema_url], directory, expected)
    return schema_url


# --- facts for the searches -------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PatientFacts:
    id: str
    nhs_number: str
    family: str
    given: str


@dataclass
class Facts:
    """Real values of the loaded data, sampled so that requests rotate among many."""

    resources: int
    patients: list[PatientFacts]  # patients with Observations
    vitals: list[tuple[str, str, str]]  # (patient id, LOINC code, year) of vital signs
    vital_codes: list[str]
    lab_codes: list[str]
    birth_dates: list[str]
    cities: list[str]
    organization_words: list[str]
    observation_dates: list[str]
    encounter_dates: list[str]
    observation_values: list[tuple[str, str, str]]  # (code, value, UCUM code)
    component_values: list[tuple[str, str, str]]
    observation_encounters: list[str]  # Encounter ids referenced by Observations
    observation_performers: list[str]  # references
    encounter_patients: list[str]
    encounter_participants: list[str]
    request_patients: list[str]
    requesters: list[str]


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def _sample(rng: random.Random, values: Any, k: int = SAMPLE) -> list[Any]:
    unique = sorted(set(values))
    return rng.sample(unique, min(k, len(unique)))


def _number(value: float) -> str:
    return f"{value:g}"


def _coding(concept: dict[str, Any]) -> tuple[str, str] | None:
    for coding in concept.get("coding", ()):
        if "code" in coding:
            return coding.get("system", ""), coding["code"]
    return None


def read_facts(directory: Path, resources: int, seed: int) -> Facts:
    """Return facts sampled from the NDJSON files (seconds for a million resources)."""
    _say(f"reading search values from {directory.name} ...")
    rng = random.Random(seed)
    patients: dict[str, PatientFacts] = {}
    birth_dates, cities = [], []
    for patient in _lines(directory / "Patient.ndjson"):
        nhs = next(
            (i["value"] for i in patient.get("identifier", ()) if i.get("system") == NHS_NUMBER), ""
        )
        name = patient.get("name", [{}])[0]
        patients[patient["id"]] = PatientFacts(
            patient["id"], nhs, name.get("family", ""), (name.get("given") or [""])[0]
        )
        birth_dates.append(patient.get("birthDate", ""))
        cities += [a["city"] for a in patient.get("address", ()) if a.get("city")]

    observed: set[str] = set()
    vital_years: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    vital_codes, lab_codes, dates, encounters, performers = set(), set(), [], [], []
    values, components = [], []
    for observation in _lines(directory / "Observation.ndjson"):
        subject = observation.get("subject", {}).get("reference", "")
        patient_id = subject.removeprefix("Patient/")
        observed.add(patient_id)
        coded = _coding(observation.get("code", {}))
        when = observation.get("effectiveDateTime", "")
        categories = {
            c.get("code") for cat in observation.get("category", ()) for c in cat.get("coding", ())
        }
        if coded and coded[0] == "http://loinc.org":
            if "vital-signs" in categories:
                vital_codes.add(coded[1])
                if when:
                    vital_years[(patient_id, coded[1])].add(when[:4])
            elif "laboratory" in categories:
                lab_codes.add(coded[1])
        if when:
            dates.append(when[:10])
        if "encounter" in observation:
            encounters.append(observation["encounter"]["reference"].removeprefix("Encounter/"))
        performers += [p["reference"] for p in observation.get("performer", ()) if "reference" in p]
        quantity = observation.get("valueQuantity")
        if coded and quantity and "value" in quantity:
            values.append((coded[1], _number(quantity["value"]), quantity.get("code", "")))
        for component in observation.get("component", ()):
            part, amount = _coding(component.get("code", {})), component.get("valueQuantity")
            if part and amount and "value" in amount:
                components.append((part[1], _number(amount["value"]), amount.get("code", "")))

    encounter_dates, encounter_patients, participants = [], [], []
    for encounter in _lines(directory / "Encounter.ndjson"):
        start = encounter.get("period", {}).get("start", "")
        if start:
            encounter_dates.append(start[:10])
        encounter_patients.append(encounter["subject"]["reference"].removeprefix("Patient/"))
        participants += [
            p["individual"]["reference"]
            for p in encounter.get("participant", ())
            if "reference" in p.get("individual", {})
        ]
    request_patients, requesters = [], []
    for request in _lines(directory / "MedicationRequest.ndjson"):
        request_patients.append(request["subject"]["reference"].removeprefix("Patient/"))
        if "reference" in request.get("requester", {}):
            requesters.append(request["requester"]["reference"])
    words = [
        word
        for organization in _lines(directory / "Organization.ndjson")
        for word in organization.get("name", "").split()[:1]
        if len(word) > 3
    ]
    with_observations = [patients[i] for i in sorted(observed) if i in patients]
    vitals = [(p, c, rng.choice(sorted(years))) for (p, c), years in vital_years.items()]
    return Facts(
        resources=resources,
        patients=_sample(rng, with_observations),
        vitals=_sample(rng, vitals),
        vital_codes=sorted(vital_codes),
        lab_codes=sorted(lab_codes),
        birth_dates=_sample(rng, birth_dates),
        cities=_sample(rng, cities, 50),
        organization_words=_sample(rng, words, 50),
        observation_dates=_sample(rng, dates),
        encounter_dates=_sample(rng, encounter_dates),
        observation_values=_sample(rng, values),
        component_values=_sample(rng, components),
        observation_encounters=_sample(rng, encounters),
        observation_performers=_sample(rng, performers),
        encounter_patients=_sample(rng, encounter_patients),
        encounter_participants=_sample(rng, participants),
        request_patients=_sample(rng, request_patients),
        requesters=_sample(rng, requesters),
    )


# --- the plain-SQLite baseline table ----------------------------------------------------

FAMILY = "lower(json_extract(json, '$.name[0].family'))"
NHS_VALUE = "json_extract(json, '$.identifier[0].value')"
SUBJECT = "json_extract(json, '$.subject.reference')"
PATIENT = "json_extract(json, '$.patient.reference')"
CODE = "json_extract(json, '$.code.coding[0].code')"
EFFECTIVE = "json_extract(json, '$.effectiveDateTime')"
BASELINE_INDEXES = (
    f"CREATE INDEX by_nhs_number ON resource (type, {NHS_VALUE})",
    f"CREATE INDEX by_family ON resource (type, {FAMILY})",
    f"CREATE INDEX by_subject ON resource ({SUBJECT}, type, {CODE}, {EFFECTIVE})",
    f"CREATE INDEX by_patient ON resource ({PATIENT})",
)


def baseline_database(patients: int, seed: int, directory: Path) -> Path:
    """Return a SQLite file with one table resource(type, id, json) and four expression
    indexes (NHS number, lower(family), subject+type+code+date, patient), built once."""
    path = CACHE_DIR / f"search-baseline-{seed}-{patients}.sqlite"
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    _say("building the plain-SQLite baseline table ...")
    started = time.perf_counter()
    db = sqlite3.connect(partial, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(
        "CREATE TABLE resource (type TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,"
        " PRIMARY KEY (type, id))"
    )
    db.execute("BEGIN")
    for file in sorted(directory.glob("*.ndjson")):
        with file.open("rb") as lines:
            db.executemany(
                "INSERT INTO resource VALUES (?, ?, ?)",
                (
                    (file.stem, orjson.loads(line)["id"], line.decode().strip())
                    for line in lines
                    if line.strip()
                ),
            )
    db.execute("COMMIT")
    for statement in BASELINE_INDEXES:
        db.execute(statement)
    db.execute("ANALYZE")
    db.close()
    partial.rename(path)
    _say(f"baseline table built in {time.perf_counter() - started:,.0f} s")
    return path
