"""Laboratory results and routine vital signs, coded with LOINC and measured in UCUM units."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bevan.synth import codes
from bevan.synth.conditions import Diagnosis
from bevan.synth.references import RecordContext, instant, shared_ref


@dataclass(frozen=True, slots=True)
class Measure:
    """What an Observation measures: its code and unit."""

    code: dict[str, Any]
    unit: str
    ucum: str


def _loinc(code: str, display: str, unit: str, ucum: str | None = None) -> Measure:
    return Measure(codes.concept(codes.LOINC, code, display), unit, ucum or unit)


HBA1C = _loinc("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", "mmol/mol")
EGFR = _loinc(
    "62238-1",
    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
    "Blood by Creatinine-based formula (CKD-EPI)",
    "mL/min/1.73m2",
    "mL/min/{1.73_m2}",
)
CHOLESTEROL = _loinc("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L")
HEART_RATE = _loinc("8867-4", "Heart rate", "beats/minute", "/min")
RESPIRATORY_RATE = _loinc("9279-1", "Respiratory rate", "breaths/minute", "/min")
BODY_TEMPERATURE = _loinc("8310-5", "Body temperature", "Cel")
BODY_WEIGHT = _loinc("29463-7", "Body weight", "kg")
BODY_HEIGHT = _loinc("8302-2", "Body height", "cm")
BMI = _loinc("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2")
OXYGEN_SATURATION = Measure(
    {
        "coding": [
            {
                "system": codes.LOINC,
                "code": "2708-6",
                "display": "Oxygen saturation in Arterial blood",
            },
            {
                "system": codes.LOINC,
                "code": "59408-5",
                "display": "Oxygen saturation in Arterial blood by Pulse oximetry",
            },
        ]
    },
    "%",
    "%",
)
BLOOD_PRESSURE = codes.concept(
    codes.LOINC, "85354-9", "Blood pressure panel with all children optional"
)
SYSTOLIC = codes.concept(codes.LOINC, "8480-6", "Systolic blood pressure")
DIASTOLIC = codes.concept(codes.LOINC, "8462-4", "Diastolic blood pressure")
INHALED_OXYGEN_FLOW = _loinc("3151-8", "Inhaled oxygen flow rate", "L/min")


def observation(
    context: RecordContext,
    kind: str,
    category: list[dict[str, Any]],
    code: dict[str, Any],
    effective: datetime,
    issued: datetime,
) -> dict[str, Any]:
    """Return a final Observation about the patient, without its value."""
    return {
        "resourceType": "Observation",
        "id": context.new_id(kind),
        "status": "final",
        "category": category,
        "code": code,
        "subject": context.patient,
        "effectiveDateTime": instant(effective),
        "issued": instant(issued),
    }


def measured(
    context: RecordContext,
    kind: str,
    measure: Measure,
    value: float,
    effective: datetime,
    issued: datetime,
    category: list[dict[str, Any]] = codes.VITAL_SIGNS_CATEGORY,
) -> dict[str, Any]:
    """Return an Observation with a quantity value."""
    resource = observation(context, kind, category, measure.code, effective, issued)
    resource["valueQuantity"] = codes.quantity(value, measure.unit, measure.ucum)
    return resource


def blood_pressure(
    context: RecordContext,
    kind: str,
    systolic: int,
    diastolic: int,
    effective: datetime,
    issued: datetime,
) -> dict[str, Any]:
    """Return a vital-signs blood pressure panel with systolic and diastolic components."""
    resource = observation(
        context, kind, codes.VITAL_SIGNS_CATEGORY, BLOOD_PRESSURE, effective, issued
    )
    resource["component"] = [
        {"code": SYSTOLIC, "valueQuantity": codes.quantity(systolic, "mmHg", "mm[Hg]")},
        {"code": DIASTOLIC, "valueQuantity": codes.quantity(diastolic, "mmHg", "mm[Hg]")},
    ]
    return resource


def _clinic_time(rng: random.Random, day: date) -> datetime:
    minutes = rng.randint(8 * 60 + 30, 17 * 60 + 30)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=UTC)


def _days_ago(rng: random.Random, today: date, low: int, high: int, not_before: date) -> date:
    return max(today - timedelta(days=rng.randint(low, high)), not_before)


def laboratory_results(
    rng: random.Random,
    context: RecordContext,
    age: int,
    diagnoses: list[Diagnosis],
    on_statin: bool,
    laboratory: str,
) -> list[dict[str, Any]]:
    """Return HbA1c, eGFR and cholesterol results shaped by the patient's conditions."""
    if age < 18:
        return []
    today = context.today
    keys = {d.condition.key: d for d in diagnoses}
    out: list[dict[str, Any]] = []

    def result(kind: str, measure: Measure, value: float, day: date) -> dict[str, Any]:
        taken = _clinic_time(rng, day)
        resource = measured(
            context,
            kind,
            measure,
            value,
            taken,
            taken + timedelta(hours=rng.randint(4, 30)),
            codes.LABORATORY_CATEGORY,
        )
        resource["performer"] = [shared_ref("Organization", laboratory)]
        out.append(resource)
        return resource

    diabetes = keys.get("type-2-diabetes")
    if diabetes is not None:
        # diabetes reviews: HbA1c about every six months since diagnosis, up to two years
        level = rng.gauss(58, 11)
        days = [today - timedelta(days=30 + 182 * n + rng.randint(-20, 20)) for n in range(4)]
        days = [day for day in days if day > diabetes.onset]
        if not days:  # newly diagnosed: the diagnostic test (48 mmol/mol or more)
            days = [diabetes.onset]
            level = max(level, 52.0)
        for n, day in enumerate(days):
            level = min(max(level + rng.gauss(0, 5), 40.0), 120.0)
            result(f"Observation/hba1c/{n}", HBA1C, round(level), day)
    elif age >= 40 and rng.random() < 0.25:
        result("Observation/hba1c/0", HBA1C, round(min(max(rng.gauss(37, 3.5), 25), 47)),
               _days_ago(rng, today, 30, 900, context.today - timedelta(days=900)))  # fmt: skip

    ckd = keys.get("chronic-kidney-disease")
    if ckd is not None:
        egfr = rng.uniform(22, 59)
        for n in range(3):
            day = today - timedelta(days=20 + 180 * n + rng.randint(-15, 15))
            if day < ckd.onset:
                break
            egfr = min(max(egfr + rng.gauss(0, 3), 12.0), 59.0)
            result(f"Observation/egfr/{n}", EGFR, round(egfr), day)
    elif diabetes or "hypertension" in keys or "heart-failure" in keys or age >= 65:
        egfr = rng.gauss(82 - max(age - 40, 0) * 0.6, 12)
        resource = result(
            "Observation/egfr/0",
            EGFR,
            round(min(max(egfr, 60.0), 90.0)),
            _days_ago(rng, today, 20, 400, today - timedelta(days=400)),
        )
        if egfr >= 90:  # laboratories report a high eGFR as ">90"
            resource["valueQuantity"]["comparator"] = ">"

    if age >= 40 and (diabetes or on_statin or rng.random() < 0.4):
        mean = 4.1 if on_statin else 5.3
        value = round(min(max(rng.gauss(mean, 0.9), 2.4), 9.5), 1)
        result(
            "Observation/cholesterol/0",
            CHOLESTEROL,
            value,
            _days_ago(rng, today, 20, 700, today - timedelta(days=700)),
        )
    return out


