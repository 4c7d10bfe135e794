"""Search: named searches and the published search mix on about a million loaded resources."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson

from benchmarks.client import FhirClient, StopLoad, report_progress, run_event_loop
from benchmarks.measure import Latencies, LatencySummary, Refusals, outcome_text
from benchmarks.options import RunOptions
from benchmarks.report import Figure, ScenarioResult, latency_cell, rate, ratio
from benchmarks.search_data import (
    EFFECTIVE,
    FAMILY,
    NHS_NUMBER,
    NHS_VALUE,
    PATIENT,
    SUBJECT,
    Facts,
    baseline_database,
    ndjson_directory,
    postgres_schema_url,
    read_facts,
    resource_counts,
    sqlite_data_dir,
    sqlite_url,
)
from benchmarks.server import BevanServer
from bevan.store.reading import PAGE

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"
SLOW_MS = 50.0  # target: p95 under this for every named search
TOTAL_TYPES = ("Patient", "Observation", "Encounter", "Organization", "MedicationRequest")


def query(*pairs: tuple[str, str]) -> str:
    """Return a query string that keeps FHIR's separators (| , $ :) readable."""
    return urlencode(pairs, safe=":/|,$", quote_via=quote)


def _fetch(db: sqlite3.Connection, sql: str, *args: str) -> int:
    """Run one baseline statement, parse each JSON row as a client would; return the rows."""
    rows = db.execute(sql, args).fetchall()
    for row in rows:
        orjson.loads(row[0])
    return len(rows)


# --- named searches ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request of a named search: its path, the searches to EXPLAIN, baseline arguments."""

    path: str
    explain: tuple[tuple[str, str], ...]
    args: tuple[str, ...]


@dataclass(frozen=True)
class NamedSearch:
    key: str
    title: str
    build: Callable[[random.Random], Probe]
    baseline: Callable[[sqlite3.Connection, tuple[str, ...]], int]
    baseline_text: str
    simple: bool = False  # held to the 1,000 req/s target


def _on(table: str, expression: str) -> str:
    """Return a baseline expression on json qualified by a table alias."""
    return expression.replace("(json,", f"({table}.json,")


def _search_probe(resource_type: str, text: str, *args: str) -> Probe:
    return Probe(f"{resource_type}?{text}", ((resource_type, text),), args)


