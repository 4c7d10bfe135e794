"""Valid NHS numbers for tests, each used once: one active Patient holds each number."""

from __future__ import annotations

import itertools

from bevan.clinical.nhs_number import nhs_check_digit

_SERIAL = itertools.count(400_000_000)


def fresh_nhs_number() -> str:
    """Return a valid NHS number not used before in this test process."""
    while True:
        first_nine = str(next(_SERIAL))
        check = nhs_check_digit(first_nine)
        if check is not None:
            return f"{first_nine}{check}"
