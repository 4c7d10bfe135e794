"""Whether a NEWS2 reading can be true, and whether it is believable.

Three verdicts, so that a device's mistake never raises or hides an alarm:
- impossible (no living patient shows it, or a sensor cannot report it): the reading is
  refused, naming the limit, and nothing sent with it is stored;
- implausible (possible, but far likelier a probe off, a typed extra digit or a wrong
  unit than the patient; or a systolic pressure at or below the diastolic): stored,
  marked, and never scored;
- believable: scored. Every value a deteriorating patient really shows is believable on
  its own (respiration 5-60/min, SpO2 70-100 %, systolic 50-250 mmHg, pulse 25-220/min,
  temperature 32-42 C).

The limits are this module's constants: no setting, role or request changes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bevan.clinical.news2 import Parameter
from bevan.clinical.vital_signs import CHART_UNITS, Reading

# What cannot be true, in the chart's units: (lowest possible, highest possible).
# Negative values are impossible for every measured parameter.
POSSIBLE: dict[Parameter, tuple[float, float]] = {
    Parameter.RESPIRATION_RATE: (0, 80),
    Parameter.SPO2: (0, 100),
    Parameter.SYSTOLIC: (0, 300),
    Parameter.PULSE: (0, 300),
    Parameter.TEMPERATURE: (25, 45),
}
# What a deteriorating patient really shows: always scored, never marked on its own.
BELIEVABLE: dict[Parameter, tuple[float, float]] = {
    Parameter.RESPIRATION_RATE: (5, 60),
    Parameter.SPO2: (70, 100),
    Parameter.SYSTOLIC: (50, 250),
    Parameter.PULSE: (25, 220),
    Parameter.TEMPERATURE: (32, 42),
}

NAMES: dict[Parameter, str] = {
    Parameter.RESPIRATION_RATE: "respiration rate",
    Parameter.SPO2: "SpO2",
    Parameter.SYSTOLIC: "systolic blood pressure",
    Parameter.PULSE: "pulse",
    Parameter.TEMPERATURE: "temperature",
}


@dataclass(frozen=True, slots=True)
class Impossible:
    """Why a reading cannot be true: the message names the parameter and the limit."""

    message: str
    limit: float


def impossible(reading: Reading) -> Impossible | None:
    """Return why reading cannot be true, or None if it can."""
    if reading.value is None or reading.parameter not in POSSIBLE:
        return None
    low, high = POSSIBLE[reading.parameter]
    name, unit = NAMES[reading.parameter], _unit(reading.parameter)
    for value, what in ((reading.value, name), (reading.diastolic, "diastolic blood pressure")):
        if value is None:
            continue
        if value < 0:
            return Impossible(
                f"a {what} of {value:g} {unit} is impossible: it cannot be negative (below 0)", 0
            )
        if value < low:
            return Impossible(
                f"a {what} of {value:g} {unit} is impossible: the lowest possible is {low:g}", low
            )
        if value > high:
            return Impossible(
                f"a {what} of {value:g} {unit} is impossible: the highest possible is {high:g}",
                high,
            )
    return None


def implausible(reading: Reading) -> str | None:
    """Return why a possible reading is not believable (it is stored, marked and never
    scored), or None if it is to be scored."""
    if reading.value is None or reading.parameter not in BELIEVABLE:
        return None
    low, high = BELIEVABLE[reading.parameter]
    name, unit = NAMES[reading.parameter], _unit(reading.parameter)
    if not low <= reading.value <= high:
        return (
            f"a {name} of {reading.value:g} {unit} is outside {low:g}-{high:g} {unit}: "
            "likelier a device or typing error than the patient"
        )
    if reading.diastolic is not None and reading.value <= reading.diastolic:
        return (
            f"a systolic blood pressure of {reading.value:g} mmHg is at or below the "
            f"diastolic ({reading.diastolic:g} mmHg)"
        )
    return None


def _unit(parameter: Parameter) -> str:
    unit = CHART_UNITS[parameter]
    return {"/min": "/min", "Cel": "C", "mm[Hg]": "mmHg"}.get(unit, unit)