def named_searches(facts: Facts) -> list[NamedSearch]:
    patients, vitals = facts.patients, facts.vitals

    def nhs_number(rng: random.Random) -> Probe:
        nhs = rng.choice(patients).nhs_number
        return _search_probe("Patient", query(("identifier", f"{NHS_NUMBER}|{nhs}")), nhs)

    def name_prefix(rng: random.Random) -> Probe:
        prefix = rng.choice(patients).family[:3]
        return _search_probe("Patient", query(("name", prefix), ("_count", "20")), prefix)

    def observations(rng: random.Random) -> Probe:
        patient, code, year = rng.choice(vitals)
        text = query(
            ("patient", patient),
            ("code", f"{LOINC}|{code}"),
            ("date", f"ge{year}-01-01"),
            ("date", f"le{year}-12-31"),
            ("_sort", "-date"),
        )
        return _search_probe("Observation", text, f"Patient/{patient}", code, year)

    def chained_nhs(rng: random.Random) -> Probe:
        nhs = rng.choice(patients).nhs_number
        text = query(("subject:Patient.identifier", f"{NHS_NUMBER}|{nhs}"), ("_count", "20"))
        return _search_probe("Observation", text, nhs)

    def chained_name(rng: random.Random) -> Probe:
        family = rng.choice(patients).family
        text = query(("subject:Patient.name", family), ("_count", "20"))
        return _search_probe("Observation", text, family)

    def revinclude(rng: random.Random) -> Probe:
        patient = rng.choice(patients).id
        text = query(("_id", patient), ("_revinclude", "Observation:patient"), ("_count", "50"))
        explain = (("Patient", text), ("Observation", query(("patient", patient))))
        return Probe(f"Patient?{text}", explain, (patient,))

    def everything(rng: random.Random) -> Probe:
        patient = rng.choice(patients).id
        # $everything is not one search: its largest part is the Observation lookup.
        explain = (
            ("Observation", query(("patient", patient))),
            ("Encounter", query(("patient", patient))),
        )
        return Probe(f"Patient/{patient}/$everything", explain, (patient,))

    def family_range(prefix: str) -> tuple[str, str]:
        low = prefix.lower()
        return low, low[:-1] + chr(ord(low[-1]) + 1)

    return [
        NamedSearch(
            "nhs-number",
            "Patient by NHS number",
            nhs_number,
            lambda db, a: _fetch(
                db, f"SELECT json FROM resource WHERE type = 'Patient' AND {NHS_VALUE} = ?", *a
            ),
            "Patient rows by an expression index on identifier[0].value",
            simple=True,
        ),
        NamedSearch(
            "name-prefix",
            "Patient by name prefix (3 letters)",
            name_prefix,
            lambda db, a: _fetch(
                db,
                f"SELECT json FROM resource WHERE type = 'Patient' AND {FAMILY} >= ?"
                f" AND {FAMILY} < ? LIMIT 20",
                *family_range(a[0]),
            ),
            "20 Patient rows by a range on an index of lower(name[0].family) (family only)",
            simple=True,
        ),
        NamedSearch(
            "observations",
            "Observations by patient, code, date range, -date",
            observations,
            lambda db, a: _fetch(
                db,
                "SELECT json FROM resource WHERE "
                f"{SUBJECT} = ? AND type = 'Observation' AND json_extract(json, "
                f"'$.code.coding[0].code') = ? AND {EFFECTIVE} >= ? AND {EFFECTIVE} < ?"
                f" ORDER BY {EFFECTIVE} DESC LIMIT 20",
                a[0],
                a[1],
                a[2],
                str(int(a[2]) + 1),
            ),
            "20 rows by an index on (subject, type, code, effectiveDateTime)",
        ),
        NamedSearch(
            "chained-nhs",
            "Observation?subject:Patient.identifier (chained)",
            chained_nhs,
            lambda db, a: _fetch(
                db,
                f"SELECT o.json FROM resource p JOIN resource o ON {_on('o', SUBJECT)} = "
                f"'Patient/' || p.id WHERE p.type = 'Patient' AND {_on('p', NHS_VALUE)} = ?"
                " AND o.type = 'Observation' LIMIT 20",
                *a,
            ),
            "NHS-number index joined to the subject index, 20 rows",
        ),
        NamedSearch(
            "chained-name",
            "Observation?subject:Patient.name (chained)",
            chained_name,
            lambda db, a: _fetch(
                db,
                f"SELECT o.json FROM resource p JOIN resource o ON {_on('o', SUBJECT)} = "
                f"'Patient/' || p.id WHERE p.type = 'Patient' AND {_on('p', FAMILY)} >= ?"
                f" AND {_on('p', FAMILY)} < ? AND o.type = 'Observation' LIMIT 20",
                *family_range(a[0]),
            ),
            "family-name index range joined to the subject index, 20 rows",
        ),
        NamedSearch(
            "revinclude",
            "Patient?_id + _revinclude=Observation:patient",
            revinclude,
            lambda db, a: _fetch(
                db,
                "SELECT json FROM resource WHERE type = 'Patient' AND id = ? UNION ALL "
                f"SELECT json FROM resource WHERE {SUBJECT} = ? AND type = 'Observation'",
                a[0],
                f"Patient/{a[0]}",
            ),
            "the Patient by primary key plus all its Observations by the subject index",
        ),
        NamedSearch(
            "everything",
            "Patient/<id>/$everything",
            everything,
            lambda db, a: _fetch(
                db,
                "SELECT json FROM resource WHERE type = 'Patient' AND id = ? UNION ALL "
                f"SELECT json FROM resource WHERE {SUBJECT} = ? UNION ALL "
                f"SELECT json FROM resource WHERE {PATIENT} = ?",
                a[0],
                f"Patient/{a[0]}",
                f"Patient/{a[0]}",
            ),
            "the Patient plus rows whose subject or patient is it (no referenced resources)",
        ),
    ]


# --- the published mix ------------------------------------------------------------------

Pick = Callable[[random.Random], str]
STRING_MODIFIERS = ("", ":contains")
DATE_PREFIXES = ("", "eq", "lt", "gt", "ge", "le", "sa", "eb")
QUANTITY_PREFIXES = ("", "eq", "lt", "gt", "ge", "le")
NO_MATCH = ("", "eq", "lt", "le", "eb")  # prefixes that keep a too-low value matching nothing


def const(value: str) -> Pick:
    return lambda rng: value


def one_of(pool: list[str]) -> Pick | None:
    return (lambda rng: rng.choice(pool)) if pool else None


