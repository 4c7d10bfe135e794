"""NEWS2, the National Early Warning Score 2, exactly as the Royal College of Physicians'
2017 chart gives it: seven sub-scores, their total (0-20) and the clinical response band.

Source: Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising
the assessment of acute-illness severity in the NHS. Updated report of a working party.
London: RCP, 2017. Chart 1 (the NEWS2 scoring system), Chart 2 (the observation chart),
Table 2 (NEWS thresholds and triggers) and Table 3 (clinical response to the triggers).

Values between the chart's steps: the chart writes every parameter as whole numbers
except temperature, written to one decimal place. A reading is first rounded to the
chart's precision, half away from zero (a pulse of 90.5 counts as 91, a temperature of
35.05 as 35.1), and then looked up; a value is never scored by a step it lies between.
Below the lowest and above the highest step the end rows apply (the chart is open-ended):
whether a value is believable at all is clinical/plausibility.py's question, not this.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

# One row of a chart: (lowest value, highest value, score), both ends included, at the
# chart's precision; None is open-ended.
Row = tuple[float | None, float | None, int]

# Chart 1, "Respiration rate (per minute)": <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3.
RESPIRATION_RATE: tuple[Row, ...] = (
    (None, 8, 3),
    (9, 11, 1),
    (12, 20, 0),
    (21, 24, 2),
    (25, None, 3),
)
# Chart 1, "SpO2 Scale 1 (%)": <=91 3, 92-93 2, 94-95 1, >=96 0.
SPO2_SCALE_1: tuple[Row, ...] = (
    (None, 91, 3),
    (92, 93, 2),
    (94, 95, 1),
    (96, None, 0),
)
# Chart 1, "SpO2 Scale 2 (%)", for a patient breathing air: <=83 3, 84-85 2, 86-87 1,
# 88-92 0, and >=93 on air 0.
SPO2_SCALE_2_ON_AIR: tuple[Row, ...] = (
    (None, 83, 3),
    (84, 85, 2),
    (86, 87, 1),
    (88, None, 0),
)
# Chart 1, "SpO2 Scale 2 (%)", on oxygen: the same below 93, then 93-94 on oxygen 1,
# 95-96 on oxygen 2, >=97 on oxygen 3 (only oxygen given above the target range scores).
SPO2_SCALE_2_ON_OXYGEN: tuple[Row, ...] = (
    (None, 83, 3),
    (84, 85, 2),
    (86, 87, 1),
    (88, 92, 0),
    (93, 94, 1),
    (95, 96, 2),
    (97, None, 3),
)
# Chart 1, "Air or oxygen?": air 0, oxygen 2.
AIR_SCORE = 0
OXYGEN_SCORE = 2
# Chart 1, "Systolic blood pressure (mmHg)": <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3.
SYSTOLIC_BLOOD_PRESSURE: tuple[Row, ...] = (
    (None, 90, 3),
    (91, 100, 2),
    (101, 110, 1),
    (111, 219, 0),
    (220, None, 3),
)
# Chart 1, "Pulse (per minute)": <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3.
PULSE: tuple[Row, ...] = (
    (None, 40, 3),
    (41, 50, 1),
    (51, 90, 0),
    (91, 110, 1),
    (111, 130, 2),
    (131, None, 3),
)
# Chart 1, "Temperature (C)": <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2.
TEMPERATURE: tuple[Row, ...] = (
    (None, 35.0, 3),
    (35.1, 36.0, 1),
    (36.1, 38.0, 0),
    (38.1, 39.0, 1),
    (39.1, None, 2),
)


class Consciousness(StrEnum):
    """ACVPU (Chart 1, "Consciousness"): alert scores 0; new confusion, voice, pain or
    unresponsive each score 3."""

    ALERT = "alert"
    NEW_CONFUSION = "confusion"
    VOICE = "voice"
    PAIN = "pain"
    UNRESPONSIVE = "unresponsive"


CONSCIOUSNESS_SCORE = 3  # Chart 1: any of C, V, P or U


class Band(StrEnum):
    """The clinical risk bands of Table 2 (and 'zero', a total of 0)."""

    ZERO = "zero"
    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


# Table 2: an aggregate of 5-6 is the key threshold for an urgent response, 7 or more
# for an emergency response; a 3 in any single parameter (with a total under 5) calls
# for an urgent ward-based response.
MEDIUM_FROM = 5
HIGH_FROM = 7
SINGLE_PARAMETER_RED = 3

# Table 3: the clinical response each band calls for (frequency of monitoring, then
# what the registered nurse and the team do).
RESPONSE: dict[Band, str] = {
    Band.ZERO: "Minimum 12-hourly monitoring. Continue routine NEWS monitoring.",
    Band.LOW: (
        "Minimum 4-6-hourly monitoring. Inform the registered nurse, who must assess the "
        "patient and decide whether increased frequency of monitoring and/or escalation of "
        "care is required."
    ),
    Band.LOW_MEDIUM: (
        "Minimum 1-hourly monitoring. Registered nurse to inform the medical team caring "
        "for the patient, who will review and decide whether escalation of care is "
        "necessary (urgent ward-based response)."
    ),
    Band.MEDIUM: (
        "Minimum 1-hourly monitoring. Registered nurse to inform the medical team caring "
        "for the patient immediately; urgent assessment by a clinician or team with core "
        "competencies in the care of acutely ill patients; provide clinical care in an "
        "environment with monitoring facilities (key threshold for urgent response)."
    ),
    Band.HIGH: (
        "Continuous monitoring of vital signs. Registered nurse to inform the medical team "
        "caring for the patient immediately, at least at specialist registrar level; "
        "emergency assessment by a clinical team or critical care outreach team with "
        "critical care competencies, including practitioner(s) with advanced airway "
        "management skills; consider transfer of care to a level 2 or 3 clinical care "
        "facility, i.e. higher-dependency unit or ICU (emergency response)."
    ),
}


class Parameter(StrEnum):
    """The seven parameters of a set, in the chart's order."""

    RESPIRATION_RATE = "respiration-rate"
    SPO2 = "spo2"
    AIR_OR_OXYGEN = "air-or-oxygen"
    SYSTOLIC = "systolic"
    PULSE = "pulse"
    CONSCIOUSNESS = "consciousness"
    TEMPERATURE = "temperature"


