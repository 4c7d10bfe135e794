"""Overdue readings: an enrolled patient with no complete set within 1.5 times their
plan's interval gets a routine Task focused on the CarePlan, once; the Task closes itself
when a set arrives (monitoring/scoring.py).

One look reads every active monitoring plan, the current scores recent enough to matter
and the open overdue Tasks, three searches in all however many patients are enrolled:
no per-patient query, so a look every few minutes costs a small share of one core
(benchmarks/virtual_ward.py measures it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bevan.fhir import json_text
from bevan.fhir.dates import format_instant, now_instant
from bevan.fhir.search import parse_search
from bevan.monitoring.codes import NEWS2_TOKEN, OVERDUE, SOURCE, TASK_CODES
from bevan.monitoring.enrolment import ENROLMENT_LIMIT, Enrolment, active_enrolments
from bevan.monitoring.escalation import OPEN_STATUSES, open_tasks, owner_of, task_code
from bevan.monitoring.readings import effective_at, patient_id_of
from bevan.store.reading import ReadSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService


@dataclass
class OverdueLook:
    """What one look found: how many plans, and the Tasks it raised (Task id, patient)."""

    enrolled: int = 0
    overdue: int = 0
    raised: list[tuple[str, str]] = field(default_factory=list)


def latest_sets(session: ReadSession, since: datetime, until: datetime) -> dict[str, datetime]:
    """Return each patient's newest current score effective from since to until."""
    query = parse_search(
        "Observation",
        [
            ("code", NEWS2_TOKEN),
            ("status", "final"),
            ("date", f"ge{format_instant(since)}"),
            ("date", f"le{format_instant(until)}"),
        ],
    )
    latest: dict[str, datetime] = {}
    for hit in session.search(query, limit=ENROLMENT_LIMIT):
        score = json_text.loads(hit.content or "{}")
        patient, at = patient_id_of(score), effective_at(score)
        if (
            patient is not None
            and at is not None
            and (patient not in latest or latest[patient] < at)
        ):
            latest[patient] = at
    return latest


def patients_with_open_overdue_tasks(session: ReadSession) -> set[str]:
    query = parse_search(
        "Task", [("code", f"{TASK_CODES}|{OVERDUE}"), ("status", ",".join(OPEN_STATUSES))]
    )
    return {
        patient
        for hit in session.search(query, limit=ENROLMENT_LIMIT)
        if (patient := patient_id_of(json_text.loads(hit.content or "{}"), "for")) is not None
    }


def is_overdue(enrolment: Enrolment, last_set: datetime | None, now: datetime) -> bool:
    """Return True if no complete set has come within 1.5 intervals (of the last set, or
    of enrolment when none has come yet)."""
    since = last_set or enrolment.since
    return since is not None and now - since > enrolment.overdue_after


def overdue_task(enrolment: Enrolment, last_set: datetime | None) -> dict[str, Any]:
    hours = enrolment.interval.total_seconds() / 3600
    since = (
        f"the last complete set was taken at {format_instant(last_set)}"
        if last_set
        else "no complete set has arrived since enrolment"
    )
    now = now_instant()
    return {
        "resourceType": "Task",
        "meta": {"source": SOURCE},
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": task_code(OVERDUE),
        "description": (
            f"Vital-sign readings overdue: due every {hours:g} hours, and {since}. Contact "
            "the patient to check on them and their equipment."
        ),
        "for": {"reference": f"Patient/{enrolment.patient_id}"},
        "focus": {"reference": f"CarePlan/{enrolment.care_plan_id}"},
        "authoredOn": now,
        "lastModified": now,
    }


def look_for_overdue(service: RecordService, now: datetime | None = None) -> OverdueLook:
    """Raise a routine Task for each enrolled patient whose readings are overdue and who
    has no open one yet; return what the look found."""
    now = now or datetime.now(UTC)
    look = OverdueLook()
    with service.reading() as session:
        enrolments = list(active_enrolments(session))
        look.enrolled = len(enrolments)
        if not enrolments:
            return look
        longest = max(e.overdue_after for e in enrolments)
        latest = latest_sets(session, now - longest, now)
        flagged = patients_with_open_overdue_tasks(session)
    due = [
        (e, latest.get(e.patient_id))
        for e in enrolments
        if is_overdue(e, latest.get(e.patient_id), now)
    ]
    look.overdue = len(due)
    due = [(e, last) for e, last in due if e.patient_id not in flagged]
    # Patients locked in the order every writer takes them (see monitoring/ingest.py).
    due.sort(key=lambda pair: f"Patient/{pair[0].patient_id}")
    if not due:
        return look
    with service.writing() as session:
        for enrolment, last in due:
            if enrolment.patient_id in flagged:
                continue  # two plans for one patient: one Task
            session.lock(f"news2 Patient/{enrolment.patient_id}")
            if open_tasks(session, enrolment.patient_id, OVERDUE):
                continue  # another worker's look raised it meanwhile
            task = overdue_task(enrolment, last)
            owner = owner_of(session, enrolment.patient_id)
            if owner is not None:
                task["owner"] = owner
            result = service.create_in(session, "Task", task)
            assert result.stored is not None
            look.raised.append((result.stored.id, enrolment.patient_id))
            flagged.add(enrolment.patient_id)
    return look
