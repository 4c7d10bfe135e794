"""Views agree with an independent FHIRPath evaluator (fhirpathpy) on `bevan synth`
resources: random columns from building blocks, each as one value and as a collection."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models
from hypothesis import given, settings
from hypothesis import strategies as st

from bevan.analytics.view_definition import ViewRunError, compile_view
from bevan.synth.bundles import generate_patients

PATHS = {
    "Observation": [
        "id",
        "status",
        "code.coding.code",
        "code.coding.first().code",
        "code.coding.where(system = 'http://loinc.org').code",
        "category.coding.first().code",
        "subject.reference",
        "effective.ofType(dateTime)",
        "value.ofType(Quantity).value",
        "value.ofType(Quantity).unit",
        "value.ofType(Quantity).value > 50",
        "value.ofType(CodeableConcept).coding.code",
        "component.code.coding.first().code",
        "component.value.ofType(Quantity).value",
        "performer.reference",
        "code.coding.exists()",
        "valueQuantity.value",
        "issued",
    ],
    "Patient": [
        "id",
        "gender",
        "birthDate",
        "name.family",
        "name.first().family",
        "name.given",
        "name.given.first()",
        "name.where(use = 'official').given.first()",
        "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value",
        "address.postalCode",
        "telecom.where(system = 'phone').value.first()",
        "generalPractitioner.first().reference",
        "deceased.exists()",
        "extension.url",
    ],
}


@cache
def population() -> tuple[dict[str, Any], ...]:
    return tuple(r for patient in generate_patients(10, 7) for r in patient)


def normal(values: list[Any]) -> list[Any]:
    return [float(v) if isinstance(v, Decimal) else v for v in values]


@st.composite
def views(draw: st.DrawFn) -> tuple[str, list[str], bool]:
    resource = draw(st.sampled_from(sorted(PATHS)))
    paths = draw(st.lists(st.sampled_from(PATHS[resource]), min_size=1, max_size=4))
    return resource, paths, draw(st.booleans())


@settings(max_examples=20, deadline=None)
@given(views())
def test_views_agree_with_a_reference_evaluator(view: tuple[str, list[str], bool]) -> None:
    resource_type, paths, collection = view
    compiled = compile_view(
        {
            "resource": resource_type,
            "select": [
                {
                    "column": [
                        {"name": f"c{i}", "path": path, "collection": collection}
                        for i, path in enumerate(paths)
                    ]
                }
            ],
        }
    )
    resources = [r for r in population() if r["resourceType"] == resource_type]
    assert resources
    expected_rows = []
    several = False
    for resource in resources:
        row = []
        for path in paths:
            values = normal(evaluate(resource, path, {}, models["r4"]))
            several |= len(values) > 1
            row.append(values if collection else (values[0] if values else None))
        expected_rows.append(tuple(row))
    if several and not collection:
        with pytest.raises(ViewRunError):
            list(compiled.rows(resources))
        return
    assert list(compiled.rows(resources)) == expected_rows
