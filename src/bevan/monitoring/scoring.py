"""NEWS2 scored on arrival: the write rule that refuses impossible readings, marks
implausible ones, and scores every complete set as the reading that completes it is
written, in the same transaction, escalating when the band calls for a response.

Whatever door a reading comes through (one by one, a transaction or batch Bundle,
$ingest, the loader), the patient's readings around it are looked up with one search the
first time a request writes one of theirs, and remembered for the rest of that request
(KnownPatient), so a set's seven readings cost one search, not seven; a set is scored
once. A corrected reading (an update, a delete, or one
now marked implausible) supersedes the score it fed: the old score's status becomes
entered-in-error (it is never left looking current) and the set is scored again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from bevan.clinical.news2 import News2, Parameter, VitalSigns, news2_score
from bevan.clinical.plausibility import implausible, impossible
from bevan.clinical.vital_signs import Reading, UnreadableReading, reading_of
from bevan.fhir import json_text
from bevan.fhir.dates import format_instant, now_instant
from bevan.fhir.errors import BusinessRuleViolation, Issue
from bevan.fhir.search import parse_search
from bevan.monitoring.codes import (
    ARRIVAL_LAG_URL,
    BAND_DISPLAY,
    BAND_SYSTEM,
    ESCALATION,
    IMPLAUSIBLE_TAG,
    NEWS2_CONCEPT,
    OBSERVATION_CATEGORY,
    OVERDUE,
    SNOMED,
    SOURCE,
    SPO2_SCALE_CODES,
    SUB_SCORE_CODES,
    UCUM,
)
from bevan.monitoring.escalation import close_tasks, escalate, open_ward_tasks
from bevan.monitoring.readings import (
    Score,
    TimedReading,
    Window,
    effective_at,
    is_score,
    patient_id_of,
    score_of,
    scored_reading,
    set_around,
    window_of,
)
from bevan.records.write_rules import Written
from bevan.store.reading import ReadSession
from bevan.store.writing import WriteSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService

SPO2_CODES = ("2708-6", "59408-5")
SCALE_2_RANGE = (88, 92)
DEFAULT_WINDOW = timedelta(minutes=15)


class ScoringOnArrival:
    """The write rule of Observations: plausibility, then NEWS2 for each complete set."""

    resource_types = frozenset({"Observation"})

    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        self.window = window  # the readings of one set are all taken within it
        # What each open writing transaction knows of the patients it wrote readings of.
        self._sessions: WeakKeyDictionary[WriteSession, dict[str, KnownPatient]] = (
            WeakKeyDictionary()
        )

    # --- before the version is made ------------------------------------------------

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        """Refuse an impossible reading (422, naming the element and the limit); mark an
        implausible one, and unmark one that is not (a client cannot choose either)."""
        if is_score(resource):
            return
        try:
            reading = reading_of(resource)
        except UnreadableReading as error:
            raise BusinessRuleViolation(Issue(str(error), expression=(error.expression,))) from None
        why_not = reading and implausible(reading)
        if reading is not None:
            cannot = impossible(reading)
            if cannot is not None:
                raise BusinessRuleViolation(
                    Issue(
                        f"{cannot.message}; nothing of this request was stored",
                        code="business-rule",
                        expression=(reading.element,),
                    )
                )
        meta = resource.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        tags = [
            t
            for t in meta.get("tag") or ()
            if not (
                isinstance(t, dict)
                and t.get("system") == IMPLAUSIBLE_TAG["system"]
                and t.get("code") == IMPLAUSIBLE_TAG["code"]
            )
        ]
        if why_not:
            tags.append(IMPLAUSIBLE_TAG)
        if tags:
            meta["tag"] = tags
        else:
            meta.pop("tag", None)
        resource["meta"] = meta

    # --- inside the writing transaction ---------------------------------------------

    def written(self, service: RecordService, written: Written) -> None:
        resource = written.resource
        if resource is not None and is_score(resource):
            return
        earlier = None if written.created else written.previous()
        reading = scored_reading(resource) if resource is not None else None
        was_reading = earlier is not None and reading_of_quietly(earlier)
        if reading is None and not was_reading:
            return
        source = resource if resource is not None else earlier
        assert source is not None
        patient_id = patient_id_of(source)
        at = effective_at(source)
        if patient_id is None or at is None:
            return
        session = written.session
        try:
            self._score(service, written, patient_id, at, reading)
        except BaseException:
            # The write is undone (its savepoint rolls back): forget what it taught.
            self._sessions.get(session, {}).pop(patient_id, None)
            raise

    def _score(
        self,
        service: RecordService,
        written: Written,
        patient_id: str,
        at: datetime,
        reading: Reading | None,
    ) -> None:
        """Note the reading written (or undone) and score the set it completes."""
        session = written.session
        known = self._patient(session, patient_id)
        start, end = at - self.window, at + self.window
        if not known.covers(start, end):
            known.learn(window_of(session, patient_id, start, end), start, end)
        if not written.created:
            for score in list(known.scores.values()):
                if score.current and written.id in score.inputs:
                    supersede(service, session, score)
                    known.scores[score.id] = replace(score, status="entered-in-error")
        known.readings.pop(written.id, None)
        if reading is None:
            return
        anchor = TimedReading(written.id, at, reading)
        known.readings[written.id] = anchor
        near = [r for r in known.readings.values() if start <= r.at <= end]
        chosen = set_around(near, anchor, self.window)
        if chosen is None:
            return
        ids = {r.id for r in chosen.values()}
        if any(s.current and s.inputs & ids for s in known.scores.values()):
            return  # this set, or one sharing its readings, is already scored
        score_set(service, session, patient_id, chosen, known)

    def _patient(self, session: WriteSession, patient_id: str) -> KnownPatient:
        """Return what this transaction knows of a patient, locking the patient's
        readings against other writers the first time it is asked."""
        patients = self._sessions.get(session)
        if patients is None:
            patients = self._sessions[session] = {}
        known = patients.get(patient_id)
        if known is None:
            session.lock(f"news2 Patient/{patient_id}")
            known = patients[patient_id] = KnownPatient()
        return known


@dataclass
class KnownPatient:
    """What one writing transaction has read and written of a patient's readings and
    scores: the readings of one request's sets are looked up once, not once each.

    Sound because the patient is locked for the rest of the transaction (PostgreSQL) or
    the transaction is the database's one writer (SQLite): nobody else adds to it.
    """

    readings: dict[str, TimedReading] = field(default_factory=dict)
    scores: dict[str, Score] = field(default_factory=dict)
    spans: list[tuple[datetime, datetime]] = field(default_factory=list)
    scale: int | None = None
    newest: datetime | None = None
    newest_known: bool = False
    tasks: dict[str, list[dict[str, Any]]] | None = None  # open Tasks by kind, once looked up

    def covers(self, start: datetime, end: datetime) -> bool:
        return any(low <= start and end <= high for low, high in self.spans)

    def learn(self, window: Window, start: datetime, end: datetime) -> None:
        for timed in window.readings:
            self.readings.setdefault(timed.id, timed)
        for score in window.scores:
            self.scores.setdefault(score.id, score)
        self.spans.append((start, end))


def reading_of_quietly(resource: dict[str, Any]) -> bool:
    try:
        return reading_of(resource) is not None
    except UnreadableReading:
        return False


def supersede(service: RecordService, session: Any, score: Score) -> None:
    """Mark a score entered-in-error: a reading it was made from has been corrected."""
    content = dict(score.content)
    content["status"] = "entered-in-error"
    content["meta"] = {"source": SOURCE}
    note = f"Superseded at {now_instant()}: a reading it was scored from was corrected."
    content["note"] = [*(content.get("note") or ()), {"text": note}]
    service.update_in(session, "Observation", score.id, content)


def scale_of(session: ReadSession, patient_id: str) -> int:
    """Return 2 if the patient has an active Goal targeting SpO2 88-92 %, else 1."""
    query = parse_search(
        "Goal", [("subject", f"Patient/{patient_id}"), ("lifecycle-status", "active")]
    )
    for hit in session.search(query, limit=20):
        goal = json_text.loads(hit.content or "{}")
        for target in goal.get("target") or ():
            measure = target.get("measure") or {}
            codes = {c.get("code") for c in measure.get("coding") or ()}
            detail = target.get("detailRange") or {}
            low = (detail.get("low") or {}).get("value")
            high = (detail.get("high") or {}).get("value")
            if codes & set(SPO2_CODES) and (low, high) == SCALE_2_RANGE:
                return 2
    return 1


def newest_score_at(session: ReadSession, patient_id: str) -> datetime | None:
    """Return the effective time of the patient's newest current score, or None."""
    query = parse_search(
        "Observation",
        [
            ("subject", f"Patient/{patient_id}"),
            ("code", f"{SNOMED}|{NEWS2_CONCEPT['coding'][0]['code']}"),
            ("status", "final"),
            ("_sort", "-date"),
        ],
    )
    for hit in session.search(query, limit=1):
        return effective_at(json_text.loads(hit.content or "{}"))
    return None


