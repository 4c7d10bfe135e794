"""NHS number: 10 digits, the last a modulus-11 check digit (NHS Data Dictionary).

Weights 10..2 apply to the first nine digits; the check digit is 11 - (sum mod 11),
where 11 becomes 0 and 10 means the number is invalid (never issued).
"""

from __future__ import annotations

from typing import Any

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def nhs_check_digit(first_nine: str) -> int | None:
    """Return the check digit for nine leading digits, or None if no valid one exists."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError(f"expected nine digits, got {first_nine!r}")
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def nhs_number_problem(value: str) -> str | None:
    """Return why value is not a valid NHS number, or None if it is one."""
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return f"NHS number {value!r} must be exactly 10 digits with no spaces"
    expected = nhs_check_digit(value[:9])
    if expected is None:
        return f"NHS number {value!r} is invalid: its first nine digits give a check digit of 10"
    if int(value[9]) != expected:
        return (
            f"NHS number {value!r} fails the modulus-11 check: "
            f"the check digit should be {expected}, not {value[9]}"
        )
    return None


def is_valid_nhs_number(value: str) -> bool:
    """Return True if value is 10 digits whose last is the modulus-11 check digit."""
    return nhs_number_problem(value) is None


def format_nhs_number(value: str) -> str:
    """Return the number in the 3-3-4 form people read and say (e.g. 943 476 5919)."""
    return f"{value[:3]} {value[3:6]} {value[6:]}"


def nhs_numbers_held(patient: dict[str, Any]) -> tuple[str, ...]:
    """Return the NHS numbers a Patient holds: none when it is marked inactive."""
    if patient.get("active") is False:
        return ()
    found: list[str] = []
    for identifier in patient.get("identifier") or ():
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str) and value not in found:
                found.append(value)
    return tuple(found)
