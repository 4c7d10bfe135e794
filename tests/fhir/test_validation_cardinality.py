"""Required elements of the R4 StructureDefinitions are refused when missing, every one of
them in one answer, each with its FHIRPath; the official examples still pass."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bevan.fhir.errors import FhirError, InvalidResource
from bevan.fhir.validation import validate_resource
from tests.conftest import SHARED

EXAMPLES = SHARED / "data" / "hl7-r4-examples"

# Official examples that break R4 itself, with the element that shows it.
BROKEN_EXAMPLES = {
    # a non-breaking space in a string, which the R4 string pattern does not allow
    "DiagnosticReport-gingival-mass": "DiagnosticReport.resultsInterpreter[0].display",
    # nested display items without the linkId every item must have (1..1)
    "Questionnaire-qs1": "Questionnaire.item[0].item[0].linkId",
}


def refusal(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (expression, code) of each issue the validator raises for resource."""
    with pytest.raises(InvalidResource) as raised:
        validate_resource(resource)
    assert all(issue.severity == "error" for issue in raised.value.issues)
    return [(issue.expression[0], issue.code) for issue in raised.value.issues]


def test_an_observation_without_status_or_code_is_refused_naming_both() -> None:
    found = refusal({"resourceType": "Observation", "valueString": "well"})
    assert sorted(found) == [("Observation.code", "required"), ("Observation.status", "required")]


def test_a_medication_request_without_status_intent_or_medication_is_refused() -> None:
    found = refusal({"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p1"}})
    assert sorted(e for e, _ in found) == [
        "MedicationRequest.intent",
        "MedicationRequest.medication",
        "MedicationRequest.status",
    ]


def test_a_missing_choice_says_which_forms_would_do() -> None:
    with pytest.raises(InvalidResource) as raised:
        validate_resource(
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
            }
        )
    (issue,) = raised.value.issues
    assert "medicationCodeableConcept" in issue.diagnostics
    assert "medicationReference" in issue.diagnostics


def test_either_form_of_a_required_choice_is_enough() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1"},
    }
    assert validate_resource(request) == "MedicationRequest"


def test_a_backbone_element_missing_its_required_part_is_named_by_index() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "blood pressure"},
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}},
            {"valueQuantity": {"value": 80}},
        ],
    }
    assert refusal(observation) == [("Observation.component[1].code", "required")]


def test_data_types_have_required_parts_too() -> None:
    patient = {
        "resourceType": "Patient",
        "text": {"div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "extension": [{"valueString": "no url"}],
        "name": [{"family": "Ng", "_family": {"extension": [{"valueCode": "x"}]}}],
    }
    assert sorted(refusal(patient)) == [
        ("Patient.extension[0].url", "required"),
        ("Patient.name[0].family.extension[0].url", "required"),
        ("Patient.text.status", "required"),
    ]


def test_a_primitive_given_only_by_its_extension_counts_as_present() -> None:
    observation = {
        "resourceType": "Observation",
        "_status": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "unknown",
                }
            ]
        },
        "code": {"text": "pulse"},
    }
    assert validate_resource(observation) == "Observation"


def test_nested_questionnaire_items_are_checked_at_every_depth() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1"}]}],
    }
    assert refusal(questionnaire) == [("Questionnaire.item[0].item[0].type", "required")]


def test_resources_inside_a_bundle_and_contained_are_checked_by_their_own_type() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "code": {"text": "pulse"},
                    "contained": [{"resourceType": "Observation", "status": "final"}],
                }
            },
        ],
    }
    assert sorted(refusal(bundle)) == [
        ("Bundle.entry[1].resource.contained[0].code", "required"),
        ("Bundle.entry[1].resource.status", "required"),
    ]


def test_structure_value_and_required_problems_come_back_together() -> None:
    found = refusal(
        {
            "resourceType": "Observation",
            "code": {"text": "pulse"},
            "issued": "yesterday",
            "colour": "blue",
        }
    )
    assert sorted(found) == [
        ("Observation.colour", "structure"),
        ("Observation.issued", "value"),
        ("Observation.status", "required"),
    ]


def test_every_problem_is_reported_not_only_the_first() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "panel"},
        "component": [{"valueString": str(n)} for n in range(30)],
    }
    assert len(refusal(observation)) == 30


def test_every_official_example_validates_but_those_that_break_r4() -> None:
    refused: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        try:
            validate_resource(json.loads(path.read_bytes()))
        except FhirError as error:
            refused[path.stem] = error.issues[0].expression[0]
    assert refused == BROKEN_EXAMPLES
