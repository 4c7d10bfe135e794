"""The patient banner's wording (NHS Common User Interface), from FHIR Patients."""

from __future__ import annotations

from datetime import date

from bevan.web import presentation
from bevan.web.patient_record import (
    ALLERGIES_NOT_KNOWN,
    ALLERGIES_RECORDED,
    NO_KNOWN_ALLERGIES,
    allergy_status,
    banner_of,
)


def test_a_name_is_family_in_capitals_then_given_then_title() -> None:
    patient = {
        "name": [
            {"use": "old", "family": "Jones", "given": ["Mary"], "period": {"end": "2001"}},
            {"use": "official", "family": "Smith", "given": ["Mary", "Ann"], "prefix": ["Mrs"]},
        ]
    }
    assert presentation.banner_name(patient) == "SMITH, Mary Ann (Mrs)"
    assert presentation.banner_name({"name": [{"family": "Smith"}]}) == "SMITH"
    assert presentation.banner_name({}) == "Not known"


def test_ages_follow_the_common_user_interface() -> None:
    today = date(2026, 12, 3)
    assert presentation.age("1984-03-09", today) == "42y"
    assert presentation.age("2025-06-01", today) == "18m"
    assert presentation.age("2026-10-01", today) == "9w"
    assert presentation.age("2026-11-30", today) == "3d"
    assert presentation.age(None, today) == ""


def test_the_banner_says_not_known_for_what_is_missing_and_marks_the_deceased() -> None:
    banner = banner_of({"resourceType": "Patient", "id": "x"})
    assert (banner.born, banner.gender, banner.nhs_number) == ("Not known",) * 3
    assert not banner.deceased
    died = banner_of(
        {
            "resourceType": "Patient",
            "id": "y",
            "birthDate": "1930-01-15",
            "deceasedDateTime": "2020-06-01T10:00:00Z",
            "gender": "female",
            "identifier": [{"system": presentation.NHS_NUMBER_SYSTEM, "value": "9434765919"}],
        }
    )
    assert died.deceased and died.died == "01-Jun-2020"
    assert died.born == "15-Jan-1930 (90y)"  # the age they reached
    assert died.nhs_number == "943 476 5919"
    assert died.gender == "Female"


def test_allergy_status_has_fixed_wording() -> None:
    penicillin = {"code": {"coding": [{"code": "91936005"}]}}
    none_known = {"code": {"coding": [{"code": "716186003"}]}}
    assert allergy_status([]) == ALLERGIES_NOT_KNOWN
    assert allergy_status([none_known]) == NO_KNOWN_ALLERGIES
    assert allergy_status([none_known, penicillin]) == ALLERGIES_RECORDED
