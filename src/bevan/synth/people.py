"""Synthetic people: NHS numbers in the test range, UK names, addresses and the Patient resource."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM, nhs_check_digit
from bevan.synth import codes
from bevan.synth.demography import Demographics, draw_demographics
from bevan.synth.organisations import Practice, ServiceDirectory, load_data, postcode
from bevan.synth.references import RecordContext
from bevan.synth.seeds import derived_seed

# NHS numbers 999 000 0000 to 999 999 9999 are never issued (the test range). Nine
# leading digits are 999 + a five-digit group + one digit; every group of ten has at least
# nine digits with a valid check digit, so nine numbers per group give 900,000 distinct
# numbers. Beyond that the range is exhausted: later patients have no NHS number (as
# overseas visitors and the newly arrived may not), never a repeated or a real one.
NHS_TEST_GROUPS = 100_000
UNIQUE_NHS_NUMBERS = NHS_TEST_GROUPS * 9
_GROUP_STRIDE = 7919  # coprime with 100,000, so groups are a permutation, not a sequence


def synthetic_nhs_number(seed: int, index: int) -> str | None:
    """Return patient index's NHS number: valid, in the test range and unique; None once
    the 900,000 the range holds are used."""
    if index >= UNIQUE_NHS_NUMBERS:
        return None
    offset = derived_seed("nhs-number", seed)
    position = index
    group = (position // 9 * _GROUP_STRIDE + offset) % NHS_TEST_GROUPS
    stem = f"999{group:05d}"
    valid = [
        (digit, check)
        for digit in range(10)
        if (check := nhs_check_digit(f"{stem}{digit}")) is not None
    ]
    digit, check = valid[(position % 9 + offset) % len(valid)]
    return f"{stem}{digit}{check}"


@dataclass(frozen=True, slots=True)
class Person:
    """A synthetic patient's identity, registration and home."""

    nhs_number: str | None
    demographics: Demographics
    birth_date: date
    family: str
    given: tuple[str, ...]
    prefix: str
    phone: str
    address_line: str
    city: str
    postcode: str
    practice: Practice
    gp_id: str


def _prefix(rng: random.Random, sex: str, age: int) -> str:
    if age < 18:
        return ""
    if sex == "male":
        return "Mr"
    return rng.choice(("Mrs", "Ms", "Miss")) if age < 60 else rng.choice(("Mrs", "Mrs", "Ms"))


def draw_person(
    rng: random.Random, directory: ServiceDirectory, seed: int, index: int, as_at: date
) -> Person:
    """Return who patient index is, where they live and where they are registered."""
    names = load_data("names")
    demographics = draw_demographics(rng)
    days_since_birthday = rng.randint(0, 364)
    birth_date = as_at - timedelta(days=int(demographics.age * 365.25) + days_since_birthday)
    given_pool = names["given_male"] if demographics.sex == "male" else names["given_female"]
    given = [rng.choice(given_pool)]
    if rng.random() < 0.35:
        given.append(rng.choice(given_pool))
    practice = directory.draw_practice(rng)
    street = rng.choice(names["streets"])
    return Person(
        nhs_number=synthetic_nhs_number(seed, index),
        demographics=demographics,
        birth_date=birth_date,
        family=rng.choice(names["family"]),
        given=tuple(given),
        prefix=_prefix(rng, demographics.sex, demographics.age),
        # Ofcom reserves 07700 900000-900999 for drama: never a real mobile.
        phone=f"07700 900{rng.randint(0, 999):03d}",
        address_line=f"{rng.randint(1, 240)} {street}",
        city=practice.locality.name,
        postcode=postcode(rng, rng.choice(practice.locality.districts)),
        practice=practice,
        gp_id=rng.choice(practice.gps).id,
    )


def patient_resource(person: Person, context: RecordContext) -> dict[str, Any]:
    """Return the Patient resource for a person."""
    name: dict[str, Any] = {"use": "official", "family": person.family, "given": list(person.given)}
    if person.prefix:
        name["prefix"] = [person.prefix]
    demographics = person.demographics
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": context.patient_id,
        "extension": [
            {
                "url": codes.ETHNIC_CATEGORY_URL,
                "valueCodeableConcept": codes.concept(
                    codes.ETHNIC_CATEGORY_SYSTEM,
                    demographics.ethnic_code,
                    demographics.ethnic_display,
                ),
            }
        ],
        "identifier": [
            {
                "extension": [
                    {
                        "url": codes.NHS_NUMBER_VERIFICATION_URL,
                        "valueCodeableConcept": codes.concept(
                            codes.NHS_NUMBER_VERIFICATION_SYSTEM,
                            "01",
                            "Number present and verified",
                        ),
                    }
                ],
                "system": NHS_NUMBER_SYSTEM,
                "value": person.nhs_number,
            }
        ],
        "active": True,
        "name": [name],
        "telecom": [{"system": "phone", "value": person.phone, "use": "mobile"}],
        "gender": demographics.sex,
        "birthDate": person.birth_date.isoformat(),
        "address": [
            {
                "use": "home",
                "line": [person.address_line],
                "city": person.city,
                "district": person.practice.locality.county,
                "postalCode": person.postcode,
                "country": "GB",
            }
        ],
        "generalPractitioner": [{"reference": f"Organization/{person.practice.ods_code}"}],
        "managingOrganization": {"reference": f"Organization/{person.practice.ods_code}"},
    }
    if person.nhs_number is None:  # beyond the test range's capacity
        del patient["identifier"]
    return patient
