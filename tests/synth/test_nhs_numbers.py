from __future__ import annotations

from typing import Any

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM, is_valid_nhs_number
from bevan.synth.people import synthetic_nhs_number


def _nhs_number(patient: dict[str, Any]) -> str:
    (value,) = [i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER_SYSTEM]
    return str(value)


def test_every_patient_has_a_valid_nhs_number_in_the_test_range(population) -> None:
    numbers = [_nhs_number(record[0]) for record in population]
    assert all(is_valid_nhs_number(n) for n in numbers)
    assert all(9990000000 <= int(n) <= 9999999999 for n in numbers)


def test_nhs_numbers_are_unique_across_the_population(population) -> None:
    numbers = [_nhs_number(record[0]) for record in population]
    assert len(set(numbers)) == len(numbers) == 2000


def test_nhs_numbers_stay_unique_and_valid_far_into_a_large_population() -> None:
    indexes = list(range(0, 20_000)) + list(range(880_000, 899_999, 7))
    numbers = [synthetic_nhs_number(5, i) for i in indexes]
    assert len(set(numbers)) == len(numbers)
    assert all(is_valid_nhs_number(n) and n.startswith("999") for n in numbers)


def test_nhs_numbers_depend_on_the_seed() -> None:
    assert synthetic_nhs_number(1, 0) != synthetic_nhs_number(2, 0)


def test_beyond_the_test_range_patients_have_no_nhs_number_rather_than_a_repeat() -> None:
    assert synthetic_nhs_number(5, 899_999) is not None
    assert synthetic_nhs_number(5, 900_000) is None
    from bevan.synth import generate_patients

    patient = next(generate_patients(1, seed=5, start=900_000))[0]
    assert "identifier" not in patient
