"""Whatever a client sends, the answer is a 4xx OperationOutcome saying what, where and
why, never a server error; and a refused request stores nothing."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
TOO_LARGE = "99999999999999999999"  # beyond a signed 64-bit column


def refused(response: httpx.Response, status: int = 400) -> dict:
    """Return the OperationOutcome of a refusal, having checked it says what and where."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["diagnostics"]
    assert issue["expression"], body
    return issue


def patient_count(fhir: httpx.Client) -> int:
    return int(fhir.get("/Patient", params={"_summary": "count"}).json()["total"])


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


@pytest.fixture(scope="module")
def smith(server: RunningServer) -> str:
    with server.client() as fhir:
        created = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Smith"}]},
            headers=FHIR_JSON,
        )
        assert created.status_code == 201
        return str(created.json()["id"])


# --- bodies -------------------------------------------------------------------------------


def test_json_nested_hundreds_deep_is_refused_naming_where(fhir: httpx.Client) -> None:
    before = patient_count(fhir)
    deep = "[" * 300 + "]" * 300
    body = '{"resourceType": "Patient", "extension": ' + deep + "}"
    issue = refused(fhir.post("/Patient", content=body.encode(), headers=FHIR_JSON))
    assert issue["code"] == "too-costly"
    assert "64 deep" in issue["diagnostics"]
    assert issue["expression"][0].startswith("Patient.extension[0][0]")
    assert patient_count(fhir) == before


def nested_extensions(levels: int) -> dict:
    """A Patient whose extensions nest levels deep (each level is an array and an object)."""
    inner: dict = {"url": "https://example.org/leaf", "valueString": "deep"}
    for _ in range(levels - 1):
        inner = {"url": "https://example.org/branch", "extension": [inner]}
    return {"resourceType": "Patient", "extension": [inner]}


def test_json_nested_to_the_limit_is_stored_and_one_deeper_is_refused(fhir: httpx.Client) -> None:
    # The resource is one level; each extension two more: 31 of them are 63 levels.
    stored = fhir.post("/Patient", json=nested_extensions(31), headers=FHIR_JSON)
    assert stored.status_code == 201, stored.text
    before = patient_count(fhir)
    issue = refused(fhir.post("/Patient", json=nested_extensions(32), headers=FHIR_JSON))
    assert issue["code"] == "too-costly"
    assert patient_count(fhir) == before


@pytest.mark.parametrize(
    ("entry", "where", "what"),
    [
        (
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": 5},
            },
            "Bundle.entry[0].request.ifNoneExist",
            "a number",
        ),
        (
            {
                "resource": {"resourceType": "Patient", "id": "a1"},
                "request": {"method": "PUT", "url": "Patient/a1", "ifMatch": 1},
            },
            "Bundle.entry[0].request.ifMatch",
            "a number",
        ),
        (
            {
                "fullUrl": {"urn": "uuid"},
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            "Bundle.entry[0].fullUrl",
            "an object",
        ),
        (
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": ["POST"], "url": "Patient"},
            },
            "Bundle.entry[0].request.method",
            "",
        ),
        (
            {
                "fullUrl": ["urn:uuid:1"],
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            "Bundle.entry[0].fullUrl",
            "an array",
        ),
    ],
)
def test_a_bundle_entry_field_that_is_not_a_string_is_refused_in_place(
    fhir: httpx.Client, entry: dict, where: str, what: str
) -> None:
    before = patient_count(fhir)
    bundle = transaction(
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        entry,
    )
    bundle["entry"] = [entry, bundle["entry"][0]]
    issue = refused(fhir.post("", json=bundle, headers=FHIR_JSON))
    assert issue["expression"] == [where]
    if what:
        assert f"must be a string, not {what}" in issue["diagnostics"]
    assert patient_count(fhir) == before


def test_a_bundle_if_match_beyond_any_version_is_refused(fhir: httpx.Client, smith: str) -> None:
    entry = {
        "resource": {"resourceType": "Patient", "id": smith},
        "request": {"method": "PUT", "url": f"Patient/{smith}", "ifMatch": f'W/"{TOO_LARGE}"'},
    }
    issue = refused(fhir.post("", json=transaction(entry), headers=FHIR_JSON))
    assert issue["expression"] == ["Bundle.entry[0].request.ifMatch"]


