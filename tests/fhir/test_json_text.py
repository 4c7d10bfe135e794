"""FHIR JSON read and written with every decimal's digits kept."""

from __future__ import annotations

import orjson
import pytest

from bevan.fhir import json_text


@pytest.mark.parametrize(
    "text", ["1.50", "0.100", "2.00", "-7.250", "1e3", "1.5e-7", "3.14159265358979323846"]
)
def test_a_decimal_a_float_would_shorten_is_written_back_as_given(text: str) -> None:
    body = f'{{"valueQuantity":{{"value":{text}}},"list":[{text}]}}'.encode()
    value = json_text.loads(body)
    assert json_text.dumps(value) == body
    assert value["valueQuantity"]["value"] == float(text)  # and still compares as a number


def test_ordinary_numbers_stay_plain_floats_and_ints() -> None:
    value = json_text.loads(b'{"a": 1.5, "b": 2.0, "c": 7, "d": [0.1, -3]}')
    assert value == {"a": 1.5, "b": 2.0, "c": 7, "d": [0.1, -3]}
    assert all(type(v) in (float, int) for v in (value["a"], value["b"], value["c"]))


def test_text_that_only_looks_like_a_number_is_left_alone() -> None:
    body = b'{"system":"urn:oid:2.16.840.1.113883","note":"ratio: 1.50, then 2.0"}'
    assert json_text.dumps(json_text.loads(body)) == body


def test_pretty_output_keeps_the_digits() -> None:
    pretty = json_text.dumps(json_text.loads(b'{"value":1.50}'), pretty=True)
    assert pretty == b'{\n  "value": 1.50\n}'


def test_text_that_is_not_json_raises_with_its_place() -> None:
    with pytest.raises(json_text.JSONDecodeError) as error:
        json_text.loads(b'{"value": 1.50,}')
    assert error.value.lineno == 1


def test_a_decimal_copied_by_orjson_becomes_a_plain_float() -> None:
    plain = orjson.loads(json_text.dumps(json_text.loads(b'{"v": 1.50}')))
    assert plain == {"v": 1.5}
