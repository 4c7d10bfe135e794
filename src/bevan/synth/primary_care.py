"""The rest of a primary care record: consultations, allergies, vaccinations and opt-outs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bevan.synth import codes
from bevan.synth.conditions import Diagnosis
from bevan.synth.organisations import Practice
from bevan.synth.references import RecordContext, instant, shared_ref

# Recorded allergies (approximate: about one in ten people in England carries a
# penicillin allergy label; nut and latex allergy labels are much rarer). A "no known
# allergies" entry is recorded for many of the rest.
ALLERGIES: tuple[tuple[str, str, str, float, str], ...] = (
    ("91936005", "Allergy to penicillin", "medication", 0.09, "low"),
    ("91935009", "Allergy to peanuts", "food", 0.015, "high"),
    ("300916003", "Latex allergy", "environment", 0.008, "low"),
)
NO_KNOWN_ALLERGY = ("716186003", "No known allergy")
NO_KNOWN_ALLERGY_SHARE = 0.45
REACTIONS = {
    "low": ("271807003", "Eruption of skin"),
    "high": ("39579001", "Anaphylaxis"),
}

INFLUENZA_VACCINE = ("1181000221105", "Influenza virus antigen only vaccine product")
COVID_VACCINE = ("1119349007", "SARS-CoV-2 mRNA vaccine product")
# Uptake, England 2024-25 (approximate UKHSA figures): flu 65+ about 74%, at-risk under
# 65 about 40%; autumn COVID-19 booster 75+ about 60%.
FLU_UPTAKE_65_AND_OVER = 0.74
FLU_UPTAKE_AT_RISK = 0.4
COVID_UPTAKE_75_AND_OVER = 0.6

OPT_OUT_SHARE = 0.054  # national data opt-out, England 2024 (NHS England, approximate)
CONSULTATION_TYPES = (
    ("185349003", "Encounter for check up"),
    ("185317003", "Telephone encounter"),
    ("390906007", "Follow-up encounter"),
)


def _at(day: date, rng: random.Random) -> datetime:
    minutes = rng.randint(8 * 60, 18 * 60)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=UTC)


def consultations(
    rng: random.Random,
    context: RecordContext,
    age: int,
    diagnoses: list[Diagnosis],
    practice: Practice,
) -> list[dict[str, Any]]:
    """Return the patient's GP consultations in the last two years (more with conditions)."""
    mean = 1.5 + 1.2 * len(diagnoses) + (1.0 if age >= 75 else 0.0) + (0.8 if age < 5 else 0.0)
    count = min(int(rng.expovariate(1 / mean)), 14)
    out: list[dict[str, Any]] = []
    for n in range(count):
        start = _at(context.today - timedelta(days=rng.randint(1, 730)), rng)
        code, display = rng.choice(CONSULTATION_TYPES)
        gp = rng.choice(practice.gps).id
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": context.new_id(f"Encounter/consultation/{n}"),
            "status": "finished",
            "class": {"system": codes.ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [codes.concept(codes.SNOMED, code, display)],
            "subject": context.patient,
            "participant": [{"individual": shared_ref("Practitioner", gp)}],
            "period": {
                "start": instant(start),
                "end": instant(start + timedelta(minutes=rng.choice((10, 10, 15, 20)))),
            },
            "serviceProvider": shared_ref("Organization", practice.ods_code),
        }
        if diagnoses and rng.random() < 0.6:
            encounter["reasonReference"] = [context.ref("Condition", rng.choice(diagnoses).id)]
        if code != "185317003":  # telephone consultations have no place
            encounter["location"] = [{"location": shared_ref("Location", practice.location_id)}]
        out.append(encounter)
    return out


