"""Readings that cannot be true are refused, unbelievable ones marked, the rest scored."""

from __future__ import annotations

import pytest

from bevan.clinical.news2 import Parameter
from bevan.clinical.plausibility import BELIEVABLE, implausible, impossible
from bevan.clinical.vital_signs import Reading, UnreadableReading, reading_of


@pytest.mark.parametrize(
    ("parameter", "value", "limit"),
    [
        (Parameter.SPO2, 101, 100),
        (Parameter.PULSE, 301, 300),
        (Parameter.TEMPERATURE, 24.9, 25),
        (Parameter.TEMPERATURE, 45.1, 45),
        (Parameter.SYSTOLIC, 301, 300),
        (Parameter.RESPIRATION_RATE, 81, 80),
        (Parameter.PULSE, -1, 0),
    ],
)
def test_an_impossible_reading_names_its_limit(parameter: Parameter, value: float, limit) -> None:
    why = impossible(Reading(parameter, value=value))
    assert why is not None and why.limit == limit
    assert f"{limit:g}" in why.message


@pytest.mark.parametrize("parameter", list(BELIEVABLE))
def test_every_value_a_deteriorating_patient_shows_is_scored(parameter: Parameter) -> None:
    low, high = BELIEVABLE[parameter]
    for value in (low, (low + high) / 2, high):
        reading = Reading(parameter, value=value)
        assert impossible(reading) is None
        assert implausible(reading) is None


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        (Parameter.PULSE, 0),
        (Parameter.PULSE, 255),
        (Parameter.SPO2, 38),
        (Parameter.RESPIRATION_RATE, 66),
        (Parameter.SYSTOLIC, 20),
        (Parameter.TEMPERATURE, 43.9),
    ],
)
def test_a_possible_but_unbelievable_reading_is_implausible(parameter, value) -> None:
    reading = Reading(parameter, value=value)
    assert impossible(reading) is None
    assert implausible(reading)


def test_a_systolic_at_or_below_the_diastolic_is_implausible() -> None:
    assert implausible(Reading(Parameter.SYSTOLIC, value=80, diastolic=80))
    assert implausible(Reading(Parameter.SYSTOLIC, value=120, diastolic=80)) is None


def _quantity(code: str, value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
    }


def test_a_fahrenheit_temperature_is_read_in_celsius() -> None:
    reading = reading_of(_quantity("8310-5", 98.6, "[degF]"))
    assert reading is not None and reading.parameter is Parameter.TEMPERATURE
    assert reading.value == pytest.approx(37.0)


def test_a_reading_in_the_wrong_unit_is_unreadable() -> None:
    with pytest.raises(UnreadableReading) as raised:
        reading_of(_quantity("8867-4", 70, "kg"))
    assert raised.value.expression == "Observation.valueQuantity.code"


def test_air_or_oxygen_is_read_from_its_code_its_value_or_a_flow_rate() -> None:
    snomed = "http://snomed.info/sct"
    coded = {"code": {"coding": [{"system": snomed, "code": "371825009"}]}}
    air = {"code": {"coding": [{"system": snomed, "code": "722742002"}]}}
    valued = {
        "code": {"text": "Air or oxygen"},
        "valueCodeableConcept": {"coding": [{"system": snomed, "code": "722742002"}]},
    }
    flow = _quantity("3151-8", 2, "L/min")
    no_flow = _quantity("3151-8", 0, "L/min")
    assert [reading_of(o).on_oxygen for o in (coded, air, valued, flow, no_flow)] == [  # type: ignore[union-attr]
        True, False, False, True, False,
    ]  # fmt: skip
