"""Parameters that repeat another's values are searched in that parameter's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bevan.fhir.search_parameters import index_rows, shared_rows

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "hl7-r4-examples"


def _blood_pressure() -> dict[str, Any]:
    """The specification's blood pressure: systolic and diastolic as components."""
    resource: dict[str, Any] = orjson.loads(
        (EXAMPLES / "Observation-blood-pressure.json").read_bytes()
    )
    assert len(resource["component"]) == 2
    return resource


def test_observation_combinations_read_the_rows_they_combine() -> None:
    shared = shared_rows("Observation")
    assert shared.codes("combo-code") == ("code", "component-code")
    assert shared.codes("code-value-concept$0") == ("code",)
    assert shared.codes("code-value-concept$1") == ("value-concept",)
    assert shared.codes("combo-code-value-concept$1") == (
        "value-concept",
        "component-code-value-concept$1",
    )
    # A composite on each component keeps its own rows: they pair code and value by element.
    assert shared.codes("component-code-value-quantity$0") == ("component-code-value-quantity$0",)
    assert shared.codes("code") == ("code",)


def test_names_searched_by_sound_use_the_name_rows() -> None:
    for resource_type in ("Patient", "Practitioner", "RelatedPerson", "Person"):
        assert shared_rows(resource_type).codes("phonetic") == ("name",)


def test_references_keep_rows_of_their_own() -> None:
    # Coverage.patient and Coverage.beneficiary have the same path, but chains, includes
    # and compartments read reference rows by name.
    assert shared_rows("Coverage").codes("patient") == ("patient",)
    assert shared_rows("Coverage").codes("beneficiary") == ("beneficiary",)


def test_an_observation_writes_no_rows_for_the_parameters_it_repeats() -> None:
    observation = _blood_pressure()
    rows = index_rows(observation)
    params = {row[0] for table in ("token", "quantity") for row in getattr(rows, table)}
    assert {"code", "component-code", "component-code-value-quantity$0"} <= params
    derived = shared_rows("Observation").derived
    assert {"combo-code", "combo-code-value-quantity", "code-value-concept"} <= derived
    assert not {p.split("$")[0] for p in params} & derived
