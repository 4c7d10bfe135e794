"""compile_view: columns, rows, and errors that say where the definition is wrong."""

from __future__ import annotations

import pytest

from bevan.analytics.view_definition import ViewDefinitionError, ViewRunError, compile_view

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-01-02T10:00:00Z",
    "valueQuantity": {"value": 72, "unit": "/min"},
}


def test_a_view_says_its_columns_in_order_with_their_types() -> None:
    view = compile_view(
        {
            "resource": "Observation",
            "select": [
                {
                    "column": [
                        {"name": "id", "path": "getResourceKey()"},
                        {"name": "value", "path": "value.ofType(Quantity).value"},
                        {"name": "when", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                    ]
                }
            ],
        }
    )
    assert view.column_names == ("id", "value", "when")
    assert [c.type for c in view.columns] == ["string", "decimal", "dateTime"]
    assert list(view.rows([OBSERVATION, {"resourceType": "Patient", "id": "p1"}])) == [
        ("o1", 72, "2026-01-02T10:00:00Z")
    ]


def test_a_reference_key_joins_to_the_resource_key_of_what_it_points_at() -> None:
    view = compile_view(
        {
            "resource": "Observation",
            "select": [
                {"column": [{"name": "patient", "path": "subject.getReferenceKey(Patient)"}]}
            ],
        }
    )
    patients = compile_view(
        {
            "resource": "Patient",
            "select": [{"column": [{"name": "key", "path": "getResourceKey()"}]}],
        }
    )
    assert list(view.rows([OBSERVATION])) == list(
        patients.rows([{"resourceType": "Patient", "id": "p1"}])
    )


@pytest.mark.parametrize(
    ("view", "place"),
    [
        ({"select": [{"column": [{"name": "id", "path": "id"}]}]}, "ViewDefinition.resource"),
        ({"resource": "Spaceship", "select": []}, "ViewDefinition.resource"),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id.("}]}]},
            "ViewDefinition.select[0].column[0].path",
        ),
        (
            {
                "resource": "Patient",
                "select": [{"column": [{"name": "x", "path": "id.resolve()"}]}],
            },
            "ViewDefinition.select[0].column[0].path",
        ),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "1x", "path": "id"}]}]},
            "ViewDefinition.select[0].column[0].name",
        ),
        (
            {
                "resource": "Patient",
                "select": [{"column": [{"name": "id", "path": "id"}]}],
                "where": [{"path": "name.family"}],
            },
            "ViewDefinition.where[0].path",
        ),
        (
            {
                "resource": "Patient",
                "select": [{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}],
            },
            "ViewDefinition.select",
        ),
    ],
)
def test_a_wrong_definition_is_refused_saying_where(view, place) -> None:
    with pytest.raises(ViewDefinitionError) as refused:
        compile_view(view)
    assert refused.value.issues[0].expression == (place,)


def test_a_column_that_finds_several_values_fails_the_run_naming_the_column() -> None:
    view = compile_view(
        {"resource": "Patient", "select": [{"column": [{"name": "given", "path": "name.given"}]}]}
    )
    patient = {"resourceType": "Patient", "name": [{"given": ["Ann", "Bea"]}]}
    with pytest.raises(ViewRunError, match="given"):
        list(view.rows([patient]))


def test_members_of_unknown_type_are_still_found_by_name() -> None:
    view = compile_view(
        {
            "resource": "Patient",
            "select": [
                {
                    "forEach": "extension.where(url = 'x')",
                    "column": [
                        {"name": "code", "path": "value.ofType(code)"},
                        {"name": "any", "path": "%resource.extension.value.first()"},
                    ],
                }
            ],
        }
    )
    patient = {"resourceType": "Patient", "extension": [{"url": "x", "valueCode": "F"}]}
    assert list(view.rows([patient])) == [("F", "F")]