@dataclass(frozen=True, slots=True)
class VitalSigns:
    """One complete set of the seven parameters, in the chart's units."""

    respiration_rate: float  # breaths per minute
    spo2: float  # per cent
    on_oxygen: bool
    systolic: float  # mmHg
    pulse: float  # beats per minute
    consciousness: Consciousness
    temperature: float  # degrees Celsius


@dataclass(frozen=True, slots=True)
class News2:
    """A set's NEWS2: each sub-score, the total, the band and the SpO2 scale used."""

    scores: dict[Parameter, int]
    total: int
    band: Band
    scale: int  # SpO2 scale 1 or 2

    @property
    def response(self) -> str:
        """Return the RCP's clinical response to this score (Table 3)."""
        return RESPONSE[self.band]


def at_chart_precision(value: float, places: int = 0) -> float:
    """Return value rounded as the chart writes it: half away from zero, to places."""
    step = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP))


def score_by(table: tuple[Row, ...], value: float, places: int = 0) -> int:
    """Return the score of value in one of the chart's tables."""
    rounded = at_chart_precision(value, places)
    for low, high, score in table:
        if (low is None or rounded >= low) and (high is None or rounded <= high):
            return score
    raise ValueError(f"{value} falls outside every row of the table")  # tables leave no gaps


def respiration_rate_score(rate: float) -> int:
    return score_by(RESPIRATION_RATE, rate)


def spo2_score(spo2: float, *, scale: int, on_oxygen: bool) -> int:
    """Return the SpO2 sub-score: scale 1, or scale 2 (where 93 % or more scores only on
    oxygen)."""
    if scale == 1:
        return score_by(SPO2_SCALE_1, spo2)
    if scale == 2:
        return score_by(SPO2_SCALE_2_ON_OXYGEN if on_oxygen else SPO2_SCALE_2_ON_AIR, spo2)
    raise ValueError(f"SpO2 scale {scale}: NEWS2 has scales 1 and 2")


def air_or_oxygen_score(on_oxygen: bool) -> int:
    return OXYGEN_SCORE if on_oxygen else AIR_SCORE


def systolic_score(systolic: float) -> int:
    return score_by(SYSTOLIC_BLOOD_PRESSURE, systolic)


def pulse_score(pulse: float) -> int:
    return score_by(PULSE, pulse)


def consciousness_score(level: Consciousness) -> int:
    return 0 if level is Consciousness.ALERT else CONSCIOUSNESS_SCORE


def temperature_score(celsius: float) -> int:
    return score_by(TEMPERATURE, celsius, places=1)


def band_of(total: int, scores: dict[Parameter, int] | list[int]) -> Band:
    """Return the band of a total whose sub-scores are scores (Table 2)."""
    singles = scores.values() if isinstance(scores, dict) else scores
    if total >= HIGH_FROM:
        return Band.HIGH
    if total >= MEDIUM_FROM:
        return Band.MEDIUM
    if any(score >= SINGLE_PARAMETER_RED for score in singles):
        return Band.LOW_MEDIUM
    return Band.LOW if total > 0 else Band.ZERO


def news2_score(signs: VitalSigns, *, scale: int = 1) -> News2:
    """Return the NEWS2 of a complete set on SpO2 scale 1 or 2."""
    scores = {
        Parameter.RESPIRATION_RATE: respiration_rate_score(signs.respiration_rate),
        Parameter.SPO2: spo2_score(signs.spo2, scale=scale, on_oxygen=signs.on_oxygen),
        Parameter.AIR_OR_OXYGEN: air_or_oxygen_score(signs.on_oxygen),
        Parameter.SYSTOLIC: systolic_score(signs.systolic),
        Parameter.PULSE: pulse_score(signs.pulse),
        Parameter.CONSCIOUSNESS: consciousness_score(signs.consciousness),
        Parameter.TEMPERATURE: temperature_score(signs.temperature),
    }
    total = sum(scores.values())
    return News2(scores, total, band_of(total, scores), scale)