def routine_vital_signs(
    rng: random.Random,
    context: RecordContext,
    age: int,
    sex: str,
    hypertensive: bool,
    performer: str,
) -> list[dict[str, Any]]:
    """Return blood pressures and height, weight and BMI recorded at the surgery."""
    if age < 16:
        return []
    today = context.today
    out: list[dict[str, Any]] = []
    readings = rng.randint(2, 3) if hypertensive else (1 if rng.random() < 0.55 else 0)
    base_systolic = rng.gauss(146 if hypertensive else 118 + max(age - 30, 0) * 0.35, 10)
    for n in range(readings):
        taken = _clinic_time(rng, today - timedelta(days=rng.randint(7, 700)))
        systolic = round(min(max(base_systolic + rng.gauss(0, 7), 90), 200))
        diastolic = round(min(max(systolic * 0.6 + rng.gauss(0, 6), 50), 115))
        resource = blood_pressure(context, f"Observation/bp/{n}", systolic, diastolic, taken, taken)
        resource["performer"] = [shared_ref("Practitioner", performer)]
        out.append(resource)
    if rng.random() < 0.5:
        taken = _clinic_time(rng, today - timedelta(days=rng.randint(7, 900)))
        height = rng.gauss(176 if sex == "male" else 163, 7)
        bmi = min(max(rng.lognormvariate(3.29, 0.17), 16.0), 55.0)  # median about 27
        weight = bmi * (height / 100) ** 2
        for kind, measure, value in (
            ("height", BODY_HEIGHT, round(height, 1)),
            ("weight", BODY_WEIGHT, round(weight, 1)),
            ("bmi", BMI, round(weight / (height / 100) ** 2, 1)),
        ):
            resource = measured(context, f"Observation/{kind}/0", measure, value, taken, taken)
            resource["performer"] = [shared_ref("Practitioner", performer)]
            out.append(resource)
    return out
