"""Long-term conditions: who has which, from age- and sex-specific prevalence, as Condition resources."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bevan.synth import codes
from bevan.synth.references import RecordContext, shared_ref


@dataclass(frozen=True, slots=True)
class LongTermCondition:
    """A condition, its SNOMED CT code and how common it is."""

    key: str
    snomed: str
    display: str
    # (from age, per cent of people with the condition) steps, lowest age first
    prevalence: tuple[tuple[int, float], ...]
    male_factor: float
    female_factor: float
    # relative risk given an earlier condition in LONG_TERM_CONDITIONS (comorbidity)
    raised_by: tuple[tuple[str, float], ...] = ()

    def probability(self, age: int, sex: str, present: set[str]) -> float:
        percent = 0.0
        for from_age, value in self.prevalence:
            if age >= from_age:
                percent = value
        risk = percent / 100 * (self.male_factor if sex == "male" else self.female_factor)
        for other, relative in self.raised_by:
            if other in present:
                risk *= relative
        return min(risk, 0.95)


# Approximate register prevalence by age in England (QOF 2022-23 registers, Health
# Survey for England and published age breakdowns, rounded); comorbidity relative risks
# are rough, chosen so that cardiometabolic conditions cluster as they do in practice.
# Drawn in this order, so a condition can only be raised by those above it.
LONG_TERM_CONDITIONS: tuple[LongTermCondition, ...] = (
    LongTermCondition(
        "type-2-diabetes",
        "44054006",
        "Diabetes mellitus type 2",
        ((0, 0.0), (18, 1.0), (40, 4.5), (50, 9.0), (60, 14.0), (70, 18.0), (80, 17.0)),
        1.25,
        0.78,
    ),
    LongTermCondition(
        "hypertension",
        "38341003",
        "Hypertensive disorder, systemic arterial",
        ((0, 0.0), (18, 2.0), (40, 8.0), (50, 18.0), (60, 32.0), (70, 47.0), (80, 58.0)),
        1.1,
        0.92,
        (("type-2-diabetes", 1.7),),
    ),
    LongTermCondition(
        "atrial-fibrillation",
        "49436004",
        "Atrial fibrillation",
        ((0, 0.0), (40, 0.3), (50, 0.8), (60, 2.5), (70, 7.0), (80, 14.0)),
        1.25,
        0.8,
        (("hypertension", 1.4),),
    ),
    LongTermCondition(
        "heart-failure",
        "84114007",
        "Heart failure",
        ((0, 0.0), (40, 0.2), (50, 0.5), (60, 1.3), (70, 3.5), (80, 8.0)),
        1.3,
        0.75,
        (("atrial-fibrillation", 2.5), ("hypertension", 1.5), ("type-2-diabetes", 1.5)),
    ),
    LongTermCondition(
        "chronic-kidney-disease",
        "709044004",
        "Chronic kidney disease",
        ((0, 0.0), (18, 0.2), (40, 0.8), (50, 2.0), (60, 5.0), (70, 12.0), (80, 25.0)),
        0.9,
        1.1,
        (("type-2-diabetes", 1.7), ("hypertension", 1.3), ("heart-failure", 1.8)),
    ),
    LongTermCondition(
        "copd",
        "13645005",
        "Chronic obstructive lung disease",
        ((0, 0.0), (35, 0.3), (45, 0.8), (55, 2.5), (65, 5.0), (75, 7.5), (85, 8.0)),
        1.1,
        0.9,
    ),
    LongTermCondition(
        "asthma",
        "195967001",
        "Asthma",
        ((0, 0.0), (5, 9.0), (18, 7.0), (65, 7.5)),
        0.9,
        1.1,
    ),
    LongTermCondition(
        "depression",
        "35489007",
        "Depressive disorder",
        ((0, 0.0), (12, 3.0), (18, 12.0), (40, 13.0), (60, 10.0), (80, 9.0)),
        0.7,
        1.3,
    ),
)

BY_KEY = {condition.key: condition for condition in LONG_TERM_CONDITIONS}
SENSITIVE_SHARE = {"depression": 0.1}  # share of these diagnoses recorded as restricted


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One condition a patient has, with its onset and the id of its Condition."""

    condition: LongTermCondition
    onset: date
    id: str
    restricted: bool


def draw_diagnoses(
    rng: random.Random, age: int, sex: str, birth_date: date, today: date, context: RecordContext
) -> list[Diagnosis]:
    """Return the long-term conditions a person of this age and sex has."""
    present: set[str] = set()
    out: list[Diagnosis] = []
    for condition in LONG_TERM_CONDITIONS:
        if rng.random() >= condition.probability(age, sex, present):
            continue
        present.add(condition.key)
        first_age = next(from_age for from_age, value in condition.prevalence if value > 0)
        years_with = min(rng.expovariate(1 / 7.0), max(age - first_age, 0) + rng.random())
        onset = max(today - timedelta(days=int(years_with * 365.25)), birth_date)
        out.append(
            Diagnosis(
                condition=condition,
                onset=onset,
                id=context.new_id(f"Condition/{condition.key}"),
                restricted=rng.random() < SENSITIVE_SHARE.get(condition.key, 0.0),
            )
        )
    return out


def condition_resource(
    diagnosis: Diagnosis, context: RecordContext, recorder: str
) -> dict[str, Any]:
    """Return the Condition resource for a diagnosis on the problem list."""
    condition = diagnosis.condition
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": diagnosis.id,
        "clinicalStatus": codes.concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
        ),
        "verificationStatus": codes.concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [
            codes.concept(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
                "Problem List Item",
            )
        ],
        "code": codes.concept(codes.SNOMED, condition.snomed, condition.display),
        "subject": context.patient,
        "onsetDateTime": diagnosis.onset.isoformat(),
        "recordedDate": diagnosis.onset.isoformat(),
        "recorder": shared_ref("Practitioner", recorder),
    }
    if diagnosis.restricted:
        resource["meta"] = {"security": [codes.RESTRICTED]}
    return resource
