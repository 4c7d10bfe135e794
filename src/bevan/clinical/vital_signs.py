"""The codes and units by which an Observation is one of NEWS2's seven readings.

The contract other systems code against (one Observation per parameter, status final,
subject the Patient, effectiveDateTime):
- respiration rate: LOINC 9279-1, per minute
- SpO2: LOINC 2708-6 or 59408-5, %
- systolic blood pressure: LOINC 8480-6 alone, or as a component of the LOINC 85354-9
  blood pressure panel (whose 8462-4 diastolic component is read beside it), mm[Hg]
- pulse: LOINC 8867-4, per minute
- temperature: LOINC 8310-5, Cel or [degF] (converted to Celsius)
- consciousness: SNOMED 1104441000000107 (ACVPU) with a valueCodeableConcept of
  248234008 alert, 130987000 new confusion, 300202002 voice, 450847001 pain or
  422768004 unresponsive
- air or oxygen, as the national NEWS2 guidance writes it: a code-only Observation coded
  SNOMED 722742002 "Breathing room air" or 371825009 "Patient on oxygen"; also when those
  codes come as the value, or as an inhaled oxygen flow rate (LOINC 3151-8) above 0
  (as the code, or as a component).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bevan.clinical.news2 import Consciousness, Parameter
from bevan.clinical.units import UCUM, canonical_quantity

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

RESPIRATION_RATE_CODE = "9279-1"
SPO2_CODES = frozenset({"2708-6", "59408-5"})
SYSTOLIC_CODE = "8480-6"
DIASTOLIC_CODE = "8462-4"
BLOOD_PRESSURE_PANEL_CODE = "85354-9"
PULSE_CODE = "8867-4"
TEMPERATURE_CODE = "8310-5"
OXYGEN_FLOW_CODE = "3151-8"
ACVPU_CODE = "1104441000000107"
ROOM_AIR_CODE = "722742002"
ON_OXYGEN_CODE = "371825009"

ACVPU_VALUES: dict[str, Consciousness] = {
    "248234008": Consciousness.ALERT,
    "130987000": Consciousness.NEW_CONFUSION,
    "300202002": Consciousness.VOICE,
    "450847001": Consciousness.PAIN,
    "422768004": Consciousness.UNRESPONSIVE,
}

# LOINC code -> the parameter its value measures
_MEASURED: dict[str, Parameter] = {
    RESPIRATION_RATE_CODE: Parameter.RESPIRATION_RATE,
    "2708-6": Parameter.SPO2,
    "59408-5": Parameter.SPO2,
    SYSTOLIC_CODE: Parameter.SYSTOLIC,
    PULSE_CODE: Parameter.PULSE,
    TEMPERATURE_CODE: Parameter.TEMPERATURE,
}
# The UCUM units each measured parameter may come in (no unit at all is read as these).
_UNITS: dict[Parameter, frozenset[str]] = {
    Parameter.RESPIRATION_RATE: frozenset({"/min", "{breaths}/min"}),
    Parameter.SPO2: frozenset({"%"}),
    Parameter.SYSTOLIC: frozenset({"mm[Hg]"}),
    Parameter.PULSE: frozenset({"/min", "{beats}/min"}),
    Parameter.TEMPERATURE: frozenset({"Cel", "[degF]"}),
}
CHART_UNITS: dict[Parameter, str] = {
    Parameter.RESPIRATION_RATE: "/min",
    Parameter.SPO2: "%",
    Parameter.SYSTOLIC: "mm[Hg]",
    Parameter.PULSE: "/min",
    Parameter.TEMPERATURE: "Cel",
}
KELVIN_AT_ZERO_CELSIUS = 273.15

# Statuses whose readings count towards a set.
COUNTED_STATUSES = frozenset({"final", "amended", "corrected"})


class UnreadableReading(ValueError):
    """A NEWS2 reading whose value cannot be read: what is wrong, and where (FHIRPath)."""

    def __init__(self, message: str, expression: str) -> None:
        super().__init__(message)
        self.expression = expression


@dataclass(frozen=True, slots=True)
class Reading:
    """One NEWS2 parameter read from an Observation, in the chart's units."""

    parameter: Parameter
    value: float | None = None  # the measured parameters
    consciousness: Consciousness | None = None
    on_oxygen: bool | None = None
    diastolic: float | None = None  # beside a systolic read from a blood pressure panel
    element: str = "Observation.valueQuantity.value"  # where the value was read (FHIRPath)


def codes_of(concept: Any, system: str) -> list[str]:
    """Return the codes of a CodeableConcept in one system."""
    if not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    if not isinstance(coding, list):
        return []
    return [
        c["code"]
        for c in coding
        if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str)
    ]


