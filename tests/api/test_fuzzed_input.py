"""Generated searches and Bundles, odd in every way a client could make them, are each
answered without a server error: a page or a 4xx OperationOutcome, never a 5xx."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}

# A bounded number of examples per engine keeps each test to seconds on one server.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

TYPES = ["Patient", "Observation", "RiskAssessment", "Encounter", "Condition"]
DATE_NAMES = ["birthdate", "_lastUpdated", "date", "death-date"]
NUMBER_NAMES = ["probability", "value-quantity", "component-value-quantity"]
OTHER_NAMES = [
    "name",
    "_id",
    "identifier",
    "general-practitioner",
    "code",
    "subject",
    "subject:Patient.name",
    "patient.identifier",
    "_has:Observation:subject:code",
    "component-code-value-quantity",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_since",
    "status",
]
MODIFIERS = ["", ":exact", ":contains", ":missing", ":not", ":text", ":identifier", ":below", ":x"]
PREFIXES = ["", "ap", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(
    st.sampled_from(["99999999999999999999", "1e400", "-1e-400", "NaN", "Infinity", "0.", "1e"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
DATES = st.sampled_from(
    [
        "9999-12-31",
        "9999",
        "0001",
        "9999-12-31T23:59:59.999999-12:00",
        "0001-01-01T00:00:00+12:00",
        "0000",
        "2024-02-30",
        "2024-13",
        "2024-01-01T25:00:00Z",
        "2024-01-01T10:00",
        "20240101",
    ]
)
ODD_VALUES = st.sampled_from(
    ["\x00", "a\x00", ",,,", "\\", "a\\,b", "|", "a|b|c", "$", "x$y$z", "é", "𝔘", "\u00b2"]
)
VALUES = st.one_of(
    ODD_VALUES,
    ODD_TEXT,
    NUMBERS,
    DATES,
    st.builds(lambda n: ",".join(["x"] * n), st.integers(min_value=95, max_value=105)),
)
CURSORS = st.builds(
    lambda values, rid, before: base64.urlsafe_b64encode(
        json.dumps([values, rid, before]).encode()
    ).decode(),
    st.lists(st.none() | st.integers() | ODD_TEXT | st.floats(allow_nan=False), max_size=2)
    | st.integers(),
    st.integers() | ODD_TEXT | st.none(),
    st.booleans() | st.integers(),
)
PAIR = st.one_of(
    st.tuples(
        st.sampled_from(DATE_NAMES), st.builds(str.__add__, st.sampled_from(PREFIXES), DATES)
    ),
    st.tuples(
        st.sampled_from(NUMBER_NAMES), st.builds(str.__add__, st.sampled_from(PREFIXES), NUMBERS)
    ),
    st.tuples(
        st.builds(str.__add__, st.sampled_from(OTHER_NAMES), st.sampled_from(MODIFIERS)), VALUES
    ),
    st.tuples(st.just("_cursor"), CURSORS | ODD_TEXT),
    st.tuples(st.sampled_from(["_count", "_since"]), VALUES),
    st.tuples(ODD_TEXT, VALUES),
)
QUERY = st.lists(PAIR, min_size=1, max_size=4)


def no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.url, response.text[:500])
    if response.status_code >= 400 and response.content:
        assert response.json()["resourceType"] == "OperationOutcome"


@FUZZ
@given(resource_type=st.sampled_from(TYPES), query=QUERY)
def test_no_search_a_client_can_write_is_a_server_error(
    server: RunningServer, resource_type: str, query: list[tuple[str, str]]
) -> None:
    with server.client() as fhir:
        no_server_error(fhir.get(f"/{resource_type}", params=query))
        no_server_error(fhir.get(f"/{resource_type}/_history", params=query))


# Any JSON value: the wrong type for most places it is put.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=6,
)
# Entries that would be processed, each with one field given another value.
SOUND_ENTRIES = [
    {
        "fullUrl": "urn:uuid:0b7f3b1c-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Patient", "name": [{"family": "Fuzz"}]},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=fuzz|1"},
    },
    {
        "fullUrl": "http://example.org/fhir/Patient/p1",
        "resource": {"resourceType": "Patient", "id": "p1"},
        "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"1"'},
    },
    {"request": {"method": "GET", "url": "Patient?name=fuzz", "ifNoneMatch": "*"}},
    {"request": {"method": "GET", "url": "Patient/p1/_history/1"}},
    {"request": {"method": "DELETE", "url": "Patient/p1", "ifMatch": 'W/"2"'}},
    {
        "request": {"method": "PATCH", "url": "Patient/p1"},
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": "W3sib3AiOiJ0ZXN0IiwicGF0aCI6Ii9pZCIsInZhbHVlIjoicDEifV0=",
        },
    },
]
FIELDS = [
    ("fullUrl",),
    ("resource",),
    ("request",),
    ("request", "method"),
    ("request", "url"),
    ("request", "ifMatch"),
    ("request", "ifNoneExist"),
    ("request", "ifNoneMatch"),
    ("request", "ifModifiedSince"),
    ("resource", "resourceType"),
    ("resource", "id"),
    ("resource", "name"),
    ("resource", "data"),
]
ODD_FIELD_VALUES = st.sampled_from(
    [
        5,
        99999999999999999999,
        -1,
        1.5,
        True,
        None,
        [],
        {},
        ["x"],
        {"a": 1},
        "",
        "\x00",
        'W/"99999999999999999999"',
        "\u00b2",
        "Patient/p1/_history/99999999999999999999",
        "Patient?birthdate=9999-12-31",
        "Patient?name=%00",
    ]
)


def with_field(entry: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Return a copy of entry with the field at path set to value (made if absent)."""
    copy = json.loads(json.dumps(entry))
    holder = copy
    for key in path[:-1]:
        if not isinstance(holder.get(key), dict):
            holder[key] = {}
        holder = holder[key]
    holder[path[-1]] = value
    return copy


ENTRY = st.builds(
    with_field, st.sampled_from(SOUND_ENTRIES), st.sampled_from(FIELDS), ODD_FIELD_VALUES | JSON
)
BUNDLE = st.fixed_dictionaries(
    {
        "resourceType": st.just("Bundle"),
        "type": st.sampled_from(["transaction", "batch"]),
        "entry": st.lists(ENTRY | st.sampled_from(SOUND_ENTRIES), min_size=1, max_size=3),
    }
)


@FUZZ
@given(body=BUNDLE)
def test_no_bundle_a_client_can_write_is_a_server_error(
    server: RunningServer, body: dict[str, Any]
) -> None:
    with server.client() as fhir:
        no_server_error(fhir.post("", json=body, headers=FHIR_JSON))
