"""A patient's recent readings and scores, read from the store in one search, and the
sets they make: what scoring on arrival, overdue detection and the worklist all ask."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bevan.clinical.news2 import Parameter
from bevan.clinical.vital_signs import COUNTED_STATUSES, Reading, UnreadableReading, reading_of
from bevan.fhir import json_text
from bevan.fhir.dates import format_instant
from bevan.fhir.search import parse_search
from bevan.monitoring.codes import IMPLAUSIBLE_TAG, NEWS2_CODE, SNOMED
from bevan.store.reading import ReadSession

# The most Observations one look at a patient's window reads: a day of sets, several times.
WINDOW_LIMIT = 500
PARAMETERS = tuple(Parameter)


@dataclass(frozen=True, slots=True)
class TimedReading:
    """A reading with its Observation's id and effective time."""

    id: str
    at: datetime
    reading: Reading


@dataclass(frozen=True, slots=True)
class Score:
    """A stored NEWS2 Observation, as far as the virtual ward needs it."""

    id: str
    at: datetime
    status: str
    total: int
    band: str
    inputs: frozenset[str]  # the ids of the Observations it derives from
    content: dict[str, Any]

    @property
    def current(self) -> bool:
        return self.status == "final"


@dataclass
class Window:
    """What a patient's record holds within one span of time."""

    readings: list[TimedReading] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)


def effective_at(resource: dict[str, Any]) -> datetime | None:
    """Return an Observation's effective time (dateTime, instant or period start), or None
    when it has none to the second (a date alone is no time of a set)."""
    text = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
    if text is None:
        period = resource.get("effectivePeriod")
        text = period.get("start") if isinstance(period, dict) else None
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def patient_id_of(resource: dict[str, Any], element: str = "subject") -> str | None:
    """Return the id of the Patient an element refers to (relative or absolute), or None."""
    ref = resource.get(element)
    text = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str):
        return None
    head, _, id = text.rpartition("/")
    if not id or not (head == "Patient" or head.endswith("/Patient")):
        return None
    return id


def is_score(resource: dict[str, Any]) -> bool:
    code = resource.get("code")
    coding = code.get("coding") if isinstance(code, dict) else None
    return isinstance(coding, list) and any(
        isinstance(c, dict) and c.get("code") == NEWS2_CODE and c.get("system") == SNOMED
        for c in coding
    )


def is_marked_implausible(resource: dict[str, Any]) -> bool:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return isinstance(tags, list) and any(
        isinstance(t, dict)
        and t.get("system") == IMPLAUSIBLE_TAG["system"]
        and t.get("code") == IMPLAUSIBLE_TAG["code"]
        for t in tags
    )


def scored_reading(resource: dict[str, Any]) -> Reading | None:
    """Return the reading an Observation contributes to a set, or None: not a reading,
    not final, marked implausible, or unreadable."""
    if resource.get("status") not in COUNTED_STATUSES or is_marked_implausible(resource):
        return None
    try:
        return reading_of(resource)
    except UnreadableReading:
        return None


def score_of(id: str, resource: dict[str, Any]) -> Score | None:
    at = effective_at(resource)
    if at is None:
        return None
    total = resource.get("valueQuantity", {}).get("value")
    band = ""
    for concept in resource.get("interpretation") or ():
        for coding in concept.get("coding") or ():
            band = coding.get("code") or band
    inputs = frozenset(
        ref.get("reference", "").rpartition("/")[2] for ref in resource.get("derivedFrom") or ()
    )
    return Score(
        id,
        at,
        resource.get("status", ""),
        int(total) if isinstance(total, int | float) else 0,
        band,
        inputs,
        resource,
    )


def window_of(session: ReadSession, patient_id: str, start: datetime, end: datetime) -> Window:
    """Return the patient's readings and scores effective from start to end (one search)."""
    query = parse_search(
        "Observation",
        [
            ("subject", f"Patient/{patient_id}"),
            ("date", f"ge{format_instant(start)}"),
            ("date", f"le{format_instant(end)}"),
        ],
    )
    return sorted_window(
        (hit.id, json_text.loads(hit.content))
        for hit in session.search(query, limit=WINDOW_LIMIT)
        if hit.content is not None
    )


def sorted_window(found: Iterable[tuple[str, dict[str, Any]]]) -> Window:
    window = Window()
    for id, resource in found:
        if is_score(resource):
            score = score_of(id, resource)
            if score is not None:
                window.scores.append(score)
            continue
        reading = scored_reading(resource)
        at = effective_at(resource)
        if reading is not None and at is not None:
            window.readings.append(TimedReading(id, at, reading))
    window.readings.sort(key=lambda r: r.at)
    window.scores.sort(key=lambda s: s.at)
    return window


def set_around(
    readings: list[TimedReading], anchor: TimedReading, span: timedelta
) -> dict[Parameter, TimedReading] | None:
    """Return the complete set holding anchor (for each other parameter the reading
    nearest to it in time, all within span of each other), or None if there is none."""
    chosen: dict[Parameter, TimedReading] = {anchor.reading.parameter: anchor}
    for parameter in PARAMETERS:
        if parameter in chosen:
            continue
        near = [r for r in readings if r.reading.parameter is parameter]
        if not near:
            return None
        chosen[parameter] = min(near, key=lambda r: (abs(r.at - anchor.at), r.id))
    times = [r.at for r in chosen.values()]
    if max(times) - min(times) > span:
        return None
    return chosen


def missing_from(readings: list[TimedReading], span: timedelta) -> list[Parameter]:
    """Return the parameters missing from the latest readings' set (those within span of
    the latest reading), in the chart's order."""
    if not readings:
        return list(PARAMETERS)
    latest = readings[-1].at
    present = {r.reading.parameter for r in readings if latest - r.at <= span}
    return [p for p in PARAMETERS if p not in present]
