"""Age, sex and ethnicity of the synthetic population, shaped like England's."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

# England, mid-2022 population estimates by five-year age band, thousands
# (ONS mid-year estimates; approximate, rounded). (lowest age, highest age, male, female)
AGE_BANDS: tuple[tuple[int, int, int, int], ...] = (
    (0, 4, 1640, 1560),
    (5, 9, 1790, 1700),
    (10, 14, 1810, 1720),
    (15, 19, 1690, 1600),
    (20, 24, 1790, 1740),
    (25, 29, 1870, 1880),
    (30, 34, 1960, 2000),
    (35, 39, 1890, 1920),
    (40, 44, 1780, 1800),
    (45, 49, 1720, 1760),
    (50, 54, 1880, 1930),
    (55, 59, 1870, 1910),
    (60, 64, 1610, 1660),
    (65, 69, 1370, 1450),
    (70, 74, 1290, 1400),
    (75, 79, 1040, 1180),
    (80, 84, 620, 780),
    (85, 89, 360, 500),
    (90, 99, 170, 320),
)

# Ethnic group, England, Census 2021 (approximate shares, per cent), as NHS Data
# Dictionary ethnic category codes.
ETHNIC_CATEGORIES: tuple[tuple[str, str, float], ...] = (
    ("A", "White - British", 73.5),
    ("B", "White - Irish", 0.9),
    ("C", "White - Any other White background", 6.9),
    ("D", "Mixed - White and Black Caribbean", 0.9),
    ("E", "Mixed - White and Black African", 0.5),
    ("F", "Mixed - White and Asian", 0.8),
    ("G", "Mixed - Any other mixed background", 0.8),
    ("H", "Asian or Asian British - Indian", 3.3),
    ("J", "Asian or Asian British - Pakistani", 2.8),
    ("K", "Asian or Asian British - Bangladeshi", 1.1),
    ("L", "Asian or Asian British - Any other Asian background", 1.6),
    ("M", "Black or Black British - Caribbean", 1.1),
    ("N", "Black or Black British - African", 2.6),
    ("P", "Black or Black British - Any other Black background", 0.5),
    ("R", "Other Ethnic Groups - Chinese", 0.8),
    ("S", "Other Ethnic Groups - Any other ethnic group", 1.3),
    ("Z", "Not stated", 1.5),
)

_BAND_CHOICES = [(low, high, "male") for low, high, _, _ in AGE_BANDS] + [
    (low, high, "female") for low, high, _, _ in AGE_BANDS
]
_BAND_WEIGHTS = list(accumulate([m for _, _, m, _ in AGE_BANDS] + [f for _, _, _, f in AGE_BANDS]))
_ETHNIC_WEIGHTS = list(accumulate(share for _, _, share in ETHNIC_CATEGORIES))


@dataclass(frozen=True, slots=True)
class Demographics:
    """Who a synthetic person is, before any clinical history."""

    sex: str  # FHIR administrative gender: "male" or "female"
    age: int
    ethnic_code: str
    ethnic_display: str


def draw_demographics(rng: random.Random) -> Demographics:
    """Return a sex, age in whole years and ethnic category drawn like England's."""
    low, high, sex = rng.choices(_BAND_CHOICES, cum_weights=_BAND_WEIGHTS)[0]
    if low >= 90:  # the open top band thins out quickly
        age = low + min(int(rng.expovariate(1 / 3.0)), high - low)
    else:
        age = rng.randint(low, high)
    code, display, _ = rng.choices(ETHNIC_CATEGORIES, cum_weights=_ETHNIC_WEIGHTS)[0]
    return Demographics(sex=sex, age=age, ethnic_code=code, ethnic_display=display)
