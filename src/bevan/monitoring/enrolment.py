"""Who is on a virtual ward: an active CarePlan whose activity's scheduledTiming says how
often readings are due, under an EpisodeOfCare whose managingOrganization is the team."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bevan.fhir import json_text
from bevan.fhir.limits import MAX_OR_VALUES
from bevan.fhir.search import parse_search
from bevan.monitoring.readings import patient_id_of
from bevan.store.reading import ReadSession

# Readings are overdue when no complete set has come within this many intervals.
OVERDUE_AFTER_INTERVALS = 1.5
# The most of one kind a single look reads (a nation's virtual wards hold ~10,000 people).
ENROLMENT_LIMIT = 500_000

_UNIT = {
    "s": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
}


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One patient's active monitoring plan: how often a set is due, since when."""

    care_plan_id: str
    patient_id: str
    interval: timedelta
    since: datetime | None  # the plan's start

    @property
    def overdue_after(self) -> timedelta:
        return self.interval * OVERDUE_AFTER_INTERVALS


def interval_of(care_plan: dict[str, Any]) -> timedelta | None:
    """Return how often a plan's readings are due (its first activity's scheduledTiming),
    or None if it says nothing of that."""
    for activity in care_plan.get("activity") or ():
        detail = activity.get("detail") if isinstance(activity, dict) else None
        timing = detail.get("scheduledTiming") if isinstance(detail, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if not isinstance(repeat, dict):
            continue
        unit = _UNIT.get(repeat.get("periodUnit", ""))
        period = repeat.get("period")
        frequency = repeat.get("frequency", 1)
        if unit is None or not isinstance(period, int | float) or not frequency or period <= 0:
            continue
        return unit * float(period) / float(frequency)
    return None


def enrolment_of(id: str, care_plan: dict[str, Any]) -> Enrolment | None:
    patient_id = patient_id_of(care_plan)
    interval = interval_of(care_plan)
    if patient_id is None or interval is None:
        return None
    start = (care_plan.get("period") or {}).get("start")
    since = None
    if isinstance(start, str) and "T" in start:
        try:
            since = datetime.fromisoformat(start)
        except ValueError:
            since = None
    return Enrolment(id, patient_id, interval, since)


def active_enrolments(
    session: ReadSession, patient_ids: set[str] | None = None
) -> Iterator[Enrolment]:
    """Yield every active monitoring plan (of the given patients only, if given)."""
    if patient_ids is None:
        yield from _plans(session, [("status", "active")])
        return
    ordered = sorted(patient_ids)
    for start in range(0, len(ordered), MAX_OR_VALUES):  # a search ORs so many values
        chunk = ordered[start : start + MAX_OR_VALUES]
        subjects = ",".join(f"Patient/{p}" for p in chunk)
        yield from _plans(session, [("status", "active"), ("subject", subjects)])


def _plans(session: ReadSession, pairs: list[tuple[str, str]]) -> Iterator[Enrolment]:
    query = parse_search("CarePlan", pairs)
    for hit in session.search(query, limit=ENROLMENT_LIMIT):
        if hit.content is None:
            continue
        enrolment = enrolment_of(hit.id, json_text.loads(hit.content))
        if enrolment is not None:
            yield enrolment


def organisation_ids(session: ReadSession, organisation: str) -> list[str]:
    """Return the ids of the Organizations an ODS code (or an id) names."""
    query = parse_search(
        "Organization",
        [("identifier", f"https://fhir.nhs.uk/Id/ods-organization-code|{organisation}")],
    )
    ids = [hit.id for hit in session.search(query, limit=10)]
    current = session.current("Organization", organisation) if organisation else None
    if current is not None and not current.deleted and organisation not in ids:
        ids.append(organisation)
    return ids


def patients_of(session: ReadSession, organisation_ids: list[str]) -> set[str]:
    """Return the patients with an active EpisodeOfCare managed by these organisations."""
    if not organisation_ids:
        return set()
    organisations = ",".join(f"Organization/{o}" for o in organisation_ids[:MAX_OR_VALUES])
    query = parse_search("EpisodeOfCare", [("organization", organisations), ("status", "active")])
    out = set()
    for hit in session.search(query, limit=ENROLMENT_LIMIT):
        patient = patient_id_of(json_text.loads(hit.content or "{}"), "patient")
        if patient is not None:
            out.add(patient)
    return out
