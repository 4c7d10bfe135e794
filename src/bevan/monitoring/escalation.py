"""Tasks the virtual ward raises: a response to a raised NEWS2 score, and readings
overdue; each owned by the team responsible for the patient."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bevan.clinical.news2 import RESPONSE, Band, News2
from bevan.fhir import json_text
from bevan.fhir.dates import now_instant
from bevan.fhir.search import parse_search
from bevan.monitoring.codes import (
    ESCALATION,
    OVERDUE,
    PRIORITY,
    PRIORITY_RANK,
    SOURCE,
    TASK_CODES,
    TASK_DISPLAY,
)
from bevan.store.reading import ReadSession
from bevan.store.writing import WriteSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService

OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


def owner_of(session: ReadSession, patient_id: str) -> dict[str, str] | None:
    """Return a reference to the team responsible for a patient: the managing
    organisation of their active EpisodeOfCare, else their registered practice."""
    query = parse_search(
        "EpisodeOfCare", [("patient", f"Patient/{patient_id}"), ("status", "active")]
    )
    for hit in session.search(query, limit=5):
        episode = json_text.loads(hit.content or "{}")
        organisation = episode.get("managingOrganization")
        if isinstance(organisation, dict) and organisation.get("reference"):
            return {"reference": organisation["reference"]}
    patient = session.current("Patient", patient_id)
    if patient is None or patient.content is None:
        return None
    for practitioner in json_text.loads(patient.content).get("generalPractitioner") or ():
        reference = practitioner.get("reference", "")
        if "Organization/" in reference:
            return {"reference": reference}
    return None


def open_tasks(session: ReadSession, patient_id: str, kind: str) -> list[dict[str, Any]]:
    """Return the patient's open Tasks of one kind (escalation or overdue)."""
    query = parse_search(
        "Task",
        [
            ("subject", f"Patient/{patient_id}"),
            ("code", f"{TASK_CODES}|{kind}"),
            ("status", ",".join(OPEN_STATUSES)),
        ],
    )
    return [json_text.loads(h.content) for h in session.search(query, limit=50) if h.content]


def open_ward_tasks(session: ReadSession, patient_id: str) -> dict[str, list[dict[str, Any]]]:
    """Return the patient's open escalation and overdue Tasks, by kind, in one search."""
    query = parse_search(
        "Task",
        [
            ("subject", f"Patient/{patient_id}"),
            ("code", f"{TASK_CODES}|{ESCALATION},{TASK_CODES}|{OVERDUE}"),
            ("status", ",".join(OPEN_STATUSES)),
        ],
    )
    found: dict[str, list[dict[str, Any]]] = {ESCALATION: [], OVERDUE: []}
    for hit in session.search(query, limit=50):
        task = json_text.loads(hit.content or "{}")
        for coding in (task.get("code") or {}).get("coding") or ():
            if coding.get("system") == TASK_CODES and coding.get("code") in found:
                found[coding["code"]].append(task)
    return found


def task_code(kind: str) -> dict[str, Any]:
    return {"coding": [{"system": TASK_CODES, "code": kind, "display": TASK_DISPLAY[kind]}]}


def escalation_description(score: News2) -> str:
    return (
        f"NEWS2 {score.total} ({score.band.value} clinical risk, SpO2 scale {score.scale}). "
        f"RCP response: {RESPONSE[score.band]}"
    )


def escalate(
    service: RecordService,
    session: WriteSession,
    patient_id: str,
    score: News2,
    score_id: str,
    kind: str,
    open_: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Raise a Task for a score in a band that calls for a response, or update the
    patient's open one (open_: those already looked up; its priority never lowered);
    return the Task, or None."""
    priority = PRIORITY.get(score.band)
    if priority is None:
        return None
    now = now_instant()
    if open_ is None:
        open_ = open_tasks(session, patient_id, kind)
    if open_:
        task = dict(open_[0])
        if PRIORITY_RANK.get(task.get("priority", ""), 0) > PRIORITY_RANK[priority]:
            priority = task["priority"]
        task.update(
            priority=priority,
            focus={"reference": f"Observation/{score_id}"},
            description=escalation_description(score),
            lastModified=now,
        )
        task.pop("meta", None)
        task["meta"] = {"source": SOURCE}
        service.update_in(session, "Task", task["id"], task)
        return task
    task = {
        "resourceType": "Task",
        "meta": {"source": SOURCE},
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": task_code(kind),
        "description": escalation_description(score),
        "for": {"reference": f"Patient/{patient_id}"},
        "focus": {"reference": f"Observation/{score_id}"},
        "authoredOn": now,
        "lastModified": now,
    }
    owner = owner_of(session, patient_id)
    if owner is not None:
        task["owner"] = owner
    service.create_in(session, "Task", task)
    return task


def close_tasks(
    service: RecordService,
    session: WriteSession,
    patient_id: str,
    kind: str,
    note: str,
    open_: list[dict[str, Any]] | None = None,
) -> int:
    """Complete the patient's open Tasks of one kind (open_: those already looked up)
    with a note; return how many."""
    now = now_instant()
    closed = 0
    for task in open_tasks(session, patient_id, kind) if open_ is None else open_:
        task = dict(task)
        task["status"] = "completed"
        task["lastModified"] = now
        task["note"] = [*(task.get("note") or ()), {"time": now, "text": note}]
        task["meta"] = {"source": SOURCE}
        service.update_in(session, "Task", task["id"], task)
        closed += 1
    return closed


def band_needs_response(band: Band) -> bool:
    return band in PRIORITY