def ids(pool: list[str], k: int, prefix: str = "") -> Pick | None:
    if len(pool) < k:
        return None
    return lambda rng: ",".join(prefix + value for value in rng.sample(pool, k))


@dataclass(frozen=True)
class MixParam:
    """One search parameter of the mix; values[0] never matches."""

    kind: str
    resource_type: str
    name: str
    values: tuple[Pick, ...]
    prefixes: tuple[str, ...] = ("",)
    modifiers: tuple[str, ...] = ("",)

    @property
    def label(self) -> str:
        return f"{self.resource_type}?{self.name}"

    def request(self, rng: random.Random) -> str:
        index = rng.randrange(len(self.values))
        prefixes = self.prefixes if index else tuple(p for p in self.prefixes if p in NO_MATCH)
        value = rng.choice(prefixes) + self.values[index](rng)
        pairs = ((self.name + rng.choice(self.modifiers), value), ("_count", "20"))
        return f"{self.resource_type}?{query(*pairs)}"


def _param(
    kind: str,
    resource_type: str,
    name: str,
    first: str,
    picks: list[Pick | None],
    prefixes: tuple[str, ...] = ("",),
    modifiers: tuple[str, ...] = ("",),
) -> MixParam:
    values = (const(first), *(p for p in picks if p is not None))
    return MixParam(kind, resource_type, name, values, prefixes, modifiers)


def _references(resource_type: str, name: str, target: str, pool: list[str]) -> MixParam:
    typed = [v if "/" in v else f"{target}/{v}" for v in pool]
    picks = [ids(typed, 1), ids(typed, 2), ids(typed, 3)]
    return _param("reference", resource_type, name, f"{target}/no-such-id", picks)


def mix_params(facts: Facts) -> list[MixParam]:
    """Return the SCENARIOS.md search mix, with values taken from the loaded data."""
    families = [p.family for p in facts.patients]
    codes = facts.vital_codes + facts.lab_codes
    values = facts.observation_values
    components = facts.component_values

    def months(dates: list[str]) -> list[str]:
        return sorted({d[:7] for d in dates})

    return [
        _param(
            "string",
            "Patient",
            "name",
            "Qxzvwk",
            [
                one_of(families),
                one_of([f[:3] for f in families]),
                one_of([p.given for p in facts.patients]),
            ],
            modifiers=STRING_MODIFIERS,
        ),
        _param(
            "string",
            "Patient",
            "address",
            "Qxzvwk",
            [one_of(facts.cities), one_of([c[:4] for c in facts.cities])],
            modifiers=STRING_MODIFIERS,
        ),
        _param(
            "string",
            "Organization",
            "name",
            "Qxzvwk",
            [one_of(facts.organization_words), one_of([w[:3] for w in facts.organization_words])],
            modifiers=STRING_MODIFIERS,
        ),
        _param(
            "date",
            "Patient",
            "birthdate",
            "1800-01-01",
            [one_of(facts.birth_dates), one_of(months(facts.birth_dates))],
            DATE_PREFIXES,
        ),
        _param(
            "date",
            "Observation",
            "date",
            "1800-01-01",
            [one_of(facts.observation_dates), one_of(months(facts.observation_dates))],
            DATE_PREFIXES,
        ),
        _param(
            "date",
            "Encounter",
            "date",
            "1800-01-01",
            [one_of(facts.encounter_dates), one_of(months(facts.encounter_dates))],
            DATE_PREFIXES,
        ),
        _param(
            "token",
            "Observation",
            "category",
            "no-such-category",
            [
                const("vital-signs"),
                const("laboratory"),
                const(f"{CATEGORY}|vital-signs"),
                const("vital-signs,laboratory"),
            ],
        ),
        _param(
            "token",
            "Observation",
            "code",
            "0000-0",
            [one_of(codes), one_of([f"{LOINC}|{c}" for c in codes]), ids(codes, 2)],
        ),
        _param(
            "token",
            "Encounter",
            "status",
            "entered-in-error",
            [const("finished"), const("in-progress"), const("planned,in-progress,finished")],
        ),
        _param(
            "token",
            "Encounter",
            "class",
            "XYZ",
            [const("AMB"), const(f"{ACT_CODE}|AMB"), const("AMB,HH"), const("IMP,EMER,AMB")],
        ),
        _param(
            "quantity",
            "Observation",
            "value-quantity",
            "-1",
            [
                one_of([v for _, v, _ in values]),
                one_of([f"{v}|{UCUM}|{unit}" for _, v, unit in values]),
            ],
            QUANTITY_PREFIXES,
        ),
        _param(
            "quantity",
            "Observation",
            "component-value-quantity",
            "-1",
            [
                one_of([v for _, v, _ in components]),
                one_of([f"{v}|{UCUM}|{unit}" for _, v, unit in components]),
            ],
            QUANTITY_PREFIXES,
        ),
        _param(
            "quantity",
            "Observation",
            "combo-value-quantity",
            "-1",
            [one_of([v for _, v, _ in values]), one_of([v for _, v, _ in components])],
            QUANTITY_PREFIXES,
        ),
        _param(
            "composite",
            "Observation",
            "code-value-quantity",
            "0000-0$gt1",
            [
                one_of([f"{c}${v}" for c, v, _ in values]),
                one_of([f"{c}$ge{v}" for c, v, _ in values]),
                one_of([f"{LOINC}|{c}$le{v}" for c, v, _ in values]),
            ],
        ),
        _param(
            "composite",
            "Observation",
            "component-code-value-quantity",
            "0000-0$gt1",
            [
                one_of([f"{c}${v}" for c, v, _ in components]),
                const("8480-6$gt140"),
                const("8462-4$lt80"),
            ],
        ),
        _param(
            "composite",
            "Observation",
            "combo-code-value-quantity",
            "0000-0$gt1",
            [
                one_of([f"{c}$ge{v}" for c, v, _ in values]),
                one_of([f"{c}$le{v}" for c, v, _ in components]),
            ],
        ),
        _references("Observation", "subject", "Patient", [p.id for p in facts.patients]),
        _references("Observation", "encounter", "Encounter", facts.observation_encounters),
        _references("Observation", "performer", "Practitioner", facts.observation_performers),
        _references("Encounter", "subject", "Patient", facts.encounter_patients),
        _references("Encounter", "participant", "Practitioner", facts.encounter_participants),
        _references("MedicationRequest", "subject", "Patient", facts.request_patients),
        _references("MedicationRequest", "encounter", "Encounter", facts.observation_encounters),
        _references("MedicationRequest", "requester", "Practitioner", facts.requesters),
    ]


