"""Repeat medicines that follow a patient's conditions, as dm+d coded MedicationRequests."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bevan.synth import codes
from bevan.synth.conditions import Diagnosis
from bevan.synth.references import RecordContext, shared_ref


@dataclass(frozen=True, slots=True)
class Medicine:
    """A dm+d virtual medicinal product (VMP) and how it is usually taken."""

    key: str
    vmp: str
    display: str
    dosage: str
    per_day: int
    unit: str  # UCUM annotation: tablet, capsule, dose


MEDICINES: dict[str, Medicine] = {
    m.key: m
    for m in (
        Medicine("metformin", "325278007", "Metformin 500mg tablets",
                 "One tablet twice a day with food", 2, "tablet"),
        Medicine("amlodipine", "319283006", "Amlodipine 5mg tablets",
                 "One tablet once a day", 1, "tablet"),
        Medicine("ramipril", "318902004", "Ramipril 5mg capsules",
                 "One capsule once a day", 1, "capsule"),
        Medicine("atorvastatin", "320000009", "Atorvastatin 20mg tablets",
                 "One tablet at night", 1, "tablet"),
        Medicine("bisoprolol", "318590006", "Bisoprolol 5mg tablets",
                 "One tablet once a day", 1, "tablet"),
        Medicine("furosemide", "317972000", "Furosemide 40mg tablets",
                 "One tablet each morning", 1, "tablet"),
        Medicine("apixaban", "42206511000001102", "Apixaban 5mg tablets",
                 "One tablet twice a day", 2, "tablet"),
        Medicine("salbutamol", "39113611000001102",
                 "Salbutamol 100micrograms/dose inhaler CFC free",
                 "Two puffs up to four times a day when required", 8, "dose"),
    )
}  # fmt: skip

# Share of people with each condition on each medicine (approximate, in the spirit of
# NICE pathways and OpenPrescribing volumes; not measured figures).
PRESCRIBING: dict[str, tuple[tuple[str, float], ...]] = {
    "type-2-diabetes": (("metformin", 0.85), ("atorvastatin", 0.7)),
    "hypertension": (("amlodipine", 0.55), ("ramipril", 0.45)),
    "heart-failure": (("ramipril", 0.75), ("bisoprolol", 0.7), ("furosemide", 0.65)),
    "atrial-fibrillation": (("apixaban", 0.8), ("bisoprolol", 0.5)),
    "chronic-kidney-disease": (("ramipril", 0.4), ("atorvastatin", 0.6)),
    "copd": (("salbutamol", 0.9),),
    "asthma": (("salbutamol", 0.95),),
}


@dataclass(frozen=True, slots=True)
class Prescription:
    medicine: Medicine
    reason: Diagnosis
    started: date
    id: str


def draw_prescriptions(
    rng: random.Random, diagnoses: list[Diagnosis], today: date, context: RecordContext
) -> list[Prescription]:
    """Return the repeat medicines a patient with these diagnoses takes (each once)."""
    out: dict[str, Prescription] = {}
    for diagnosis in diagnoses:
        for key, share in PRESCRIBING.get(diagnosis.condition.key, ()):
            if key in out or rng.random() >= share:
                continue
            days_since = max((today - diagnosis.onset).days, 1)
            started = diagnosis.onset + timedelta(days=rng.randint(0, min(days_since, 120)))
            out[key] = Prescription(
                medicine=MEDICINES[key],
                reason=diagnosis,
                started=min(started, today),
                id=context.new_id(f"MedicationRequest/{key}"),
            )
    return list(out.values())


def medication_request(
    prescription: Prescription, context: RecordContext, requester: str, authored: date
) -> dict[str, Any]:
    """Return the active repeat MedicationRequest for a prescription."""
    medicine = prescription.medicine
    supply_days = 28
    # an inhaler is one 200-dose device, whatever the number of puffs a day
    amount = 200 if medicine.unit == "dose" else medicine.per_day * supply_days
    return {
        "resourceType": "MedicationRequest",
        "id": prescription.id,
        "status": "active",
        "intent": "order",
        "category": [
            codes.concept(
                "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "community",
                "Community",
            )
        ],
        "medicationCodeableConcept": codes.concept(codes.DMD, medicine.vmp, medicine.display),
        "subject": context.patient,
        "authoredOn": authored.isoformat(),
        "requester": shared_ref("Practitioner", requester),
        "reasonReference": [context.ref("Condition", prescription.reason.id)],
        "courseOfTherapyType": codes.concept(
            "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
            "continuous",
            "Continuous long term therapy",
        ),
        "dosageInstruction": [
            {
                "text": medicine.dosage,
                "timing": {
                    "repeat": {"frequency": medicine.per_day, "period": 1, "periodUnit": "d"}
                },
            }
        ],
        "dispenseRequest": {
            "validityPeriod": {"start": prescription.started.isoformat()},
            "numberOfRepeatsAllowed": 6,
            "quantity": codes.quantity(amount, medicine.unit, f"{{{medicine.unit}}}"),
            "expectedSupplyDuration": codes.quantity(supply_days, "days", "d"),
        },
    }
