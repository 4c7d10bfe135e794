"""$meta, $meta-add and $meta-delete: tags, security labels and profiles, read and
changed as a new version, with the access checks of a read and an update."""

from __future__ import annotations

import httpx
import pytest

from tests.api.operations.people import FHIR_JSON, client_for, observation, put_all
from tests.conftest import RunningServer
from tests.people import PEOPLE

FOLLOW_UP = {"system": "urn:test:tags", "code": "follow-up"}
RESEARCH = {"system": "urn:test:tags", "code": "research"}
UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(
            fhir,
            [
                *PEOPLE,
                observation("obs-related", "related", "8867-4", "2026-01-01T09:00:00Z", 70),
                observation("obs-unrelated", "unrelated", "8867-4", "2026-01-01T09:00:00Z", 70),
            ],
        )
        fhir.put(
            "/Patient/tagged",
            json={"resourceType": "Patient", "id": "tagged", "meta": {"tag": [FOLLOW_UP]}},
            headers=FHIR_JSON,
        ).raise_for_status()
    return server


def meta_of(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    assert body["parameter"][0]["name"] == "return"
    meta: dict = body["parameter"][0]["valueMeta"]
    return meta


def meta_body(**meta: list) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def test_an_instance_meta_is_its_meta(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        meta = meta_of(fhir.get("/Patient/tagged/$meta"))
    assert meta["tag"] == [FOLLOW_UP]
    assert meta["versionId"]


def test_meta_add_adds_once_as_a_new_version(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        before = fhir.get("/Patient/related").json()["meta"]["versionId"]
        body = meta_body(tag=[RESEARCH], profile=[UK_CORE])
        meta = meta_of(fhir.post("/Patient/related/$meta-add", json=body, headers=FHIR_JSON))
        assert meta["tag"] == [RESEARCH] and meta["profile"] == [UK_CORE]
        assert int(meta["versionId"]) == int(before) + 1
        again = meta_of(fhir.post("/Patient/related/$meta-add", json=body, headers=FHIR_JSON))
        assert again["tag"] == [RESEARCH]  # not twice
        assert again["versionId"] == meta["versionId"]  # nothing changed, nothing written
        found = fhir.get("/Patient", params={"_tag": "urn:test:tags|research"}).json()
        assert {e["resource"]["id"] for e in found["entry"]} == {"related"}
        history = fhir.get("/Patient/related/_history").json()
        assert history["total"] == int(meta["versionId"])


def test_meta_delete_removes_as_a_new_version(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        fhir.put(
            "/Patient/untag",
            json={"resourceType": "Patient", "id": "untag", "meta": {"tag": [FOLLOW_UP, RESEARCH]}},
            headers=FHIR_JSON,
        ).raise_for_status()
        meta = meta_of(
            fhir.post(
                "/Patient/untag/$meta-delete", json=meta_body(tag=[FOLLOW_UP]), headers=FHIR_JSON
            )
        )
        assert meta["tag"] == [RESEARCH] and meta["versionId"] == "2"
        assert fhir.get("/Patient/untag").json()["meta"]["tag"] == [RESEARCH]


def test_type_and_system_meta_list_what_is_in_use(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        by_type = meta_of(fhir.get("/Patient/$meta"))
        everywhere = meta_of(fhir.get("/$meta"))
        none = meta_of(fhir.get("/Practitioner/$meta"))
    assert FOLLOW_UP in by_type["tag"]
    assert {"system": CONFIDENTIALITY, "code": "R"} in by_type["security"]
    assert FOLLOW_UP in everywhere["tag"]
    assert none == {}


def test_a_body_without_a_meta_is_refused_saying_where(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        response = fhir.post(
            "/Patient/related/$meta-add",
            json={"resourceType": "Parameters", "parameter": [{"name": "tag", "valueString": "x"}]},
            headers=FHIR_JSON,
        )
        wrong = fhir.post(
            "/Patient/related/$meta-add", json=meta_body(tag=["just text"]), headers=FHIR_JSON
        )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Parameters.parameter"]
    assert wrong.status_code == 400
    assert wrong.json()["issue"][0]["expression"] == ["Parameters.parameter.valueMeta.tag[0]"]


def test_meta_of_something_absent_is_not_found(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        assert fhir.get("/Patient/nobody/$meta").status_code == 404
        response = fhir.post(
            "/Patient/nobody/$meta-add", json=meta_body(tag=[RESEARCH]), headers=FHIR_JSON
        )
        assert response.status_code == 404


@pytest.mark.parametrize(
    "target", ["Patient/unrelated", "Patient/sensitive", "Observation/obs-unrelated"]
)
def test_a_nurse_learns_and_changes_nothing_of_others_through_meta(
    loaded: RunningServer, target: str
) -> None:
    with client_for(loaded, "nurse") as nurse:
        read = nurse.get(f"/{target}/$meta")
        added = nurse.post(
            f"/{target}/$meta-add", json=meta_body(tag=[RESEARCH]), headers=FHIR_JSON
        )
        removed = nurse.post(
            f"/{target}/$meta-delete",
            json=meta_body(security=[{"system": CONFIDENTIALITY, "code": "R"}]),
            headers=FHIR_JSON,
        )
    assert (read.status_code, added.status_code, removed.status_code) == (403, 403, 403)
    with loaded.client() as fhir:
        meta = fhir.get(f"/{target}").json()["meta"]
    assert RESEARCH not in meta.get("tag", [])
    assert meta["versionId"] == "1"


def test_a_nurse_may_tag_a_related_patient(loaded: RunningServer) -> None:
    with client_for(loaded, "nurse") as nurse:
        meta = meta_of(
            nurse.post(
                "/Observation/obs-related/$meta-add",
                json=meta_body(tag=[FOLLOW_UP]),
                headers=FHIR_JSON,
            )
        )
        assert meta["tag"] == [FOLLOW_UP]
        assert meta_of(nurse.get("/Observation/obs-related/$meta"))["tag"] == [FOLLOW_UP]


@pytest.mark.parametrize("role", ["nurse", "clinician", "receptionist", "patient", "analyst"])
def test_only_system_accounts_see_the_tags_in_use_across_records(
    loaded: RunningServer, role: str
) -> None:
    with client_for(loaded, role) as fhir:
        for path in ("/$meta", "/Patient/$meta", "/Observation/$meta"):
            response = fhir.get(path)
            assert response.status_code == 403, f"{role} {path}: {response.text}"
            assert "follow-up" not in response.text


def test_receptionist_and_analyst_learn_nothing_of_observations_through_meta(
    loaded: RunningServer,
) -> None:
    for role in ("receptionist", "analyst"):
        with client_for(loaded, role) as fhir:
            assert fhir.get("/Observation/obs-related/$meta").status_code == 403
