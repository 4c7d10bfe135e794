"""The virtual ward's worklist: each enrolled patient with their latest NEWS2, its band
and trend, how long since the last set, what the set in progress lacks, whether readings
are overdue and which Tasks are open, highest risk first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bevan.clinical.news2 import Band, Parameter
from bevan.fhir import json_text
from bevan.fhir.search import parse_search
from bevan.monitoring.codes import NEWS2_TOKEN
from bevan.monitoring.enrolment import Enrolment, active_enrolments
from bevan.monitoring.escalation import OPEN_STATUSES
from bevan.monitoring.overdue import is_overdue
from bevan.monitoring.readings import Score, missing_from, score_of, window_of
from bevan.store.reading import ReadSession

BAND_RANK = {
    Band.HIGH.value: 5,
    Band.MEDIUM.value: 4,
    Band.LOW_MEDIUM.value: 3,
    Band.LOW.value: 2,
    Band.ZERO.value: 1,
}
# How far back the worklist looks for the readings of a set in progress.
RECENT_READINGS = timedelta(hours=24)


@dataclass
class WardPatient:
    """One row of the worklist."""

    patient_id: str
    enrolment: Enrolment
    latest: Score | None = None
    previous: Score | None = None
    missing: list[Parameter] = field(default_factory=list)
    overdue: bool = False
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trend(self) -> str:
        """Return rising, falling or steady against the score before, or new."""
        if self.latest is None or self.previous is None:
            return "new"
        if self.latest.total > self.previous.total:
            return "rising"
        return "falling" if self.latest.total < self.previous.total else "steady"

    def since_last_set(self, now: datetime) -> timedelta | None:
        return None if self.latest is None else now - self.latest.at

    @property
    def risk(self) -> tuple[int, ...]:
        """Higher first: band, any open stat/asap Task, overdue, total, then the longest wait."""
        band = BAND_RANK.get(self.latest.band, 0) if self.latest else 0
        urgent = any(t.get("priority") in ("stat", "asap") for t in self.tasks)
        total = self.latest.total if self.latest else -1
        wait = -int(self.latest.at.timestamp()) if self.latest else 0
        return (band, int(urgent), int(self.overdue), total, wait)


def latest_scores(session: ReadSession, patient_id: str, count: int = 2) -> list[Score]:
    query = parse_search(
        "Observation",
        [
            ("subject", f"Patient/{patient_id}"),
            ("code", NEWS2_TOKEN),
            ("status", "final"),
            ("_sort", "-date"),
        ],
    )
    out = []
    for hit in session.search(query, limit=count):
        score = score_of(hit.id, json_text.loads(hit.content or "{}"))
        if score is not None:
            out.append(score)
    return out


def open_tasks_of(session: ReadSession, patient_id: str) -> list[dict[str, Any]]:
    query = parse_search(
        "Task", [("subject", f"Patient/{patient_id}"), ("status", ",".join(OPEN_STATUSES))]
    )
    return [json_text.loads(h.content) for h in session.search(query, limit=50) if h.content]


def worklist(
    session: ReadSession,
    patient_ids: set[str],
    window: timedelta,
    now: datetime | None = None,
) -> list[WardPatient]:
    """Return the worklist rows of these patients' active monitoring plans, highest
    risk first."""
    now = now or datetime.now(UTC)
    rows: dict[str, WardPatient] = {}
    for enrolment in active_enrolments(session, patient_ids):
        if enrolment.patient_id in rows:
            continue
        row = WardPatient(enrolment.patient_id, enrolment)
        scores = latest_scores(session, enrolment.patient_id)
        row.latest = scores[0] if scores else None
        row.previous = scores[1] if len(scores) > 1 else None
        recent = window_of(session, enrolment.patient_id, now - RECENT_READINGS, now).readings
        after_last_set = [r for r in recent if row.latest is None or r.at > row.latest.at]
        row.missing = missing_from(after_last_set, window) if after_last_set else []
        row.overdue = is_overdue(enrolment, row.latest.at if row.latest else None, now)
        row.tasks = open_tasks_of(session, enrolment.patient_id)
        rows[enrolment.patient_id] = row
    return sorted(rows.values(), key=lambda r: r.risk, reverse=True)
