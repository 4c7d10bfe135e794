"""Every patient a resource names, wherever and however it names them."""

from __future__ import annotations

from bevan.fhir.patient_references import (
    NHS_NUMBER,
    holds_patient_data,
    patients_named,
)

BASE = "https://ehr.example.nhs.uk/fhir"


def test_a_reference_in_any_element_names_its_patient() -> None:
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/a"},
        "focus": [{"reference": f"{BASE}/Patient/b"}],
        "note": [{"authorReference": {"reference": "Patient/c/_history/2"}}],
    }
    assert patients_named(observation, BASE).ids == {"a", "b", "c"}


def test_another_servers_patient_is_not_one_of_ours() -> None:
    task = {"resourceType": "Task", "for": {"reference": "https://elsewhere.example/Patient/a"}}
    assert patients_named(task, BASE).empty


def test_an_nhs_number_in_a_reference_names_a_patient() -> None:
    letter = {
        "resourceType": "DocumentReference",
        "subject": {"identifier": {"system": NHS_NUMBER, "value": "9000000009"}},
    }
    assert patients_named(letter).nhs_numbers == {"9000000009"}


def test_a_document_bundle_names_the_patients_it_carries() -> None:
    document = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [
            {"resource": {"resourceType": "Composition", "subject": {"reference": "Patient/a"}}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "b",
                    "identifier": [{"system": NHS_NUMBER, "value": "9000000017"}],
                }
            },
        ],
    }
    named = patients_named(document)
    assert named.ids == {"a", "b"} and named.nhs_numbers == {"9000000017"}


def test_a_binary_and_a_provenance_point_at_the_records_they_belong_to() -> None:
    binary = {"resourceType": "Binary", "securityContext": {"reference": "DocumentReference/d"}}
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "Observation/o"}, {"reference": "Patient/a"}],
    }
    assert patients_named(binary).contexts == {("DocumentReference", "d")}
    named = patients_named(provenance)
    assert named.contexts == {("Observation", "o")} and named.ids == {"a"}


def test_a_patient_names_itself_and_a_practitioner_names_nobody() -> None:
    assert patients_named({"resourceType": "Patient", "id": "a"}).ids == {"a"}
    assert patients_named({"resourceType": "Practitioner", "id": "p"}).empty


def test_binaries_bundles_and_tasks_hold_patient_data_as_compartment_types_do() -> None:
    assert all(holds_patient_data(t) for t in ("Binary", "Bundle", "Task", "Observation"))
    assert not holds_patient_data("Organization")