def reading_of(observation: dict[str, Any]) -> Reading | None:
    """Return the NEWS2 reading an Observation holds, or None if it holds none; raise
    UnreadableReading when it is one but its value cannot be read."""
    code = observation.get("code")
    loinc = codes_of(code, LOINC)
    for c in loinc:
        parameter = _MEASURED.get(c)
        if parameter is not None:
            value = _measured(parameter, observation.get("valueQuantity"), "Observation")
            if value is None:
                return None  # no value (a dataAbsentReason): nothing to score
            return Reading(parameter, value=value)
        if c == BLOOD_PRESSURE_PANEL_CODE:
            return _from_panel(observation)
        if c == OXYGEN_FLOW_CODE:
            flow = _flow(observation.get("valueQuantity"))
            return None if flow is None else Reading(Parameter.AIR_OR_OXYGEN, on_oxygen=flow > 0)
    snomed = codes_of(code, SNOMED)
    if ACVPU_CODE in snomed:
        value_codes = codes_of(observation.get("valueCodeableConcept"), SNOMED)
        for value_code in value_codes:
            level = ACVPU_VALUES.get(value_code)
            if level is not None:
                return Reading(
                    Parameter.CONSCIOUSNESS,
                    consciousness=level,
                    element="Observation.valueCodeableConcept",
                )
        if value_codes or "valueCodeableConcept" in observation:
            raise UnreadableReading(
                "an ACVPU reading's value must be SNOMED 248234008 (alert), 130987000 (new "
                "confusion), 300202002 (voice), 450847001 (pain) or 422768004 (unresponsive)",
                "Observation.valueCodeableConcept",
            )
        return None
    on_oxygen = _air_or_oxygen(snomed)
    if on_oxygen is None:
        on_oxygen = _air_or_oxygen(codes_of(observation.get("valueCodeableConcept"), SNOMED))
    if on_oxygen is not None:
        return Reading(Parameter.AIR_OR_OXYGEN, on_oxygen=on_oxygen)
    for component in _components(observation):
        if OXYGEN_FLOW_CODE in codes_of(component.get("code"), LOINC):
            flow = _flow(component.get("valueQuantity"))
            if flow is not None:
                return Reading(Parameter.AIR_OR_OXYGEN, on_oxygen=flow > 0)
    return None


def _air_or_oxygen(codes: list[str]) -> bool | None:
    if ON_OXYGEN_CODE in codes:
        return True
    if ROOM_AIR_CODE in codes:
        return False
    return None


def _components(observation: dict[str, Any]) -> list[dict[str, Any]]:
    components = observation.get("component")
    if not isinstance(components, list):
        return []
    return [c for c in components if isinstance(c, dict)]


def _from_panel(observation: dict[str, Any]) -> Reading | None:
    systolic = diastolic = None
    where = "Observation.component"
    for n, component in enumerate(_components(observation)):
        codes = codes_of(component.get("code"), LOINC)
        if SYSTOLIC_CODE in codes:
            where = f"Observation.component[{n}].valueQuantity.value"
            systolic = _measured(
                Parameter.SYSTOLIC, component.get("valueQuantity"), f"Observation.component[{n}]"
            )
        elif DIASTOLIC_CODE in codes:
            diastolic = _measured(
                Parameter.SYSTOLIC, component.get("valueQuantity"), f"Observation.component[{n}]"
            )
    if systolic is None:
        return None
    return Reading(Parameter.SYSTOLIC, value=systolic, diastolic=diastolic, element=where)


def _number(quantity: dict[str, Any], where: str) -> float:
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise UnreadableReading("a reading's value must be a number", f"{where}.value")
    return float(value)


def _measured(parameter: Parameter, quantity: Any, where: str) -> float | None:
    """Return the quantity in the chart's unit for parameter, or None if it has no value."""
    if not isinstance(quantity, dict) or "value" not in quantity:
        return None
    place = f"{where}.valueQuantity"
    value = _number(quantity, place)
    system, code = quantity.get("system"), quantity.get("code")
    allowed = _UNITS[parameter]
    if code is None and system is None:
        return value  # a bare number is read in the chart's unit
    if system != UCUM or code not in allowed:
        raise UnreadableReading(
            f"a {parameter.value} reading must be in UCUM "
            + " or ".join(sorted(allowed))
            + f", not {system or 'no system'}|{code or 'no code'}",
            f"{place}.code",
        )
    if parameter is Parameter.TEMPERATURE and code != "Cel":
        kelvin = canonical_quantity(value, system, code)
        assert kelvin is not None  # [degF] is one of units' conversions
        return round(kelvin[0] - KELVIN_AT_ZERO_CELSIUS, 2)
    return value


def _flow(quantity: Any) -> float | None:
    if not isinstance(quantity, dict) or not isinstance(
        quantity.get("value"), int | float | Decimal
    ):
        return None
    return float(quantity["value"])
