"""FHIRPath Patch (a Parameters body) over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from bevan.security.tokens import TokenAuthority
from tests.conftest import RunningServer
from tests.nhs_numbers import fresh_nhs_number

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(number: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": NHS, "value": number or fresh_nhs_number()},
            {"system": "urn:local:mrn", "value": "MRN-1"},
        ],
        "name": [{"family": "Jones", "given": ["Aneurin", "Nye"]}],
        "telecom": [
            {"system": "phone", "value": "01632 960001"},
            {"system": "email", "value": "nye@example.org"},
        ],
    }


def created(fhir: httpx.Client) -> dict[str, Any]:
    response = fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    built = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "name":
            built.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            built.append({"name": name, "valueInteger": value})
        else:
            key, held = value
            built.append({"name": "value", key: held})
    return {"name": "operation", "part": built}


def fhirpath_patch(fhir: httpx.Client, id: str, *operations: dict[str, Any]) -> httpx.Response:
    body = {"resourceType": "Parameters", "parameter": list(operations)}
    return fhir.patch(f"/Patient/{id}", json=body, headers=FHIR_JSON)


def test_an_added_birth_date_is_stored_as_a_new_version(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(
        fhir, id, operation("add", "Patient", name="birthDate", value=("valueDate", "1948-07-05"))
    )
    assert response.status_code == 200, response.text
    read = fhir.get(f"/Patient/{id}").json()
    assert read["birthDate"] == "1948-07-05"
    assert read["meta"]["versionId"] == "2"


def test_replace_changes_the_phone_number_chosen_by_where(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(
        fhir,
        id,
        operation(
            "replace",
            "Patient.telecom.where(system = 'phone').value",
            value=("valueString", "01632 960999"),
        ),
    )
    assert response.status_code == 200, response.text
    telecom = fhir.get(f"/Patient/{id}").json()["telecom"]
    assert telecom == [
        {"system": "phone", "value": "01632 960999"},
        {"system": "email", "value": "nye@example.org"},
    ]


def test_delete_removes_one_identifier_and_leaves_the_other(fhir: httpx.Client) -> None:
    made = created(fhir)
    id, number = made["id"], made["identifier"][0]["value"]
    response = fhirpath_patch(
        fhir, id, operation("delete", "Patient.identifier.where(system = 'urn:local:mrn')")
    )
    assert response.status_code == 200, response.text
    assert fhir.get(f"/Patient/{id}").json()["identifier"] == [{"system": NHS, "value": number}]


def test_deleting_what_is_not_there_changes_nothing_but_succeeds(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(fhir, id, operation("delete", "Patient.birthDate"))
    assert response.status_code == 200, response.text
    assert "birthDate" not in fhir.get(f"/Patient/{id}").json()


def test_insert_and_move_reorder_given_names(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(
        fhir,
        id,
        operation("insert", "Patient.name[0].given", index=1, value=("valueString", "Ap")),
        operation("move", "Patient.name.first().given", source=0, destination=2),
    )
    assert response.status_code == 200, response.text
    assert fhir.get(f"/Patient/{id}").json()["name"][0]["given"] == ["Ap", "Nye", "Aneurin"]


def test_a_complex_value_is_added_from_parts(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    contact = {
        "name": "value",
        "part": [
            {"name": "system", "valueCode": "sms"},
            {"name": "value", "valueString": "07700 900123"},
        ],
    }
    add = {
        "name": "operation",
        "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "telecom"},
            contact,
        ],
    }
    response = fhirpath_patch(fhir, id, add)
    assert response.status_code == 200, response.text
    telecom = fhir.get(f"/Patient/{id}").json()["telecom"]
    assert telecom[-1] == {"system": "sms", "value": "07700 900123"}
    assert len(telecom) == 3


def test_a_path_matching_two_elements_is_refused_naming_the_operation(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(
        fhir,
        id,
        operation("add", "Patient", name="gender", value=("valueCode", "male")),
        operation("replace", "Patient.telecom.value", value=("valueString", "x")),
    )
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Parameters.parameter[1]"]
    assert "matches 2 elements" in issue["diagnostics"]
    assert fhir.get(f"/Patient/{id}").json()["meta"]["versionId"] == "1"


def test_malformed_operations_are_refused_with_the_part_that_is_wrong(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    cases = [
        (
            {"name": "operation", "part": [{"name": "type", "valueCode": "upsert"}]},
            "Parameters.parameter[0].part[0]",
        ),
        (
            {"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]},
            "Parameters.parameter[0]",
        ),
        (
            {
                "name": "operation",
                "part": [
                    *operation("delete", "Patient.x")["part"],
                    {"name": "index", "valueInteger": 1},
                ],
            },
            "Parameters.parameter[0].part[2]",
        ),
        (
            operation("insert", "Patient.name[0].given", index=9, value=("valueString", "x")),
            "Parameters.parameter[0]",
        ),
        (operation("delete", "Patient.name.exists()"), "Parameters.parameter[0]"),
        (operation("delete", "Observation.status"), "Parameters.parameter[0]"),
        ({"name": "op"}, "Parameters.parameter[0]"),
    ]
    for part, where in cases:
        response = fhirpath_patch(fhir, id, part)
        assert response.status_code == 400, (part, response.text)
        issue = response.json()["issue"][0]
        assert issue["expression"] == [where], (part, issue)
    empty = fhir.patch(f"/Patient/{id}", json={"resourceType": "Parameters"}, headers=FHIR_JSON)
    assert empty.status_code == 400
    assert empty.json()["issue"][0]["expression"] == ["Parameters.parameter"]
    array = fhir.patch(f"/Patient/{id}", json=[], headers=FHIR_JSON)
    assert array.status_code == 400
    assert "Parameters" in array.json()["issue"][0]["diagnostics"]
    assert fhir.get(f"/Patient/{id}").json()["meta"]["versionId"] == "1"


def test_a_patch_that_leaves_an_invalid_resource_is_refused(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    response = fhirpath_patch(
        fhir, id, operation("add", "Patient", name="gender", value=("valueCode", "sometimes"))
    )
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Patient.gender"]
    changed_id = fhirpath_patch(
        fhir, id, operation("replace", "Patient.id", value=("valueId", "another"))
    )
    assert changed_id.status_code == 400
    assert changed_id.json()["issue"][0]["expression"] == ["Patient.id"]


def test_if_match_on_an_old_version_is_refused(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    body = {
        "resourceType": "Parameters",
        "parameter": [operation("delete", "Patient.telecom.last()")],
    }
    stale = fhir.patch(f"/Patient/{id}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    fresh = fhir.patch(f"/Patient/{id}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["telecom"] == [{"system": "phone", "value": "01632 960001"}]


def test_a_token_that_may_only_read_cannot_patch(server: RunningServer) -> None:
    with server.client() as fhir:
        id = created(fhir)["id"]
    token = TokenAuthority.in_directory(server.data_dir).issue(
        "reader", "system", scope="system/Patient.r"
    )
    with server.client(token) as reader:
        response = fhirpath_patch(reader, id, operation("delete", "Patient.telecom[0]"))
        assert response.status_code == 403, response.text
        assert reader.get(f"/Patient/{id}").json()["meta"]["versionId"] == "1"


def test_a_bundle_entry_carries_a_fhirpath_patch(fhir: httpx.Client) -> None:
    id = created(fhir)["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        operation("add", "Patient", name="gender", value=("valueCode", "male"))
                    ],
                },
                "request": {"method": "PATCH", "url": f"Patient/{id}"},
            }
        ],
    }
    response = fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert fhir.get(f"/Patient/{id}").json()["gender"] == "male"


def test_the_capability_statement_lists_both_patch_formats(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()
    assert "application/fhir+json" in statement["patchFormat"]
    assert "application/json-patch+json" in statement["patchFormat"]