def allergies(
    rng: random.Random, context: RecordContext, birth_date: date, recorder: str
) -> list[dict[str, Any]]:
    """Return recorded allergies, or a "no known allergy" entry, or nothing."""
    out: list[dict[str, Any]] = []
    for code, display, category, share, criticality in ALLERGIES:
        if rng.random() >= share:
            continue
        days_alive = max((context.today - birth_date).days, 1)
        recorded = birth_date + timedelta(days=rng.randint(0, days_alive))
        reaction_code, reaction_display = REACTIONS[criticality]
        out.append(
            _allergy(context, code, display, recorded, recorder)
            | {
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "reaction": [
                    {
                        "manifestation": [
                            codes.concept(codes.SNOMED, reaction_code, reaction_display)
                        ]
                    }
                ],
            }
        )
    if not out and rng.random() < NO_KNOWN_ALLERGY_SHARE:
        recorded = context.today - timedelta(days=rng.randint(30, 3650))
        out.append(_allergy(context, *NO_KNOWN_ALLERGY, max(recorded, birth_date), recorder))
    return out


def _allergy(
    context: RecordContext, code: str, display: str, recorded: date, recorder: str
) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": context.new_id(f"AllergyIntolerance/{code}"),
        "clinicalStatus": codes.concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"
        ),
        "verificationStatus": codes.concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "confirmed",
            "Confirmed",
        ),
        "code": codes.concept(codes.SNOMED, code, display),
        "patient": context.patient,
        "recordedDate": recorded.isoformat(),
        "recorder": shared_ref("Practitioner", recorder),
    }


def immunisations(
    rng: random.Random,
    context: RecordContext,
    age: int,
    at_risk: bool,
    practice: Practice,
) -> list[dict[str, Any]]:
    """Return last autumn's flu and COVID-19 vaccinations for those eligible who took them."""
    out: list[dict[str, Any]] = []
    season_start = date(context.today.year - (1 if context.today.month < 9 else 0), 9, 15)
    flu_uptake = FLU_UPTAKE_65_AND_OVER if age >= 65 else FLU_UPTAKE_AT_RISK if at_risk else 0.0
    for kind, vaccine, uptake in (
        ("influenza", INFLUENZA_VACCINE, flu_uptake if age >= 18 else 0.0),
        ("covid-19", COVID_VACCINE, COVID_UPTAKE_75_AND_OVER if age >= 75 else 0.0),
    ):
        if rng.random() >= uptake:
            continue
        given = _at(season_start + timedelta(days=rng.randint(0, 75)), rng)
        out.append(
            {
                "resourceType": "Immunization",
                "id": context.new_id(f"Immunization/{kind}"),
                "status": "completed",
                "vaccineCode": codes.concept(codes.SNOMED, *vaccine),
                "patient": context.patient,
                "occurrenceDateTime": instant(given),
                "primarySource": True,
                "location": shared_ref("Location", practice.location_id),
                "performer": [{"actor": shared_ref("Organization", practice.ods_code)}],
            }
        )
    return out


def national_data_opt_out(rng: random.Random, context: RecordContext) -> list[dict[str, Any]]:
    """Return a Consent recording a national data opt-out for about 5% of patients."""
    if rng.random() >= OPT_OUT_SHARE:
        return []
    recorded = _at(date(2018, 5, 25) + timedelta(days=rng.randint(0, 2400)), rng)
    return [
        {
            "resourceType": "Consent",
            "id": context.new_id("Consent/national-data-opt-out"),
            "status": "active",
            "scope": codes.concept(
                "http://terminology.hl7.org/CodeSystem/consentscope",
                "patient-privacy",
                "Privacy Consent",
            ),
            "category": [
                codes.concept(codes.LOINC, "59284-0", "Patient Consent", "National data opt-out")
            ],
            "patient": context.patient,
            "dateTime": instant(min(recorded, context.as_at)),
            "performer": [context.patient],
            "policy": [{"uri": codes.NATIONAL_DATA_OPT_OUT_POLICY}],
            "provision": {
                "type": "deny",
                "purpose": [
                    {
                        "system": codes.ACT_REASON,
                        "code": "HRESCH",
                        "display": "healthcare research",
                    },
                    {
                        "system": codes.ACT_REASON,
                        "code": "HOPERAT",
                        "display": "healthcare operations",
                    },
                ],
            },
        }
    ]
