"""Web pages: how long the clinician's pages take, against the FHIR API requests each
page stands for, answered by the same server to the same user in the same run.

The summary page reads the Patient and six compartment searches (allergies, problems,
medicines, vital signs, encounters, documents) and renders them with charts; its
baseline is those seven API requests made one after another with the same clinician's
token (so the same access checks and audit). The search page finds a patient by NHS
number; its baseline is `Patient?identifier=`. One client, one request at a time: the
figures are each page's own time, not throughput.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from benchmarks.measure import Latencies
from benchmarks.options import RunOptions
from benchmarks.population import synth_population
from benchmarks.report import Figure, ScenarioResult, latency_cell, ratio
from benchmarks.server import BEVAN, BevanServer

PASSWORD = "benchmark clinician passphrase"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SECTIONS = (
    ("AllergyIntolerance", {"_count": "50"}),
    ("Condition", {"_sort": "-onset-date", "_count": "100"}),
    ("MedicationRequest", {"status": "active", "_sort": "-authoredon", "_count": "50"}),
    ("Observation", {"category": "vital-signs", "_sort": "-date", "_count": "200"}),
    ("Encounter", {"_sort": "-date", "_count": "5"}),
    ("DocumentReference", {"_sort": "-date", "_count": "5"}),
)


def _patients(options: RunOptions) -> int:
    return options.patients or (200 if options.quick else 2000)


def _rounds(options: RunOptions) -> int:
    return 60 if options.quick else 400


def _load(server: BevanServer, options: RunOptions) -> None:
    population = synth_population(_patients(options), options.seed)
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=300) as fhir:
        for bundle in [*population.seeds, *population.patients]:
            answer = fhir.post("", content=bundle.body)
            if answer.status_code != 200:
                raise SystemExit(f"web: {bundle.name} was refused: {answer.text[:300]}")


def _practice_patients(server: BevanServer) -> tuple[str, list[tuple[str, str]]]:
    """Return the ODS code of the practice with most patients among the first hundred,
    and its patients' (id, NHS number)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as fhir:
        page = fhir.get("/Patient", params={"_count": "200"}).json()
        by_practice: dict[str, list[tuple[str, str]]] = {}
        for entry in page.get("entry", []):
            patient = entry["resource"]
            practice = patient["generalPractitioner"][0]["reference"]
            number = next(i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER)
            by_practice.setdefault(practice, []).append((patient["id"], number))
        practice, patients = max(by_practice.items(), key=lambda item: len(item[1]))
        organisation = fhir.get(f"/{practice}").json()
        ods = next(i["value"] for i in organisation["identifier"] if i["system"] == ODS)
    return ods, patients


def _sign_in(root: str) -> tuple[httpx.Client, str]:
    """Return a web client signed in as the benchmark clinician, and its access token."""
    from bevan.web.sessions import WebSession

    client = httpx.Client(base_url=root, follow_redirects=False, timeout=60)
    form = client.get(client.get("/sign-in").headers["location"])
    fields = {
        k: html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.text)
    }
    fields.update(username="bench-clinician", password=PASSWORD, action="sign-in")
    client.get(client.post("/auth/authorize", data=fields).headers["location"])
    session = WebSession.from_cookie(client.cookies.get("bevan_session"))
    if session is None:
        raise SystemExit("web: the benchmark clinician could not sign in")
    return client, session.access_token


def _timed(latencies: Latencies, name: str, call: Callable[[], httpx.Response]) -> None:
    started = time.perf_counter()
    answer = call()
    latencies.add(name, time.perf_counter() - started)
    if answer.status_code != 200:
        raise SystemExit(f"web: {name} answered {answer.status_code}: {answer.text[:300]}")


def run(options: RunOptions) -> ScenarioResult:
    """Time the summary and search pages against their API requests; return the result."""
    print("web: starting a Bevan server ...", file=sys.stderr)
    with BevanServer(options.database, options.workers) as server:
        print(f"web: loading {_patients(options)} synthetic patients ...", file=sys.stderr)
        _load(server, options)
        ods, patients = _practice_patients(server)
        subprocess.run(
            [str(BEVAN), "user", "add", "--username", "bench-clinician", "--role", "clinician"]
            + ["--organisation", ods, "--password-stdin", *server._data_flags()],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        root = server.base_url.removesuffix("/fhir")
        web, token = _sign_in(root)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        csrf = re.findall(r'name="csrf_token" value="([^"]+)"', web.get("/patients").text)[0]
        latencies = Latencies()
        rounds = _rounds(options)
        print(f"web: {rounds} rounds over {len(patients)} patients at {ods}", file=sys.stderr)
        for round_ in range(rounds + 5):
            patient_id, number = patients[round_ % len(patients)]
            warm = round_ < 5
            target = Latencies() if warm else latencies
            _timed(target, "summary page", lambda p=patient_id: web.get(f"/patients/{p}"))
            started = time.perf_counter()
            api.get(f"/Patient/{patient_id}")
            for resource_type, params in SECTIONS:
                api.get(f"/Patient/{patient_id}/{resource_type}", params=params)
            if not warm:
                latencies.add("summary API requests", time.perf_counter() - started)
            _timed(
                target,
                "search page",
                lambda n=number: web.post("/patients", data={"csrf_token": csrf, "nhs_number": n}),
            )
            _timed(
                target,
                "search API request",
                lambda n=number: api.get("/Patient", params={"identifier": f"{NHS_NUMBER}|{n}"}),
            )
        api.close()
        web.close()
        log_problems = server.log_problems()
    figures = []
    for page, baseline in (
        ("summary page", "summary API requests"),
        ("search page", "search API request"),
    ):
        ours, base = latencies.summary(page), latencies.summary(baseline)
        figures.append(
            Figure(
                f"{page} p50 / p95 / p99 ms (baseline: {baseline})",
                latency_cell(ours),
                latency_cell(base),
                ratio(ours.p50_ms, base.p50_ms),
            )
        )
        figures.append(
            Figure(
                f"{page} p95 ms",
                f"{ours.p95_ms:.1f}",
                f"{base.p95_ms:.1f}",
                ratio(ours.p95_ms, base.p95_ms),
            )
        )
    return ScenarioResult(
        scenario="web",
        title=f"Web pages: {rounds} rounds, {_patients(options):,} patients, one client",
        figures=figures,
        published="none (no published FHIR server benchmark times web pages)",
        target="server time per page p95 under 100 ms with 100,000 patients loaded",
        settings={"patients": _patients(options), "rounds": rounds, "seed": options.seed},
        details={name: latencies.summary(name).as_dict() for name in latencies.operations()},
        server_log_problems=log_problems,
        notes=["ratio: ours / baseline at p50 (and at p95 on the p95 row)"],
    )
