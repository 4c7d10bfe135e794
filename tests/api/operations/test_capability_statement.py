"""The CapabilityStatement tells the truth: every claim in it is tried over HTTP (each
listed interaction, search parameter, include and operation answers), and what it does
not list is refused."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bevan.api.operations import OPERATIONS
from bevan.fhir.search_parameters import search_parameters
from tests.api.operations.people import FHIR_JSON
from tests.conftest import SHARED, RunningServer, database_url, start_server

STRICT = {"Prefer": "handling=strict"}
# A value each type of search parameter understands.
VALUES = {
    "token": "http://example.org|x",
    "string": "x",
    "date": "ge2020-01-01",
    "reference": "Patient/x",
    "quantity": "5",
    "number": "5",
    "uri": "http://example.org/x",
    "special": "51.48|-3.18|10|km",  # Location's near
}


def official_examples() -> dict[str, dict[str, Any]]:
    """Return one official R4 example of each type that has one (to create and update)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((SHARED / "data" / "hl7-r4-examples").glob("*.json")):
        example = json.loads(path.read_text())
        found.setdefault(example["resourceType"], example)
    return found


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that takes the official examples as they are: they refer to resources
    they do not carry, and these tests try interactions, not referential integrity."""
    tmp = tmp_path_factory.mktemp(f"bevan-claims-{backend}")
    yield from start_server(database_url(backend, tmp), tmp, referential_integrity=False)


@pytest.fixture(scope="module")
def statement(server: RunningServer) -> dict[str, Any]:
    response = httpx.get(server.base_url + "/metadata")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def fhir_client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def resources(statement: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = statement["rest"][0]["resource"]
    return found


def not_unsupported(response: httpx.Response) -> bool:
    """True if the server answered the request as something it does (whatever the
    answer), not as a path, method or operation it lacks."""
    if response.status_code in (405, 415, 501):
        return False
    if response.status_code in (200, 201, 204):
        return True
    issues = response.json().get("issue", [])
    return not any(i["code"] == "not-supported" for i in issues)


def test_it_names_this_build_and_its_date(statement: dict[str, Any]) -> None:
    assert statement["software"]["version"] == importlib.metadata.version("bevan")
    built = datetime.fromisoformat(statement["date"].replace("Z", "+00:00"))
    assert built <= datetime.now(UTC)
    assert statement["software"]["releaseDate"] == statement["date"]
    assert statement["fhirVersion"] == "4.0.1"


def test_every_type_answers_each_interaction_it_lists(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    fhir = fhir_client
    examples = official_examples()
    stored_types: list[str] = []
    for index, resource in enumerate(resources(statement)):
        t = resource["type"]
        listed = {i["code"] for i in resource["interaction"]}
        tries: dict[str, httpx.Response] = {}
        example = examples.get(t, {"resourceType": t})
        if "create" in listed:
            tries["create"] = fhir.post(f"/{t}", json=example, headers=FHIR_JSON)
        if "update" in listed:
            body = {**example, "id": f"claim-{index}"}
            tries["update"] = fhir.put(f"/{t}/claim-{index}", json=body, headers=FHIR_JSON)
        if "read" in listed:
            tries["read"] = fhir.get(f"/{t}/claim-{index}")
        if "vread" in listed:
            tries["vread"] = fhir.get(f"/{t}/claim-{index}/_history/1")
        if "history-instance" in listed:
            tries["history-instance"] = fhir.get(f"/{t}/claim-{index}/_history")
        if "history-type" in listed:
            tries["history-type"] = fhir.get(f"/{t}/_history", params={"_count": 1})
        if "search-type" in listed:
            tries["search-type"] = fhir.get(f"/{t}", params={"_count": 1})
        if "patch" in listed:
            tries["patch"] = fhir.patch(
                f"/{t}/claim-{index}",
                json=[{"op": "add", "path": "/language", "value": "en"}],
                headers={"Content-Type": "application/json-patch+json"},
            )
        if "delete" in listed:
            tries["delete"] = fhir.delete(f"/{t}/claim-{index}")
        assert set(tries) == listed, f"{t} lists interactions this test does not know"
        # A bare resource may lack what its type requires: then the answer says so, and
        # the instance interactions answer that there is no such resource.
        stored = "update" in tries and tries["update"].status_code in (200, 201)
        for interaction, response in tries.items():
            if interaction in ("create", "update"):
                assert response.status_code in (200, 201, 400, 422), (t, interaction)
            elif stored or interaction in ("delete", "history-type", "search-type"):
                assert response.status_code in (200, 201, 204), (t, interaction, response.text)
            else:
                assert response.status_code == 404, (t, interaction, response.text)
                assert response.json()["issue"][0]["code"] == "not-found"
            assert not_unsupported(response), (t, interaction, response.text)
        if stored:
            stored_types.append(t)
    assert len(stored_types) > len(resources(statement)) * 3 // 4


def _value(resource_type: str, code: str, kind: str) -> str:
    if kind != "composite":
        return VALUES[kind]
    components = search_parameters(resource_type)[code].components
    return "$".join(VALUES[c.type].replace("ge", "") for c in components)


def test_every_listed_search_parameter_is_understood(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    for resource in resources(statement):
        t = resource["type"]
        params = [(p["name"], _value(t, p["name"], p["type"])) for p in resource["searchParam"]]
        assert all(p.get("documentation") for p in resource["searchParam"])
        response = fhir_client.get(f"/{t}", params=[*params, ("_count", "1")], headers=STRICT)
        assert response.status_code == 200, (t, response.text)


def _in_groups(values: list[str], size: int = 40) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def test_every_listed_include_and_revinclude_is_understood(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    for resource in resources(statement):
        t = resource["type"]
        for name in ("_include", "_revinclude"):
            listed = resource["searchInclude" if name == "_include" else "searchRevInclude"]
            for group in _in_groups(listed):
                pairs = [(name, value) for value in group] + [("_count", "1")]
                response = fhir_client.get(f"/{t}", params=pairs, headers=STRICT)
                assert response.status_code == 200, (t, name, response.text)


def _operation_tries(
    fhir: httpx.Client, name: str, resource_type: str | None
) -> list[httpx.Response]:
    """Try an operation at every level its registry entry answers, by its first method."""
    operation = next(o for o in OPERATIONS if o.name == name)
    method = operation.methods[0]
    body = None
    if method == "POST":
        body = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {}}]}
    paths = {
        "system": f"/${name}",
        "type": f"/{resource_type}/${name}",
        "instance": f"/{resource_type}/claims-patient/${name}",
    }
    return [
        fhir.request(method, paths[level], json=body, headers=FHIR_JSON if body else None)
        for level in operation.levels
        if level == "system" or resource_type is not None
    ]


def test_every_listed_operation_answers_where_it_is_listed(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    fhir = fhir_client
    fhir.put(
        "/Patient/claims-patient",
        json={"resourceType": "Patient", "id": "claims-patient"},
        headers=FHIR_JSON,
    ).raise_for_status()
    definitions = {o.name: o.definition for o in OPERATIONS}
    system = statement["rest"][0].get("operation", [])
    for listed in system:
        assert listed["definition"] == definitions[listed["name"]]
        for response in _operation_tries(fhir, listed["name"], None):
            assert not_unsupported(response), (listed["name"], response.text)
    for resource in resources(statement):
        if resource["type"] not in ("Patient", "Observation", "Organization"):
            continue  # the same table answers every type: three of them show it
        for listed in resource.get("operation", []):
            assert listed["definition"] == definitions[listed["name"]]
            if resource["type"] != "Patient" and listed["name"] not in ("lastn",):
                continue  # instance tries need the Patient made above
            for response in _operation_tries(fhir, listed["name"], resource["type"]):
                assert not_unsupported(response), (resource["type"], listed, response.text)


def test_operations_it_does_not_list_are_refused(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    fhir = fhir_client
    by_type = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in resources(statement)}
    assert "lastn" not in by_type["Patient"] and "everything" not in by_type["Observation"]
    for path in (
        "/Patient/$lastn",
        "/Observation/$everything",
        "/Observation/x/$everything",
        "/$frobnicate",
        "/Patient/$frobnicate",
        "/Patient/claims-patient/$frobnicate",
        "/$validate",
    ):
        response = fhir.get(path)
        assert response.status_code == 404, (path, response.text)
        issue = response.json()["issue"][0]
        assert issue["code"] == "not-supported" and "not supported" in issue["diagnostics"]
    assert fhir.get("/Patient/claims-patient/$meta-add").status_code == 405


def test_interactions_and_formats_it_does_not_list_are_refused(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    fhir = fhir_client
    system = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert "search-system" not in system
    assert fhir.get("", params={"_id": "x"}).status_code in (404, 405)
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]
    merge = fhir.patch(
        "/Patient/claims-patient",
        json={"language": "en"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merge.status_code == 415
    assert fhir.get("/Patient", headers={"Accept": "application/fhir+xml"}).status_code == 406


def test_conditional_and_versioning_claims_hold(
    statement: dict[str, Any], fhir_client: httpx.Client
) -> None:
    fhir = fhir_client
    patient = next(r for r in resources(statement) if r["type"] == "Patient")
    assert patient["conditionalCreate"] and patient["conditionalUpdate"]
    assert patient["conditionalDelete"] == "single"
    assert patient["versioning"] == "versioned-update" and patient["readHistory"]
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:claims", "value": "1"}]}
    first = fhir.post(
        "/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": "identifier=urn:claims|1"}
    )
    again = fhir.post(
        "/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": "identifier=urn:claims|1"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    updated = fhir.put("/Patient?identifier=urn:claims|1", json=body, headers=FHIR_JSON)
    assert updated.status_code == 200
    stale = fhir.put(
        f"/Patient/{first.json()['id']}",
        json={**body, "id": first.json()["id"]},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert fhir.get(f"/Patient/{first.json()['id']}/_history/1").status_code == 200
    assert patient["conditionalRead"] == "full-support"
    current = fhir.get(f"/Patient/{first.json()['id']}")
    unchanged = {"If-None-Match": current.headers["etag"]}
    assert fhir.get(f"/Patient/{first.json()['id']}", headers=unchanged).status_code == 304
    since = {"If-Modified-Since": current.headers["last-modified"]}
    assert fhir.get(f"/Patient/{first.json()['id']}", headers=since).status_code == 304
    fhir.post("/Patient", json=body, headers=FHIR_JSON).raise_for_status()
    assert fhir.delete("/Patient?identifier=urn:claims|1").status_code == 412  # single only


def test_the_security_it_lists_is_where_it_says(
    statement: dict[str, Any], server: RunningServer
) -> None:
    security = statement["rest"][0]["security"]
    uris = {
        e["url"]: e["valueUri"]
        for extension in security["extension"]
        for e in extension["extension"]
    }
    smart = httpx.get(server.base_url + "/.well-known/smart-configuration").json()
    assert uris["token"] == smart["token_endpoint"]
    assert uris["authorize"] == smart["authorization_endpoint"]
    assert httpx.get(server.base_url + "/Patient").status_code == 401
