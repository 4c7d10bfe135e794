"""`bevan synth`'s virtual ward cohort, loaded as its devices would send it (each set
when it reached the record, late ones late) and scored, over real HTTP on both engines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from bevan.app import record_service
from bevan.config import Settings
from bevan.monitoring.overdue import look_for_overdue
from bevan.synth import generate_patients
from bevan.synth.bundles import shared_bundle
from tests.conftest import RunningServer
from tests.monitoring.readings import scores, tasks, transaction

SEED = 5
POOL = 400  # patients drawn; a few per cent are on a virtual ward
IMPLAUSIBLE = "https://bevan.nhs.uk/fhir/CodeSystem/reading-quality|implausible"
NDJSON = {"Content-Type": "application/fhir+ndjson"}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _is_reading(resource: dict[str, Any]) -> bool:
    return resource["resourceType"] == "Observation" and bool(resource.get("basedOn"))


def _late(readings: list[dict[str, Any]]) -> bool:
    return any(
        _when(r["issued"]) - _when(r["effectiveDateTime"]) > timedelta(hours=4) for r in readings
    )


def _active_gap(record: list[dict[str, Any]]) -> bool:
    plan = next(r for r in record if r["resourceType"] == "CarePlan")
    if plan["status"] != "active":
        return False
    times = sorted({_when(r["effectiveDateTime"]) for r in record if _is_reading(r)})
    return any(b - a > timedelta(hours=30) for a, b in zip(times, times[1:], strict=False))


def _cohort() -> list[list[dict[str, Any]]]:
    """Return a few virtual ward records: between them a set that arrived late, a day
    without readings during an active admission, and the rest as they come."""
    ward = [
        record for record in generate_patients(POOL, SEED) if any(_is_reading(r) for r in record)
    ]
    chosen = [next(r for r in ward if _active_gap(r))]
    chosen.append(
        next(r for r in ward if r not in chosen and _late([x for x in r if _is_reading(x)]))
    )
    chosen += [r for r in ward if r not in chosen][:1]
    return chosen


COHORT = _cohort()


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> list[list[dict[str, Any]]]:
    with server.client() as fhir:
        fhir.post("/", json=shared_bundle(SEED)).raise_for_status()
        for record in COHORT:
            others = [r for r in record if not _is_reading(r)]
            fhir.post("/", json=transaction(others)).raise_for_status()
            readings = sorted((r for r in record if _is_reading(r)), key=lambda r: r["issued"])
            body = b"\n".join(json.dumps(r).encode() for r in readings)
            response = fhir.post("/Observation/$ingest", content=body, headers=NDJSON)
            assert response.status_code == 200, response.text
            assert (
                response.json()["issue"][0]["diagnostics"]
                == f"{len(readings)} of {len(readings)} lines stored"
            )
    return COHORT


def _patient(record: list[dict[str, Any]]) -> str:
    return str(record[0]["id"])


def test_every_complete_set_is_scored_and_a_raised_score_gives_a_task(
    loaded, fhir: httpx.Client
) -> None:
    raised = 0
    for record in loaded:
        patient = _patient(record)
        found = scores(fhir, patient, _count="500")
        assert found, f"no set of Patient/{patient} was scored"
        bands = {s["interpretation"][0]["coding"][0]["code"] for s in found}
        escalations = tasks(
            fhir,
            patient,
            code="https://bevan.nhs.uk/fhir/CodeSystem/virtual-ward-task|news2-escalation",
        )
        if bands & {"low-medium", "medium", "high"}:
            assert escalations, f"Patient/{patient} scored {bands} but has no Task"
            raised += 1
            owner = escalations[0]["owner"]["reference"]
            episode = next(r for r in record if r["resourceType"] == "EpisodeOfCare")
            practice = next(
                g["reference"]
                for g in record[0]["generalPractitioner"]
                if g["reference"].startswith("Organization/")
            )
            enrolled = episode["status"] == "active"
            assert owner == (episode["managingOrganization"]["reference"] if enrolled else practice)
    assert raised, "no patient in the cohort deteriorated"


def test_a_late_set_is_scored_for_the_record_but_raises_no_task(loaded, fhir: httpx.Client) -> None:
    record = loaded[1]
    patient = _patient(record)
    found = scores(fhir, patient, _count="500")
    lags = [s for s in found if s["extension"][0]["valueDuration"]["value"] > 4 * 3600]
    newest_first = sorted(found, key=lambda s: s["issued"])
    late = [
        s for n, s in enumerate(newest_first)
        if any(o["effectiveDateTime"] > s["effectiveDateTime"] for o in newest_first[:n])
    ]  # fmt: skip
    assert lags and late
    focused = set()
    for task in tasks(fhir, patient):
        history = fhir.get(f"/Task/{task['id']}/_history", params={"_count": "500"}).json()
        focused |= {e["resource"]["focus"]["reference"] for e in history.get("entry", [])}
    assert not focused & {f"Observation/{s['id']}" for s in late}


def test_an_artefact_is_stored_marked_and_never_scored(loaded, fhir: httpx.Client) -> None:
    marked = fhir.get("/Observation", params={"_tag": IMPLAUSIBLE, "_count": "500"}).json()
    artefacts = {f"Observation/{e['resource']['id']}" for e in marked.get("entry", [])}
    assert artefacts  # about 1 % of the synthetic readings are artefacts
    for record in loaded:
        for score in scores(fhir, _patient(record), _count="500"):
            assert not {d["reference"] for d in score["derivedFrom"]} & artefacts


def test_a_missed_day_gets_an_overdue_task_that_a_new_set_closes(
    loaded, server: RunningServer, fhir: httpx.Client
) -> None:
    from tests.monitoring.readings import reading_set

    record = loaded[0]
    patient = _patient(record)
    plan = next(r for r in record if r["resourceType"] == "CarePlan")
    times = sorted(
        _when(s["effectiveDateTime"]) for s in scores(fhir, patient, _count="500", status="final")
    )
    before, after = next(
        (a, b) for a, b in zip(times, times[1:], strict=False) if b - a > timedelta(hours=30)
    )
    repeat = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    interval = timedelta(days=1) / repeat["frequency"]
    during = before + interval * 1.5 + timedelta(minutes=5)
    assert during < after
    service = record_service(Settings(data_dir=server.data_dir), server.store)
    look = look_for_overdue(service, now=during)
    assert patient in {p for _, p in look.raised}
    overdue = tasks(
        fhir,
        patient,
        code="https://bevan.nhs.uk/fhir/CodeSystem/virtual-ward-task|overdue-readings",
    )
    (task,) = overdue
    assert (task["status"], task["priority"]) == ("requested", "routine")
    assert task["focus"]["reference"] == f"CarePlan/{plan['id']}"
    again = look_for_overdue(service, now=during)
    assert patient not in {p for _, p in again.raised}
    now_set = reading_set(patient, datetime.now().astimezone().isoformat(timespec="seconds"))
    fhir.post("/", json=transaction(now_set)).raise_for_status()
    closed = fhir.get(f"/Task/{task['id']}").json()
    assert closed["status"] == "completed"
    assert "complete set" in closed["note"][-1]["text"]


def test_bevan_ward_overdue_looks_once_and_audits_what_it_raised(
    loaded, server: RunningServer, fhir: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from bevan.cli import main
    from bevan.store.audit import AuditLog

    url = str(server.store.engine.url.render_as_string(hide_password=False))
    args = ["--data-dir", str(server.data_dir), "--database", url]
    assert main(["ward", "overdue", *args, "--at", "2099-01-01T00:00:00+00:00"]) == 0
    printed = capsys.readouterr().out
    raised = [line.split()[0] for line in printed.splitlines()[1:]]
    assert raised  # the cohort's first admission is active; by 2099 it is overdue
    entries = AuditLog(server.store.engine).find(user_id="bevan-virtual-ward", limit=2000)
    for task in raised:
        assert any(task in entry.content for entry in entries), f"{task} was not audited"