# --- checks before timing ---------------------------------------------------------------


def ignored_parameters(payload: bytes, path: str) -> list[str]:
    """Return the parameters a searchset says it ignored (outcome entry, or absent from self)."""
    body = orjson.loads(payload)
    ignored = []
    for entry in body.get("entry", ()):
        if entry.get("search", {}).get("mode") == "outcome":
            ignored.append(outcome_text(orjson.dumps(entry["resource"])))
    sent = {k for k, _ in parse_qsl(urlsplit(path).query)} - {"_summary", "_total", "_count"}
    links = {link.get("relation"): link.get("url", "") for link in body.get("link", ())}
    applied = {k for k, _ in parse_qsl(urlsplit(links.get("self", "")).query)}
    if "self" in links and "/$" not in path:
        ignored += [f"{name} is missing from the self link" for name in sorted(sent - applied)]
    return ignored


@dataclass
class Check:
    """What a search answered before timing: its total and any reason it is not usable."""

    name: str
    totals: list[int] = field(default_factory=list)
    problem: str = ""
    note: str = ""
    slowest_ms: float = 0.0  # the slowest check request, alone on the server

    def line(self) -> str:
        state = self.problem or "ok"
        totals = ", ".join(f"{t:,}" for t in self.totals)
        note = f" ({self.note})" if self.note else ""
        return f"{self.name}: {state}; totals {totals}; slowest {self.slowest_ms:,.0f} ms{note}"


async def _timed_get(client: FhirClient, check: Check, path: str) -> tuple[int, bytes]:
    started = time.perf_counter()
    answer = await _get_json(client, path)
    check.slowest_ms = max(check.slowest_ms, (time.perf_counter() - started) * 1000)
    return answer


async def _get_json(client: FhirClient, path: str) -> tuple[int, bytes]:
    return await client.send("check", "GET", path, label="check")


async def type_totals(client: FhirClient) -> dict[str, int]:
    totals = {}
    for resource_type in TOTAL_TYPES:
        status, payload = await _get_json(client, f"{resource_type}?_summary=count&_total=accurate")
        if status != 200:
            raise SystemExit(f"search: counting {resource_type} failed: {outcome_text(payload)}")
        totals[resource_type] = int(orjson.loads(payload).get("total", 0))
    return totals


