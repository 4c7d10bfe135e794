"""A malformed date, code, id or other primitive is refused with a plain sentence that
names the element, the value and the form expected, never the schema's regex."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir.errors import InvalidResource
from bevan.fhir.validation import validate_resource


def diagnostics(resource: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidResource) as raised:
        validate_resource(resource)
    return {issue.expression[0]: issue.diagnostics for issue in raised.value.issues}


def test_a_month_thirteen_birth_date_is_explained_in_words() -> None:
    told = diagnostics({"resourceType": "Patient", "birthDate": "1990-13-01"})
    assert told == {
        "Patient.birthDate": (
            "Patient.birthDate '1990-13-01' is not a valid date: "
            "expected YYYY, YYYY-MM or YYYY-MM-DD"
        )
    }


@pytest.mark.parametrize(
    ("element", "value", "words"),
    [
        ("effectiveDateTime", "2026-03-01 09:30", "is not a valid dateTime: expected YYYY"),
        ("issued", "2026-03-01", "is not a valid instant: expected YYYY-MM-DDThh:mm:ss"),
        ("id", "has spaces", "is not a valid id: expected 1 to 64 letters"),
        ("status", " final", "is not one of the codes allowed: registered, preliminary"),
        ("valueBoolean", "yes", "is not a valid boolean: expected true or false"),
        ("valueInteger", "7", "is not a valid integer: expected a whole number"),
        ("valueTime", "9am", "is not a valid time: expected hh:mm:ss"),
    ],
)
def test_each_primitive_says_what_form_it_expects(element: str, value: str, words: str) -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    observation[element] = value
    told = diagnostics(observation)
    sentence = told[f"Observation.{element}"]
    assert words in sentence
    assert f"'{value}'" in sentence
    assert "^" not in sentence and "does not match" not in sentence


def test_a_single_element_given_as_a_list_and_a_list_given_as_one_are_explained() -> None:
    told = diagnostics(
        {"resourceType": "Patient", "gender": ["male"], "telecom": {"system": "phone"}}
    )
    assert told["Patient.gender"] == (
        "Patient.gender holds one value at most, so it must not be a JSON array"
    )
    assert told["Patient.telecom"] == (
        "Patient.telecom repeats, so it must be a JSON array, not a JSON object"
    )


def test_an_unknown_element_is_named_where_it_is() -> None:
    told = diagnostics({"resourceType": "Patient", "name": [{"famly": "Ng"}]})
    assert told == {
        "Patient.name[0].famly": "Patient.name[0] has no element named 'famly' in FHIR R4"
    }
