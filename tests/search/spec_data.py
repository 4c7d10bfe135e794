"""A small crafted data set and the search-page examples over it, with their exact answers.

The cases follow https://hl7.org/fhir/R4/search.html; each says which resources a search
must find among this data set (every resource carries the tag SPEC_TAG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.search.searching import tagged

SPEC_TAG = "spec-examples"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _bp(id_: str, subject: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Blood pressure"},
        "subject": {"reference": subject},
        "effectiveDateTime": "2013-01-14T11:00:00Z",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": _quantity(systolic, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": _quantity(diastolic, "mm[Hg]"),
            },
        ],
    }


def _lab(id_: str, subject: str | None, when: str, quantity: dict[str, Any]) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "1234-5", "display": "Test code"}]},
        "effectiveDateTime": when,
        "valueQuantity": quantity,
    }
    if subject:
        observation["subject"] = {"reference": subject}
    return observation


def _encounter(id_: str, subject: str, period: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": id_,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": subject},
        "period": period,
    }


def spec_resources(base_url: str) -> list[dict[str, Any]]:
    """Return the crafted data set, every resource tagged SPEC_TAG."""
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "gp1", "name": [{"family": "Careful"}]},
        {
            "resourceType": "Patient",
            "id": "23",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "identifier": [
                {"system": "http://acme.org/patient", "value": "2345"},
                {
                    "type": {
                        "coding": [{"system": V2_0203, "code": "MR"}],
                        "text": "Hospital number",
                    },
                    "system": "http://acme.org/mrn",
                    "value": "446053",
                },
            ],
            "telecom": [{"system": "phone", "value": "0113 496 0000", "use": "home"}],
            "address": [{"line": ["1 Park Row"], "city": "Bath, Somerset", "country": "UK"}],
            "generalPractitioner": [{"reference": "Practitioner/gp1"}],
        },
        {
            "resourceType": "Patient",
            "id": "eve",
            "name": [{"family": "Everywoman", "given": ["Eve"]}],
            "gender": "female",
            "birthDate": "2010-06-01",
            "identifier": [{"system": "http://other.org/patient", "value": "2345"}],
        },
        {
            "resourceType": "Patient",
            "id": "evelyn",
            "name": [{"family": "Abbott", "given": ["Evelyn"]}],
            "gender": "female",
            "birthDate": "2011-12-31",
        },
        {
            "resourceType": "Patient",
            "id": "severine",
            "name": [{"family": "Durand", "given": ["Sévérine"]}],
            "gender": "female",
            "birthDate": "2012-01-01",
            "identifier": [{"value": "2345"}],
        },
        {
            "resourceType": "Patient",
            "id": "alex",
            "name": [{"family": "Hale", "given": ["Alex"]}],
            "birthDate": "2009-12",
        },
        _lab("lab-jan14", "Patient/23", "2013-01-14T10:00:00Z", _quantity(5.4, "mg")),
        _lab("lab-jan15", "Patient/eve", "2013-01-15T09:00:00Z", _quantity(5.5, "mg")),
        _lab("lab-grams", "Patient/eve", "2013-01-14", _quantity(0.0054, "g")),
        _lab("lab-low", f"{base_url}/Patient/evelyn", "2013-01", _quantity(5.0, "mg")),
        _lab(
            "lab-other-system",
            None,
            "2013-01-13T23:59:59Z",
            {"value": 5.4, "unit": "mg", "system": "http://example.org/units", "code": "mg"},
        ),
        _bp("bp-low", "Patient/eve", 55, 40),
        _bp("bp-high", "Patient/23", 150, 90),
        {
            "resourceType": "Observation",
            "id": "by-identifier",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {
                "identifier": {"system": "http://acme.org/fhir/identifier/mrn", "value": "123456"}
            },
        },
        {
            "resourceType": "Condition",
            "id": "headache",
            "subject": {"reference": "Patient/23"},
            "code": {
                "coding": [{"system": SNOMED, "code": "25064002", "display": "Headache"}],
                "text": "Headache, severe",
            },
        },
        {
            "resourceType": "Condition",
            "id": "migraine",
            "subject": {"reference": "Patient/eve"},
            "code": {
                "coding": [{"system": SNOMED, "code": "37796009", "display": "Migraine"}],
                "text": "Migraine",
            },
        },
        _encounter("enc-2012", "Patient/23", {"start": "2012-01-01", "end": "2012-12-31"}),
        _encounter(
            "enc-jan13",
            "Patient/23",
            {"start": "2013-01-10T08:00:00Z", "end": "2013-01-20T17:00:00Z"},
        ),
        _encounter("enc-open", "Patient/eve", {"start": "2013-06-01"}),
        {
            "resourceType": "ValueSet",
            "id": "vs-123",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/123",
        },
        {
            "resourceType": "ValueSet",
            "id": "vs-123-v5",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/123/_history/5",
        },
        {
            "resourceType": "ValueSet",
            "id": "vs-other",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/1234",
        },
        {
            "resourceType": "Patient",
            "id": "profiled",
            "meta": {
                "profile": ["https://fhir.nhs.uk/StructureDefinition/NHSDigital-Patient"],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
            "name": [{"family": "Restricted"}],
        },
    ]
    return [tagged(r, SPEC_TAG) for r in resources]


@dataclass(frozen=True)
class SpecCase:
    """One search from the specification and the ids it must find in the data set."""

    name: str
    resource_type: str
    query: str  # as it would appear in the URL, before the `_tag` the test adds
    expected: frozenset[str]


def case(name: str, resource_type: str, query: str, *expected: str) -> SpecCase:
    return SpecCase(name, resource_type, query, frozenset(expected))


SPEC_CASES = [
    # date: both the parameter and the stored value are ranges at their precision
    case("birthdate_in_a_two_year_range", "Patient", "birthdate=ge2010-01-01&birthdate=le2011-12-31", "eve", "evelyn"),
    case("date_on_a_day_matches_a_time_that_day", "Observation", "date=2013-01-14&code=1234-5", "lab-jan14", "lab-grams"),
    case("date_eq_month_contains_the_day", "Observation", "date=2013-01&code=1234-5", "lab-jan14", "lab-jan15", "lab-grams", "lab-low", "lab-other-system"),
    case("date_gt_a_day_overlaps_after_it", "Observation", "date=gt2013-01-14&code=1234-5", "lab-jan15", "lab-low"),
    case("date_lt_a_day_overlaps_before_it", "Observation", "date=lt2013-01-14&code=1234-5", "lab-other-system", "lab-low"),
    case("date_ge_includes_the_day_itself", "Observation", "date=ge2013-01-14&code=1234-5", "lab-jan14", "lab-jan15", "lab-grams", "lab-low"),
    case("date_ne_excludes_only_contained_values", "Observation", "date=ne2013-01-14&code=1234-5", "lab-jan15", "lab-low", "lab-other-system"),
    case("birthdate_month_precision_stored_value", "Patient", "birthdate=2009-12-31", ),
    case("birthdate_month_precision_stored_value_in_range", "Patient", "birthdate=2009", "alex"),
    case("datetime_with_offset_is_an_instant", "Observation", "date=2013-01-14T11:00:00%2B01:00&code=1234-5", "lab-jan14"),
    case("period_eq_is_contained", "Encounter", "date=2013-01", "enc-jan13"),
    case("period_starts_after", "Encounter", "date=sa2012-12-31", "enc-jan13", "enc-open"),
    case("period_ends_before", "Encounter", "date=eb2013-01-01", "enc-2012"),
    case("period_open_end_is_ongoing", "Encounter", "date=gt2020-01-01", "enc-open"),
    case("period_lt_overlaps_before", "Encounter", "date=lt2013-01-15", "enc-2012", "enc-jan13"),
    # string
    case("given_starts_with_any_case", "Patient", "given=eve", "eve", "evelyn"),
    case("given_exact_is_case_sensitive_whole_string", "Patient", "given:exact=Eve", "eve"),
    case("given_exact_lowercase_matches_nothing", "Patient", "given:exact=eve"),
    case("given_contains_anywhere", "Patient", "given:contains=eve", "eve", "evelyn", "severine"),
    case("name_ignores_accents", "Patient", "name=severine", "severine"),
    case("name_matches_family_or_given", "Patient", "name=chal", "23"),
    case("address_matches_city", "Patient", "address=bath", "23"),
    case("escaped_comma_is_part_of_the_value", "Patient", "address-city=Bath\\, Som", "23"),
    case("or_list_of_strings", "Patient", "family=Abbott,Durand", "evelyn", "severine"),
    # token
    case("identifier_system_and_value", "Patient", "identifier=http://acme.org/patient|2345", "23"),
    case("identifier_value_in_any_system", "Patient", "identifier=2345", "23", "eve", "severine"),
    case("identifier_value_without_system", "Patient", "identifier=|2345", "severine"),
    case("identifier_any_value_in_system", "Patient", "identifier=http://other.org/patient|", "eve"),
    case("identifier_of_type", "Patient", f"identifier:of-type={V2_0203}|MR|446053", "23"),
    case("gender_not_male_includes_missing", "Patient", "gender:not=male", "eve", "evelyn", "severine", "alex", "profiled"),
    case("gender_missing", "Patient", "gender:missing=true", "alex", "profiled"),
    case("gender_or_list", "Patient", "gender=male,female", "23", "eve", "evelyn", "severine"),
    case("code_text_matches_text_or_display", "Condition", "code:text=headache", "headache"),
    case("code_with_system", "Condition", f"code={SNOMED}|37796009", "migraine"),
    case("telecom_matches_contact_point_value", "Patient", "telecom=0113 496 0000", "23"),
    case("phone_matches_contact_point_value", "Patient", "phone=0113 496 0000", "23"),
    # quantity
    case("quantity_with_precision_and_units", "Observation", f"value-quantity=5.4|{UCUM}|mg", "lab-jan14", "lab-grams"),
    case("quantity_le_with_units", "Observation", f"value-quantity=le5.4|{UCUM}|mg", "lab-jan14", "lab-grams", "lab-low"),
    case("quantity_code_in_any_system", "Observation", "value-quantity=5.4||mg", "lab-jan14", "lab-other-system"),
    case("quantity_number_alone", "Observation", "value-quantity=5.4", "lab-jan14", "lab-other-system"),
    case("quantity_gt_in_grams", "Observation", f"value-quantity=gt0.005|{UCUM}|g", "lab-jan14", "lab-jan15", "lab-grams"),
    # reference
    case("subject_type_and_id", "Observation", "subject=Patient/23&code=1234-5", "lab-jan14"),
    case("subject_type_modifier", "Observation", "subject:Patient=23&code=1234-5", "lab-jan14"),
    case("patient_id", "Observation", "patient=23", "lab-jan14", "bp-high"),
    case("absolute_reference_to_this_server", "Observation", "patient=evelyn", "lab-low"),
    case("reference_by_identifier", "Observation", "subject:identifier=http://acme.org/fhir/identifier/mrn|123456", "by-identifier"),
    case("subject_missing", "Observation", "subject:missing=true", "lab-other-system"),
    case("chained_with_type", "Observation", "subject:Patient.name=peter", "lab-jan14", "bp-high"),
    case("chained_without_type", "Observation", "subject.name=eve", "lab-jan15", "lab-grams", "bp-low", "lab-low"),
    case("chain_of_two_levels", "Observation", "patient.general-practitioner.name=careful", "lab-jan14", "bp-high"),
    case("reverse_chain", "Patient", "_has:Observation:patient:code=1234-5", "23", "eve", "evelyn"),
    case("reverse_chain_on_value", "Patient", f"_has:Observation:patient:value-quantity=gt5.45|{UCUM}|mg", "eve"),
    # composite
    case("component_code_value_quantity_lt", "Observation", f"component-code-value-quantity={LOINC}|8480-6$lt60", "bp-low"),
    case("component_code_value_quantity_gt", "Observation", f"component-code-value-quantity={LOINC}|8480-6$gt140", "bp-high"),
    case("composite_pairs_within_one_component", "Observation", f"component-code-value-quantity={LOINC}|8462-4$gt100"),
    case("code_value_quantity_on_the_root", "Observation", f"code-value-quantity={LOINC}|1234-5$gt5.4|{UCUM}|mg", "lab-jan15"),
    case("composite_missing_where_no_element_has_every_part", "Observation", "code-value-quantity:missing=true", "bp-low", "bp-high", "by-identifier"),
    case("composite_present_where_one_element_has_every_part", "Observation", "component-code-value-quantity:missing=false", "bp-low", "bp-high"),
    # uri
    case("uri_exact", "ValueSet", "url=http://acme.org/fhir/ValueSet/123", "vs-123"),
    case("uri_below", "ValueSet", "url:below=http://acme.org/fhir/ValueSet/123", "vs-123", "vs-123-v5"),
    case("uri_above", "ValueSet", "url:above=http://acme.org/fhir/ValueSet/123/_history/5", "vs-123", "vs-123-v5"),
    # common parameters
    case("id_or_list", "Patient", "_id=23,eve", "23", "eve"),
    case("profile", "Patient", "_profile=https://fhir.nhs.uk/StructureDefinition/NHSDigital-Patient", "profiled"),
    case("security", "Patient", "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", "profiled"),
]  # fmt: skip