def test_an_if_match_header_beyond_any_version_is_refused(fhir: httpx.Client, smith: str) -> None:
    response = fhir.put(
        f"/Patient/{smith}",
        json={"resourceType": "Patient", "id": smith},
        headers={**FHIR_JSON, "If-Match": f'W/"{TOO_LARGE}"'},
    )
    assert refused(response)["expression"] == ["If-Match"]
    assert fhir.get(f"/Patient/{smith}").json()["name"][0]["family"] == "Smith"


def test_a_binary_patch_with_data_that_is_not_a_string_is_refused(fhir: httpx.Client) -> None:
    created = fhir.post(
        "/Binary",
        json={"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
        headers=FHIR_JSON,
    ).json()
    for value in (5, {"a": 1}, [1, 2], None):
        response = fhir.patch(
            f"/Binary/{created['id']}",
            json=[{"op": "replace", "path": "/data", "value": value}],
            headers=JSON_PATCH,
        )
        assert 400 <= response.status_code < 500, response.text
    assert fhir.get(f"/Binary/{created['id']}").json()["data"] == "aGVsbG8="


def test_a_nul_character_in_a_stored_string_is_refused_naming_the_element(
    fhir: httpx.Client,
) -> None:
    before = patient_count(fhir)
    issue = refused(
        fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Sm\u0000ith"}]},
            headers=FHIR_JSON,
        )
    )
    assert issue["expression"] == ["Patient.name[0].family"]
    assert "NUL" in issue["diagnostics"]
    bundle = transaction(
        {
            "resource": {"resourceType": "Patient", "name": [{"given": ["a", "b\u0000"]}]},
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    issue = refused(fhir.post("", json=bundle, headers=FHIR_JSON))
    assert issue["expression"] == ["Bundle.entry[0].resource.name[0].given[1]"]
    assert patient_count(fhir) == before


# --- numbers too large for the database ---------------------------------------------------


def test_a_version_id_beyond_64_bits_is_refused(fhir: httpx.Client, smith: str) -> None:
    issue = refused(fhir.get(f"/Patient/{smith}/_history/{TOO_LARGE}"))
    assert "version id" in issue["diagnostics"]
    assert fhir.get(f"/Patient/{smith}/_history/1").status_code == 200


def test_a_history_cursor_beyond_64_bits_is_refused(fhir: httpx.Client) -> None:
    for path in ("/_history", "/Patient/_history"):
        assert refused(fhir.get(path, params={"_cursor": TOO_LARGE}))["expression"] == ["_cursor"]


def test_a_break_glass_grant_beyond_64_bits_is_refused(server: RunningServer) -> None:
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "officer-1", "privacy-officer", organisation="A81001"
    )
    with server.client(token) as officer:
        response = officer.post(f"/$break-glass/{TOO_LARGE}", json={"outcome": "reviewed"})
        assert refused(response)["expression"] == ["$break-glass"]
        assert officer.post("/$break-glass/12345", json={"outcome": "x"}).status_code == 404


@pytest.mark.parametrize("count", ["\u00b2", "\u0661", "9" * 5000])
def test_a_count_in_other_digits_or_thousands_long_is_answered(
    fhir: httpx.Client, count: str
) -> None:
    for path in ("/Patient", "/_history", "/Patient/_history"):
        response = fhir.get(path, params={"_count": count})
        assert response.status_code in (200, 400), response.text


# --- search values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("birthdate", "9999-12-31"),
        ("birthdate", "9999"),
        ("birthdate", "ap0001"),
        ("birthdate", "ap9999-12-31"),
        ("birthdate", "gt9999-12-31T23:00:00-05:00"),
        ("birthdate", "lt0001-01-01T00:00:00+05:00"),
        ("_lastUpdated", "gt9999-12-31T23:59:59Z"),
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_searched(
    fhir: httpx.Client, name: str, value: str
) -> None:
    response = fhir.get("/Patient", params={name: value})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0


def test_history_since_the_last_year_of_the_calendar_is_empty(fhir: httpx.Client) -> None:
    response = fhir.get("/_history", params={"_since": "9999-12-31T23:59:59Z"})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0


def test_a_patient_born_in_the_last_year_of_the_calendar_is_found(fhir: httpx.Client) -> None:
    response = fhir.post(
        "/Patient",
        json={"resourceType": "Patient", "birthDate": "9999-12-31", "name": [{"family": "Far"}]},
        headers=FHIR_JSON,
    )
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        found = fhir.get("/Patient", params={"birthdate": "9999"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [response.json()["id"]]


def test_a_hundred_alternatives_are_searched_and_more_are_refused(
    fhir: httpx.Client, smith: str
) -> None:
    names = [f"nobody{i}" for i in range(99)] + ["smith"]
    found = fhir.get("/Patient", params={"name": ",".join(names)})
    assert found.status_code == 200, found.text
    assert smith in [e["resource"]["id"] for e in found.json()["entry"]]
    issue = refused(fhir.get("/Patient", params={"name": ",".join([*names, "one-more"])}))
    assert issue["code"] == "too-costly"
    assert issue["expression"] == ["Patient?name"]
    assert "at most 100" in issue["diagnostics"]


def test_a_hundred_parameters_are_searched_and_more_are_refused(fhir: httpx.Client) -> None:
    many = [("family", f"x{i}") for i in range(100)]
    assert fhir.get("/Patient", params=many).status_code == 200
    issue = refused(fhir.get("/Patient", params=[*many, ("family", "one-more")]))
    assert issue["code"] == "too-costly"
    assert "at most 100 parameters" in issue["diagnostics"]
    thousands = [("name", f"n{i}") for i in range(3000)]
    assert refused(fhir.get("/Patient", params=thousands))["code"] == "too-costly"


def test_the_widest_search_allowed_is_answered_and_a_wider_one_refused(
    fhir: httpx.Client,
) -> None:
    codes = ",".join(f"http://loinc.org|{i}-1" for i in range(100))
    form = httpx.QueryParams([("code", codes)] * 5)
    response = fhir.post(
        "/Observation/_search",
        content=str(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text[:300]
    wider = httpx.QueryParams([("code", codes)] * 5 + [("status", "final")])
    response = fhir.post(
        "/Observation/_search",
        content=str(wider).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    issue = refused(response)
    assert "at most 500 values" in issue["diagnostics"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("name", "Sm\u0000ith"),
        ("_id", "a\u0000"),
        ("identifier", "https://fhir.nhs.uk/Id/nhs-number|\u0000"),
        ("birthdate", "\u00002000"),
        ("general-practitioner", "Organization/\u0000"),
        ("name:exact", "\u0000"),
    ],
)
def test_a_nul_character_in_a_search_is_refused_naming_the_parameter(
    fhir: httpx.Client, name: str, value: str
) -> None:
    issue = refused(fhir.get("/Patient", params={name: value}))
    assert issue["expression"] == [f"Patient?{name}"]
    assert "NUL" in issue["diagnostics"]


def test_a_nul_character_in_a_conditional_create_is_refused(fhir: httpx.Client) -> None:
    before = patient_count(fhir)
    response = fhir.post(
        "/Patient",
        json={"resourceType": "Patient"},
        headers={**FHIR_JSON, "If-None-Exist": "identifier=%00"},
    )
    refused(response)
    assert patient_count(fhir) == before


# --- paging links that were tampered with -------------------------------------------------


def cursor(values: object, rid: object = 1, before: object = False) -> str:
    raw = json.dumps([values, rid, before]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "tampered"),
    [
        ({}, cursor([], "x")),
        ({}, cursor([], int(TOO_LARGE))),
        ({}, cursor([], 1.5)),
        ({}, cursor([], 1, "yes")),
        ({}, cursor("abc")),
        ({}, cursor(["a"])),
        ({}, cursor([{"a": 1}])),
        ({"_sort": "birthdate"}, cursor([5])),
        ({"_sort": "birthdate"}, cursor(["a\u0000"])),
        ({"_sort": "_id"}, cursor([[1]])),
        ({"_sort": "_id"}, cursor(["a", "b"])),
        ({"_sort": "-_lastUpdated"}, cursor([int(TOO_LARGE)])),
        ({}, "%%%"),
        ({}, base64.urlsafe_b64encode(b"[1,2]").decode()),
        ({}, base64.urlsafe_b64encode(b"[[], 1, false, 4]").decode()),
        ({}, base64.urlsafe_b64encode(b"[[NaN], 1, false]").decode()),
    ],
)
def test_a_tampered_cursor_is_refused(fhir: httpx.Client, params: dict, tampered: str) -> None:
    issue = refused(fhir.get("/Patient", params={**params, "_cursor": tampered}))
    assert issue["expression"] == ["_cursor"]


def test_a_cursor_made_for_a_numeric_sort_holds_numbers(fhir: httpx.Client) -> None:
    response = fhir.get(
        "/RiskAssessment", params={"_sort": "probability", "_cursor": cursor(["high"])}
    )
    assert refused(response)["expression"] == ["_cursor"]
    response = fhir.get(
        "/RiskAssessment", params={"_sort": "probability", "_cursor": cursor([0.5])}
    )
    assert response.status_code == 200, response.text


def test_names_and_codes_thousands_of_characters_long_are_stored_and_found(
    fhir: httpx.Client,
) -> None:
    # Text that does not compress, as a long real name or code would not.
    family = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(60))
    value = "".join(hashlib.sha256(str(-i).encode()).hexdigest() for i in range(80))
    created = fhir.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": family}],
            "identifier": [{"system": "https://example.org/" + "s" * 3000, "value": value}],
        },
        headers=FHIR_JSON,
    )
    assert created.status_code == 201, created.text[:300]
    id = created.json()["id"]
    by_name = fhir.get("/Patient", params={"family": family}).json()
    assert [e["resource"]["id"] for e in by_name["entry"]] == [id]
    by_code = fhir.get(
        "/Patient", params={"identifier": f"https://example.org/{'s' * 3000}|{value}"}
    ).json()
    assert [e["resource"]["id"] for e in by_code["entry"]] == [id]


@pytest.mark.parametrize("value", ["1e999999999", "0e999999999", "ap1e-999999"])
def test_a_number_beyond_any_stored_number_is_refused(fhir: httpx.Client, value: str) -> None:
    issue = refused(fhir.get("/RiskAssessment", params={"probability": value}))
    assert issue["expression"] == ["RiskAssessment?probability"]
    issue = refused(fhir.get("/Observation", params={"value-quantity": f"{value}||kg"}))
    assert issue["expression"] == ["Observation?value-quantity"]


def test_an_integer_beyond_64_bits_in_a_body_is_kept_to_the_digit(fhir: httpx.Client) -> None:
    body = (
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "count"},'
        b' "valueQuantity": {"value": 123456789012345678901234567890}}'
    )
    created = fhir.post("/Observation", content=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text[:300]
    read = fhir.get(f"/Observation/{created.json()['id']}")
    assert b'"value":123456789012345678901234567890' in read.content


@pytest.mark.parametrize(
    "data", [5, None, ["x"], {"a": 1}, "not base64!", "W3siYSI6ICJcdTAwMDAifV0="]
)
def test_a_bundle_patch_whose_binary_data_is_not_a_json_patch_is_refused(
    fhir: httpx.Client, smith: str, data: object
) -> None:
    entry = {
        "request": {"method": "PATCH", "url": f"Patient/{smith}"},
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": data,
        },
    }
    issue = refused(fhir.post("", json=transaction(entry), headers=FHIR_JSON))
    assert issue["expression"][0].startswith("Bundle.entry[0].resource")
    assert fhir.get(f"/Patient/{smith}").json()["name"][0]["family"] == "Smith"