async def check_named(
    client: FhirClient, search: NamedSearch, totals: dict[str, int], resources: int
) -> Check:
    """Send one request of search with _total=accurate: 0 < total < all of its type."""
    probe = search.build(random.Random(7))
    is_search = "?" in probe.path
    path = probe.path + ("&_total=accurate" if is_search else "")
    check = Check(search.key)
    status, payload = await _timed_get(client, check, path)
    if status != 200:
        check.problem = f"refused {status}: {outcome_text(payload)}"
        return check
    body = orjson.loads(payload)
    total = int(body.get("total", 0))
    check.totals.append(total)
    ignored = ignored_parameters(payload, path)
    of_type = totals.get(path.split("?", 1)[0], resources) if is_search else resources
    includes = sum(1 for e in body.get("entry", ()) if e.get("search", {}).get("mode") == "include")
    if ignored:
        check.problem = "ignored: " + "; ".join(ignored)
    elif not 0 < total < of_type:
        check.problem = f"total {total:,} is not between 0 and {of_type:,}: not applied?"
    elif search.key == "revinclude" and not includes:
        check.problem = "no included Observations: _revinclude ignored?"
    check.note = f"of {of_type:,}" + (f", {includes} included" if includes else "")
    return check


async def check_mix(client: FhirClient, param: MixParam, of_type: int) -> Check:
    """Send each value (plain) and each modifier and prefix once, with _summary=count."""
    rng = random.Random(11)
    check = Check(param.label)
    requests = [(param.name, pick(rng)) for pick in param.values]
    extra = [(param.name + m, param.values[-1](rng)) for m in param.modifiers[1:]]
    extra += [(param.name, p + param.values[-1](rng)) for p in param.prefixes[1:]]
    for number, (name, value) in enumerate([*requests, *extra]):
        path = f"{param.resource_type}?{query((name, value), ('_summary', 'count'))}"
        path += "&_total=accurate"
        status, payload = await _timed_get(client, check, path)
        if status != 200:
            check.problem = f"refused {name}={value} ({status}): {outcome_text(payload)}"
            return check
        ignored = ignored_parameters(payload, path)
        if ignored:
            check.problem = f"ignored {name}={value}: " + "; ".join(ignored)
            return check
        if number < len(requests):
            check.totals.append(int(orjson.loads(payload).get("total", 0)))
    matched = [t for t in check.totals[1:] if 0 < t < of_type]
    if check.totals[0] != 0:
        check.problem = f"the no-match value matched {check.totals[0]:,}: not applied?"
    elif all(t == of_type for t in check.totals[1:]) and of_type:
        check.problem = f"every value matched all {of_type:,}: not applied?"
    elif not matched:
        check.note = "no value matched in this data, so being applied is not proven"
    return check


# --- timing ---------------------------------------------------------------------------


Request = Callable[[random.Random], tuple[str, str, str]]  # (operation, label, path)


async def timed(
    client: FhirClient, clients: int, duration: float, next_request: Request, name: str
) -> float:
    """Run clients loops of next_request for duration seconds; return the wall time."""

    async def one_client(number: int) -> None:
        rng = random.Random(number)
        try:
            while True:
                operation, label, path = next_request(rng)
                await client.send(operation, "GET", path, label=label)
        except StopLoad:
            pass

    before = client.latencies.count()
    started = time.perf_counter()
    client.stop_at = started + duration

    def describe(elapsed: float) -> str:
        done = client.latencies.count() - before
        return (
            f"search: {name}: {min(elapsed, duration):.0f}/{duration:.0f} s, {done:,} requests "
            f"({done / elapsed:,.0f} req/s), {client.refusals.total} non-2xx so far"
        )

    ticker = asyncio.create_task(report_progress(describe, 5.0, started))
    await asyncio.gather(*(one_client(n) for n in range(clients)))
    seconds = time.perf_counter() - started
    ticker.cancel()
    client.stop_at = None
    print(describe(seconds), file=sys.stderr, flush=True)
    return seconds


@dataclass
class HttpRun:
    latencies: Latencies = field(default_factory=Latencies)
    seconds: dict[str, float] = field(default_factory=dict)
    named_checks: list[Check] = field(default_factory=list)
    mix_checks: list[Check] = field(default_factory=list)
    mix_used: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    refused: int = 0