def vital_signs_of(chosen: dict[Parameter, TimedReading]) -> VitalSigns:
    def value(parameter: Parameter) -> float:
        measured = chosen[parameter].reading.value
        assert measured is not None
        return measured

    consciousness = chosen[Parameter.CONSCIOUSNESS].reading.consciousness
    assert consciousness is not None
    return VitalSigns(
        respiration_rate=value(Parameter.RESPIRATION_RATE),
        spo2=value(Parameter.SPO2),
        on_oxygen=bool(chosen[Parameter.AIR_OR_OXYGEN].reading.on_oxygen),
        systolic=value(Parameter.SYSTOLIC),
        pulse=value(Parameter.PULSE),
        consciousness=consciousness,
        temperature=value(Parameter.TEMPERATURE),
    )


def score_set(
    service: RecordService,
    session: Any,
    patient_id: str,
    chosen: dict[Parameter, TimedReading],
    known: KnownPatient,
) -> dict[str, Any]:
    """Score a complete set, write its NEWS2 Observation and escalate; return the score."""
    set_at = max(r.at for r in chosen.values())
    if not known.newest_known:
        known.newest, known.newest_known = newest_score_at(session, patient_id), True
    late = known.newest is not None and set_at < known.newest
    if known.scale is None:
        known.scale = scale_of(session, patient_id)
    score = news2_score(vital_signs_of(chosen), scale=known.scale)
    if not late and known.tasks is None:
        # Looked up before the score is written, beside the lookups above: a search
        # first stores the rows the writer holds back, so searches are kept together.
        known.tasks = open_ward_tasks(session, patient_id)
    arrived = datetime.now(UTC)
    observation = news2_observation(patient_id, chosen, score, set_at, arrived)
    service.create_in(session, "Observation", observation)
    stored = score_of(observation["id"], observation)
    assert stored is not None
    known.scores[stored.id] = stored
    if not late:
        assert known.tasks is not None
        known.newest = set_at
        task = escalate(
            service, session, patient_id, score, observation["id"], ESCALATION,
            known.tasks[ESCALATION],
        )  # fmt: skip
        if task is not None:
            known.tasks[ESCALATION] = [task]
        if known.tasks[OVERDUE]:
            close_tasks(
                service,
                session,
                patient_id,
                OVERDUE,
                f"A complete set of readings taken at {format_instant(set_at)} arrived.",
                known.tasks[OVERDUE],
            )
            known.tasks[OVERDUE] = []
    return observation


