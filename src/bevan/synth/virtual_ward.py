"""Virtual ward (hospital at home) admissions with remote vital-sign monitoring.

A few per cent of adults, many more among people with COPD or heart failure, are on a
trust's virtual ward: an EpisodeOfCare, an Encounter at home, a CarePlan saying how often
to measure, and the NEWS2 readings themselves. The readings are deliberately imperfect,
as real ones are: some patients deteriorate over hours to days, readings are missed, a
few values are device or typing artefacts, and some arrive hours after they were taken.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from bevan.synth import codes
from bevan.synth.conditions import Diagnosis
from bevan.synth.observations import (
    BODY_TEMPERATURE,
    HEART_RATE,
    INHALED_OXYGEN_FLOW,
    OXYGEN_SATURATION,
    RESPIRATORY_RATE,
    blood_pressure,
    measured,
    observation,
)
from bevan.synth.organisations import Trust
from bevan.synth.references import RecordContext, instant, shared_ref

# Chance of a virtual ward admission in the recent past (approximate; virtual wards in
# England hold roughly 10,000 patients at a time, mostly older people with respiratory
# or heart failure exacerbations, frailty or early supported discharge).
ADMISSION_CHANCE_BY_CONDITION = {"heart-failure": 0.15, "copd": 0.15}
ADMISSION_CHANCE_65_AND_OVER = 0.06
ADMISSION_CHANCE_ADULT = 0.02

DETERIORATION_SHARE = 0.3  # of admissions, a decline over hours to days
SCALE_2_SHARE_OF_COPD = 0.5  # hypercapnic respiratory failure: SpO2 target 88-92%
HOME_OXYGEN_SHARE_OF_SCALE_2 = 0.35
MISSED_SET_CHANCE = 0.07
MISSED_DAY_SHARE = 0.25  # admissions with one whole day without readings
MISSED_READING_CHANCE = 0.03  # one measurement left out of a set
ARTEFACT_CHANCE = 0.012  # an implausible value (probe off, typo, wrong unit)
LATE_SET_CHANCE = 0.05  # a set that reaches the record hours after it was taken

SET_TIMES = {
    2: ((8, 0), (20, 0)),
    3: ((8, 0), (14, 0), (20, 0)),
    4: ((8, 0), (12, 0), (16, 0), (20, 0)),
}

LOWER_RESPIRATORY_INFECTION = ("50417007", "Lower respiratory tract infection")


@dataclass(frozen=True, slots=True)
class Admission:
    """One virtual ward stay: when, why, how often readings are due and how it goes."""

    start: datetime
    end: datetime
    active: bool
    reason: Diagnosis | None
    sets_per_day: int
    scale_2: bool
    home_oxygen: bool
    deteriorates: bool


def draw_admission(
    rng: random.Random, context: RecordContext, age: int, diagnoses: list[Diagnosis]
) -> Admission | None:
    """Return a virtual ward admission for this patient, or None (most patients)."""
    if age < 18:
        return None
    keys = {d.condition.key: d for d in diagnoses}
    chance = ADMISSION_CHANCE_65_AND_OVER if age >= 65 else ADMISSION_CHANCE_ADULT
    for key, raised in ADMISSION_CHANCE_BY_CONDITION.items():
        if key in keys:
            chance = max(chance, raised)
    if rng.random() >= chance:
        return None
    reason = keys.get("heart-failure") or keys.get("copd")
    if reason is not None and "copd" in keys and "heart-failure" in keys and rng.random() < 0.5:
        reason = keys["copd"]
    start_day = context.today - timedelta(days=rng.randint(1, 40))
    start = datetime.combine(start_day, time(rng.randint(10, 17), 0), tzinfo=UTC)
    end = start + timedelta(days=rng.randint(5, 14), hours=rng.randint(0, 6))
    scale_2 = "copd" in keys and rng.random() < SCALE_2_SHARE_OF_COPD
    return Admission(
        start=start,
        end=min(end, context.as_at),
        active=end > context.as_at,
        reason=reason,
        sets_per_day=rng.choice((2, 3, 3, 4)),
        scale_2=scale_2,
        home_oxygen=scale_2 and rng.random() < HOME_OXYGEN_SHARE_OF_SCALE_2,
        deteriorates=rng.random() < DETERIORATION_SHARE,
    )


@dataclass(frozen=True, slots=True)
class Baseline:
    heart_rate: float
    respiratory_rate: float
    spo2: float
    systolic: float
    temperature: float


def _reading_times(rng: random.Random, admission: Admission) -> list[datetime]:
    """Return when sets were actually taken: the schedule, less missed sets, with jitter."""
    out: list[datetime] = []
    days = (admission.end.date() - admission.start.date()).days + 1
    missed_day = rng.randrange(1, days) if days > 2 and rng.random() < MISSED_DAY_SHARE else -1
    for day in range(days):
        if day == missed_day:
            continue
        date_ = admission.start.date() + timedelta(days=day)
        for hour, minute in SET_TIMES[admission.sets_per_day]:
            due = datetime.combine(date_, time(hour, minute), tzinfo=UTC)
            taken = due + timedelta(minutes=rng.randint(-40, 40))
            if admission.start <= taken <= admission.end and rng.random() >= MISSED_SET_CHANCE:
                out.append(taken)
    return out


def _artefact(rng: random.Random, kind: str) -> float:
    choices: dict[str, tuple[float, ...]] = {
        "heart-rate": (0, 8, 255, 290),  # 255: a typed extra digit
        "respiratory-rate": (0, 1, 66),
        "spo2": (0, 12, 38),  # probe off or slipping
        "systolic": (0, 20, 290),
        "temperature": (29.4, 43.9, 44.6),
    }
    # Possible values only: what cannot be true at all is refused at the door
    # (clinical/plausibility.py), so it never reaches a record.
    return rng.choice(choices[kind])


def monitoring_resources(
    rng: random.Random,
    context: RecordContext,
    admission: Admission,
    trust: Trust,
) -> list[dict[str, Any]]:
    """Return the EpisodeOfCare, Encounter, CarePlan, Goal and readings of an admission."""
    out: list[dict[str, Any]] = []
    clinician = rng.choice(trust.clinicians).id
    reason_ref: dict[str, Any]
    if admission.reason is None:
        reason_id = context.new_id("Condition/virtual-ward-reason")
        reason_ref = context.ref("Condition", reason_id)
        out.append(
            {
                "resourceType": "Condition",
                "id": reason_id,
                "clinicalStatus": codes.concept(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "resolved" if not admission.active else "active",
                    "Resolved" if not admission.active else "Active",
                ),
                "verificationStatus": codes.concept(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "confirmed",
                    "Confirmed",
                ),
                "category": [
                    codes.concept(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "encounter-diagnosis",
                        "Encounter Diagnosis",
                    )
                ],
                "code": codes.concept(codes.SNOMED, *LOWER_RESPIRATORY_INFECTION),
                "subject": context.patient,
                "onsetDateTime": instant(admission.start - timedelta(days=rng.randint(1, 4))),
                "recordedDate": instant(admission.start),
                "recorder": shared_ref("Practitioner", clinician),
            }
        )
    else:
        reason_ref = context.ref("Condition", admission.reason.id)

    period: dict[str, str] = {"start": instant(admission.start)}
    if not admission.active:
        period["end"] = instant(admission.end)

    episode_id = context.new_id("EpisodeOfCare/virtual-ward")
    out.append(
        {
            "resourceType": "EpisodeOfCare",
            "id": episode_id,
            "status": "active" if admission.active else "finished",
            "type": [{"text": "Virtual ward"}],
            "diagnosis": [{"condition": reason_ref, "rank": 1}],
            "patient": context.patient,
            "managingOrganization": shared_ref("Organization", trust.ods_code),
            "period": period,
            "careManager": shared_ref("Practitioner", clinician),
        }
    )
    encounter_id = context.new_id("Encounter/virtual-ward")
    out.append(
        {
            "resourceType": "Encounter",
            "id": encounter_id,
            "status": "in-progress" if admission.active else "finished",
            "class": {"system": codes.ACT_CODE, "code": "HH", "display": "home health"},
            "type": [{"text": "Virtual ward admission"}],
            "subject": context.patient,
            "episodeOfCare": [context.ref("EpisodeOfCare", episode_id)],
            "participant": [{"individual": shared_ref("Practitioner", clinician)}],
            "period": period,
            "reasonReference": [reason_ref],
            "location": [{"location": shared_ref("Location", trust.virtual_ward_location_id)}],
            "serviceProvider": shared_ref("Organization", trust.ods_code),
        }
    )

    goal_refs: list[dict[str, Any]] = []
    if admission.scale_2:
        goal_id = context.new_id("Goal/spo2-scale-2")
        goal_refs.append(context.ref("Goal", goal_id))
        out.append(
            {
                "resourceType": "Goal",
                "id": goal_id,
                "lifecycleStatus": "active" if admission.active else "completed",
                "category": [{"text": "NEWS2 SpO2 scale 2"}],
                "description": {
                    "text": "Keep oxygen saturation between 88% and 92% (NEWS2 SpO2 scale 2)"
                },
                "subject": context.patient,
                "startDate": admission.start.date().isoformat(),
                "target": [
                    {
                        "measure": OXYGEN_SATURATION.code,
                        "detailRange": {
                            "low": codes.quantity(88, "%"),
                            "high": codes.quantity(92, "%"),
                        },
                    }
                ],
                "expressedBy": shared_ref("Practitioner", clinician),
                "addresses": [reason_ref],
            }
        )

    per_day = admission.sets_per_day
    description = (
        f"Record heart rate, respiratory rate, oxygen saturation, blood pressure, "
        f"temperature, consciousness (ACVPU) and air or oxygen {per_day} times a day."
    )
    if admission.scale_2:
        description += " Use SpO2 scale 2: target 88-92%."
    detail: dict[str, Any] = {
        "kind": "ServiceRequest",
        "code": {"text": "Remote monitoring of vital signs (NEWS2)"},
        "status": "in-progress" if admission.active else "completed",
        "scheduledTiming": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        "description": description,
    }
    if goal_refs:
        detail["goal"] = goal_refs
    care_plan_id = context.new_id("CarePlan/virtual-ward")
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": care_plan_id,
        "status": "active" if admission.active else "completed",
        "intent": "plan",
        "category": [{"text": "Virtual ward monitoring"}],
        "title": "Virtual ward remote monitoring",
        "subject": context.patient,
        "encounter": context.ref("Encounter", encounter_id),
        "period": period,
        "author": shared_ref("Practitioner", clinician),
        "addresses": [reason_ref],
        "supportingInfo": [context.ref("EpisodeOfCare", episode_id)],
        "activity": [{"detail": detail}],
    }
    if goal_refs:
        care_plan["goal"] = goal_refs
    out.append(care_plan)

    out.extend(
        _readings(
            rng,
            context,
            admission,
            based_on=context.ref("CarePlan", care_plan_id),
            encounter=context.ref("Encounter", encounter_id),
        )
    )
    return out


def _readings(
    rng: random.Random,
    context: RecordContext,
    admission: Admission,
    based_on: dict[str, Any],
    encounter: dict[str, Any],
) -> list[dict[str, Any]]:
    copd = admission.reason is not None and admission.reason.condition.key == "copd"
    baseline = Baseline(
        heart_rate=rng.gauss(80, 8),
        respiratory_rate=rng.gauss(18 if copd else 16, 1.5),
        spo2=rng.gauss(90, 1.0) if admission.scale_2 else rng.gauss(93.5 if copd else 96, 1.0),
        systolic=rng.gauss(130, 13),
        temperature=rng.gauss(36.8, 0.25),
    )
    decline_start = admission.end
    decline_hours = 1.0
    if admission.deteriorates:
        decline_hours = rng.uniform(8, 72)
        span = (admission.end - admission.start).total_seconds() / 3600
        decline_start = admission.start + timedelta(
            hours=rng.uniform(max(span - decline_hours - 12, 0), max(span - decline_hours, 0))
        )
    febrile = admission.reason is None or rng.random() < 0.4
    patient = context.patient
    out: list[dict[str, Any]] = []
    started_oxygen = False
    for n, taken in enumerate(_reading_times(rng, admission)):
        hours_in = (taken - decline_start).total_seconds() / 3600
        f = min(max(hours_in / decline_hours, 0.0), 1.0) if admission.deteriorates else 0.0
        late = rng.random() < LATE_SET_CHANCE
        issued = taken + (
            timedelta(hours=rng.randint(6, 60)) if late else timedelta(minutes=rng.randint(1, 15))
        )
        values = {
            "heart-rate": round(baseline.heart_rate + 32 * f + rng.gauss(0, 4)),
            "respiratory-rate": round(baseline.respiratory_rate + 9 * f + rng.gauss(0, 1.2)),
            "spo2": round(min(baseline.spo2 - 7 * f + rng.gauss(0, 0.9), 100)),
            "systolic": round(baseline.systolic - 32 * f + rng.gauss(0, 7)),
            "temperature": round(
                baseline.temperature + (1.7 * f if febrile else 0.2 * f) + rng.gauss(0, 0.15), 1
            ),
        }
        for kind in values:
            if rng.random() < ARTEFACT_CHANCE:
                values[kind] = _artefact(rng, kind)
        prefix = f"Observation/virtual-ward/{n}"
        set_: list[dict[str, Any]] = []
        for kind, measure in (
            ("heart-rate", HEART_RATE),
            ("respiratory-rate", RESPIRATORY_RATE),
            ("spo2", OXYGEN_SATURATION),
            ("temperature", BODY_TEMPERATURE),
        ):
            if rng.random() < MISSED_READING_CHANCE:
                continue
            set_.append(measured(context, f"{prefix}/{kind}", measure, values[kind], taken, issued))
        if rng.random() >= MISSED_READING_CHANCE:
            systolic = int(values["systolic"])
            diastolic = max(round(systolic * 0.6 + rng.gauss(0, 5)), 0) if systolic else 0
            set_.append(
                blood_pressure(
                    context, f"{prefix}/blood-pressure", systolic, diastolic, taken, issued
                )
            )
        level = "A"
        if f > 0.85 and rng.random() < 0.5:
            level = "C" if rng.random() < 0.8 else "V"
        acvpu = observation(
            context, f"{prefix}/acvpu", codes.VITAL_SIGNS_CATEGORY, {"coding": [codes.ACVPU_CODE]},
            taken, issued,
        )  # fmt: skip
        acvpu["valueCodeableConcept"] = {"coding": [codes.ACVPU_VALUES[level]]}
        set_.append(acvpu)
        # oxygen started during a decline stays on for the rest of the admission
        started_oxygen = started_oxygen or (f > 0.7 and rng.random() < 0.3)
        on_oxygen = admission.home_oxygen or started_oxygen
        oxygen = observation(
            context, f"{prefix}/air-or-oxygen", codes.VITAL_SIGNS_CATEGORY,
            {"text": codes.AIR_OR_OXYGEN_TEXT}, taken, issued,
        )  # fmt: skip
        oxygen["valueCodeableConcept"] = {
            "coding": [codes.ON_OXYGEN if on_oxygen else codes.ROOM_AIR]
        }
        if on_oxygen:
            oxygen["component"] = [
                {
                    "code": INHALED_OXYGEN_FLOW.code,
                    "valueQuantity": codes.quantity(rng.choice((1, 2, 2, 3, 4)), "L/min"),
                }
            ]
        set_.append(oxygen)
        for resource in set_:
            resource["basedOn"] = [based_on]
            resource["encounter"] = encounter
            resource["performer"] = [patient]  # measured at home by the patient or carer
        out.extend(set_)
    return out