async def _drive(
    server: BevanServer,
    facts: Facts,
    named: list[NamedSearch],
    params: list[MixParam],
    options: RunOptions,
) -> HttpRun:
    run = HttpRun()
    named_clients, mix_clients = options.search_clients(), options.search_mix_clients()
    connections = max(named_clients, mix_clients)
    async with FhirClient(server.base_url, server.token, connections=connections) as client:
        run.totals = await type_totals(client)
        print(f"search: server totals {run.totals}", file=sys.stderr, flush=True)
        for search in named:
            check = await check_named(client, search, run.totals, facts.resources)
            run.named_checks.append(check)
            print(f"search: check {check.line()}", file=sys.stderr, flush=True)
        usable = []
        for param in params:
            check = await check_mix(client, param, run.totals.get(param.resource_type, 0))
            run.mix_checks.append(check)
            print(f"search: check {check.line()}", file=sys.stderr, flush=True)
            if not check.problem:
                usable.append(param)
        run.mix_used = [p.label for p in usable]
        client.latencies, client.refusals = run.latencies, Refusals()

        for search in named:

            def named_request(rng: random.Random, s: NamedSearch = search) -> tuple[str, str, str]:
                return s.key, s.key, s.build(rng).path

            run.seconds[search.key] = await timed(
                client, named_clients, options.search_duration(), named_request, search.key
            )
        if usable:

            def mix_request(rng: random.Random) -> tuple[str, str, str]:
                param = rng.choice(usable)
                return f"mix {param.kind}", param.label, param.request(rng)

            run.seconds["mix"] = await timed(
                client, mix_clients, options.search_mix_duration(), mix_request, "mix"
            )
        run.refusals, run.refused = client.refusals.lines(), client.refusals.total
    return run


# --- EXPLAIN ----------------------------------------------------------------------------


def full_scan_lines(lines: list[str], sqlite: bool) -> list[str]:
    """Return plan lines that read a whole table or index (not the materialised page:
    at most _count row keys, listed before their versions are read; nor a subquery of
    the statement's own, anon_N or a composite's sample, whose rows its own plan lines
    find)."""
    if sqlite:
        return [
            line
            for line in lines
            if line.strip().startswith("SCAN ")
            and line.strip() != f"SCAN {PAGE}"
            and not re.fullmatch(r"SCAN (anon_\d+|sample)", line.strip())
        ]
    return [line for line in lines if "Seq Scan" in line]


@dataclass(frozen=True)
class Plan:
    name: str
    search: str
    lines: list[str]
    full_scans: list[str]


def explain_all(url: str, named: list[NamedSearch], params: list[MixParam]) -> list[Plan]:
    """Return the database plan of each named search and of each mix parameter."""
    from bevan.fhir.search import parse_search
    from bevan.store.record_store import RecordStore

    searches = []
    for search in named:
        probe = search.build(random.Random(7))
        for resource_type, text in probe.explain:
            searches.append((search.key, resource_type, text))
    rng = random.Random(11)
    for param in params:
        text = query((param.name, param.values[-1](rng)), ("_count", "20"))
        searches.append((f"mix {param.kind}", param.resource_type, text))
    store = RecordStore.from_url(url)
    plans = []
    try:
        for name, resource_type, text in searches:
            try:
                with store.read() as session:
                    # The page, and what is run to choose its plan: counting a
                    # criterion's matches is a statement of its own, and can scan too.
                    search = parse_search(resource_type, text)
                    lines = session.explain(search) + session.explain_choice(search)
            except Exception as error:  # a refused search is reported, not fatal
                lines = [f"(no plan: {type(error).__name__}: {error})"]
            scans = full_scan_lines(lines, store.dialect.name == "sqlite")
            plans.append(Plan(name, f"{resource_type}?{text}", lines, scans))
        if any(search.key == "everything" for search in named):
            plans.append(_everything_plan(store))
    finally:
        store.close()
    return plans


def _everything_plan(store: Any) -> Plan:
    """The plans of $everything's own reads, for the Patient with the longest record
    (a plan that serves a short record well can scan everything for a long one)."""
    from bevan.fhir.search_parameters import compartment_parameters
    from bevan.records.service import MAX_EVERYTHING

    with store.engine.connect() as connection:
        longest = connection.exec_driver_sql(
            "SELECT target_id FROM index_reference WHERE target_type = 'Patient'"
            " GROUP BY target_id ORDER BY count(*) DESC LIMIT 1"
        ).scalar()
    with store.read() as session:
        params = compartment_parameters("Patient")
        lines = session.explain_everything(str(longest), params, MAX_EVERYTHING)
    return Plan(
        "everything",
        f"Patient/{longest}/$everything: its own reads (the longest record)",
        lines,
        full_scan_lines(lines, store.dialect.name == "sqlite"),
    )