def news2_observation(
    patient_id: str,
    chosen: dict[Parameter, TimedReading],
    score: News2,
    set_at: datetime,
    arrived: datetime,
) -> dict[str, Any]:
    """Return the NEWS2 Observation of a set, in the shape UK Core gives early warning
    scores, with how long after the set it arrived."""
    components = []
    for parameter in Parameter:
        if parameter is Parameter.SPO2:
            code, display = SPO2_SCALE_CODES[score.scale]
        else:
            code, display = SUB_SCORE_CODES[parameter]
        components.append(
            {
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
                "valueQuantity": {
                    "value": score.scores[parameter],
                    "unit": "score",
                    "system": UCUM,
                    "code": "{ScoreOf}",
                },
            }
        )
    lag = max((arrived - set_at).total_seconds(), 0.0)
    return {
        "resourceType": "Observation",
        "meta": {"source": SOURCE},
        "extension": [
            {
                "url": ARRIVAL_LAG_URL,
                "valueDuration": {
                    "value": round(lag, 3),
                    "unit": "s",
                    "system": UCUM,
                    "code": "s",
                },
            }
        ],
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
        ],
        "code": NEWS2_CONCEPT,
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": format_instant(set_at),
        "issued": format_instant(arrived),
        "valueQuantity": {
            "value": score.total,
            "unit": "score",
            "system": UCUM,
            "code": "{ScoreOf}",
        },
        "interpretation": [
            {
                "coding": [
                    {
                        "system": BAND_SYSTEM,
                        "code": score.band.value,
                        "display": BAND_DISPLAY[score.band],
                    }
                ],
                "text": score.response,
            }
        ],
        "derivedFrom": [
            {"reference": f"Observation/{r.id}"}
            for r in sorted(chosen.values(), key=lambda r: r.id)
        ],
        "component": components,
    }
