from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bevan.clinical.nhs_number import (
    format_nhs_number,
    is_valid_nhs_number,
    nhs_check_digit,
    nhs_number_problem,
)


@pytest.mark.parametrize("number", ["9434765919", "9990000018", "4010232137"])
def test_known_valid_numbers(number: str) -> None:
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize(
    "number", ["9434765918", "943476591", "94347659190", "943476591X", "", "１２３４５６７８９０"]
)
def test_known_invalid_numbers(number: str) -> None:
    assert not is_valid_nhs_number(number)
    assert nhs_number_problem(number)


def test_a_check_digit_of_ten_is_never_valid() -> None:
    # 100000001 weights to 10*1 + 2*1 = 12 -> 11 - 1 = 10
    assert nhs_check_digit("100000001") is None
    assert not any(is_valid_nhs_number(f"100000001{d}") for d in range(10))


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_exactly_one_check_digit_or_none_completes_nine_digits(first_nine: str) -> None:
    valid = [d for d in range(10) if is_valid_nhs_number(f"{first_nine}{d}")]
    expected = nhs_check_digit(first_nine)
    assert valid == ([] if expected is None else [expected])


def test_format_for_people() -> None:
    assert format_nhs_number("9434765919") == "943 476 5919"