def print_plans(plans: list[Plan]) -> None:
    print("## Search plans (EXPLAIN of each search's page query)\n", flush=True)
    for plan in plans:
        flag = "  <-- FULL SCAN" if plan.full_scans else ""
        print(f"{plan.name}: {plan.search}{flag}")
        for line in plan.lines:
            print(f"    {line}")
    scans = [plan for plan in plans if plan.full_scans]
    summary = ", ".join(f"{p.name} ({p.search})" for p in scans) if scans else "none"
    print(f"\nfull scans: {summary}\n", flush=True)


# --- baseline ---------------------------------------------------------------------------


def sqlite_baseline(path: Path, named: list[NamedSearch], seconds: float) -> dict[str, Latencies]:
    """Return, per named search, the time of each plain-SQLite lookup run for seconds."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.execute("PRAGMA cache_size=-65536")
    results = {}
    for search in named:
        latencies = Latencies()
        rng = random.Random(3)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            args = search.build(rng).args
            started = time.perf_counter()
            search.baseline(db, args)
            latencies.add(search.key, time.perf_counter() - started)
        results[search.key] = latencies
        summary = latencies.summary(search.key)
        print(
            f"search: baseline {search.key}: {summary.count / latencies.seconds():,.0f}/s, "
            f"p95 {summary.p95_ms:.2f} ms",
            file=sys.stderr,
            flush=True,
        )
    db.close()
    return results


# --- the scenario -----------------------------------------------------------------------


def _summary_dict(summary: LatencySummary, seconds: float) -> dict[str, Any]:
    return {**summary.as_dict(), "requests_per_second": summary.count / seconds if seconds else 0}


def run(options: RunOptions) -> ScenarioResult:
    """Load (or reuse) the data, time the named searches and the mix, explain them all."""
    patients = options.search_patients()
    directory = ndjson_directory(patients, options.seed)
    counts = resource_counts(directory)
    resources = sum(counts.values())
    print(
        f"search: {resources:,} resources for {patients:,} patients "
        f"({counts.get('Observation', 0):,} Observations)",
        file=sys.stderr,
    )
    data_dir: Path | None = None
    if options.database:
        url = postgres_schema_url(options.database, patients, options.seed, directory, resources)
    else:
        data_dir = sqlite_data_dir(patients, options.seed, directory, resources)
        url = sqlite_url(data_dir)
    facts = read_facts(directory, resources, options.seed)
    named, params = named_searches(facts), mix_params(facts)

    plans = explain_all(url, named, params)
    print_plans(plans)

    print(f"search: starting a Bevan server ({options.workers} worker(s)) ...", file=sys.stderr)
    with BevanServer(
        url if options.database else None, options.workers, data_dir=data_dir
    ) as server:
        http = run_event_loop(lambda: _drive(server, facts, named, params, options))
        server.check_alive()
        problems = server.log_problems()

    base_path = baseline_database(patients, options.seed, directory)
    base_seconds = min(options.search_duration(), 5.0)
    baseline = sqlite_baseline(base_path, named, base_seconds)
    return _result(options, facts, named, plans, http, baseline, problems, counts)


def _result(
    options: RunOptions,
    facts: Facts,
    named: list[NamedSearch],
    plans: list[Plan],
    http: HttpRun,
    baseline: dict[str, Latencies],
    problems: list[str],
    counts: dict[str, int],
) -> ScenarioResult:
    figures: list[Figure] = []
    details: dict[str, Any] = {"resources": facts.resources, "counts": counts, "named": {}}
    slow = []
    for search in named:
        ours = http.latencies.summary(search.key)
        seconds = http.seconds.get(search.key, 0.0)
        ours_rate = ours.count / seconds if seconds else 0.0
        base = baseline[search.key].summary(search.key)
        base_rate = base.count / baseline[search.key].seconds() if base.count else 0.0
        figures.append(
            Figure(
                f"{search.title} req/s",
                rate(ours_rate),
                rate(base_rate),
                ratio(ours_rate, base_rate),
            )
        )
        figures.append(
            Figure(f"{search.title} p50 / p95 / p99 ms", latency_cell(ours), latency_cell(base))
        )
        details["named"][search.key] = {
            "ours": _summary_dict(ours, seconds),
            "baseline": {**base.as_dict(), "operations_per_second": base_rate},
            "baseline_is": search.baseline_text,
        }
        if ours.p95_ms > SLOW_MS:
            slow.append(search.key)

    mix_seconds = http.seconds.get("mix", 0.0)
    kinds = [op for op in http.latencies.operations() if op.startswith("mix ")]
    mix_samples = Latencies()
    for kind in kinds:
        for value in http.latencies.samples(kind):
            mix_samples.add("mix", value)
    mix = mix_samples.summary("mix")
    mix_rate = mix.count / mix_seconds if mix_seconds else 0.0
    figures.append(
        Figure(
            f"search mix req/s ({options.search_mix_clients()} clients, "
            f"{len(http.mix_used)} parameters)",
            rate(mix_rate),
            "",
        )
    )
    figures.append(Figure("search mix p50 / p95 / p99 ms", latency_cell(mix), ""))
    for kind in sorted(kinds):
        figures.append(
            Figure(f"{kind} p50 / p95 / p99 ms", latency_cell(http.latencies.summary(kind)), "")
        )
    figures.append(Figure("non-2xx answers", str(http.refused), "0"))
    scans = [p for p in plans if p.full_scans]
    figures.append(Figure("plans with a full scan", str(len(scans)) if scans else "none", ""))

    notes = [
        "Checks before timing, one request at a time (named: _total=accurate; "
        "mix: _summary=count&_total=accurate per value, modifier and prefix):"
    ]
    notes += [f"  {c.line()}" for c in http.named_checks]
    notes += [f"  {c.line()}" for c in http.mix_checks]
    refused = [c for c in http.named_checks + http.mix_checks if c.problem]
    unproven = [c for c in http.mix_checks if c.note and not c.problem]
    notes.append(
        "Refused, ignored or not applied (mix parameters left out of the mix): "
        + ("; ".join(f"{c.name} ({c.problem})" for c in refused) if refused else "none")
    )
    notes.append(
        "Matched nothing, so not proven applied (kept in the mix): "
        + (", ".join(c.name for c in unproven) if unproven else "none")
    )
    notes.append(
        "Full scans: "
        + (", ".join(f"{p.name} {p.search}: {' / '.join(p.full_scans)}" for p in scans) or "none")
    )
    for key in slow:
        notes.append(f"Slow (p95 > {SLOW_MS:.0f} ms): {key}; its plan:")
        for plan in plans:
            if plan.name == key:
                notes += [f"  {plan.search}", *(f"    {line}" for line in plan.lines)]
    notes.append(
        "Baseline: one process, sequential, Python sqlite3 on one table resource(type, id, json) "
        "with four expression indexes, each row parsed with orjson: "
        + "; ".join(f"{s.key} = {s.baseline_text}" for s in named)
        + ". The mix has no baseline (token, quantity, composite and reference search over "
        "JSON arrays needs an index of its own)."
    )
    details.update(
        {
            "mix": {**_summary_dict(mix, mix_seconds), "parameters": http.mix_used},
            "mix_kinds": {k: http.latencies.summary(k).as_dict() for k in kinds},
            "totals": http.totals,
            "checks": [vars(c) for c in http.named_checks + http.mix_checks],
            "plans": [vars(p) for p in plans],
            "slow": slow,
        }
    )
    database = options.database or "sqlite (cached data directory)"
    return ScenarioResult(
        scenario="search"
        + ("-postgresql" if options.database else "")
        + ("-quick" * options.quick),
        title=(
            f"Search: {facts.resources:,} resources, {options.search_clients()} clients for "
            f"{options.search_duration():.0f} s per named search, mix "
            f"{options.search_mix_clients()} clients for {options.search_mix_duration():.0f} s"
        ),
        figures=figures,
        published="search req/s Aidbox 3,404 / HAPI 1,005 (8 vCPU each)",
        target=(
            ">= 1,000 req/s on the simple searches (NHS number, name prefix), "
            f"p95 < {SLOW_MS:.0f} ms for every named search, no full scans"
        ),
        settings={
            "patients": options.search_patients(),
            "seed": options.seed,
            "clients": options.search_clients(),
            "mix_clients": options.search_mix_clients(),
            "duration": options.search_duration(),
            "mix_duration": options.search_mix_duration(),
            "workers": options.workers,
            "database": database,
        },
        details=details,
        refusals=http.refusals,
        server_log_problems=problems,
        notes=notes,
    )
