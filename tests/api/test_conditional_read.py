"""Conditional read: a client that holds the current version is told so with a 304."""

from __future__ import annotations

import httpx

from tests.api.test_crud import FHIR_JSON, create, patient


def test_a_read_answers_not_modified_to_a_client_holding_its_etag(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Etag")).json()
    first = fhir.get(f"/Patient/{created['id']}")
    again = fhir.get(f"/Patient/{created['id']}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == 'W/"1"'
    assert again.headers["last-modified"] == first.headers["last-modified"]


def test_a_read_sends_the_new_version_once_the_etag_is_stale(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Stale")).json()
    fhir.put(f"/Patient/{created['id']}", json={**created, "gender": "male"}, headers=FHIR_JSON)
    read = fhir.get(f"/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert read.status_code == 200
    assert read.json()["gender"] == "male"
    assert read.headers["etag"] == 'W/"2"'


def test_a_read_answers_not_modified_since_its_last_change(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Since")).json()
    modified = fhir.get(f"/Patient/{created['id']}").headers["last-modified"]
    unchanged = fhir.get(f"/Patient/{created['id']}", headers={"If-Modified-Since": modified})
    assert unchanged.status_code == 304
    earlier = fhir.get(
        f"/Patient/{created['id']}",
        headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    )
    assert earlier.status_code == 200
    assert earlier.json()["name"][0]["family"] == "Since"


def test_a_vread_honours_if_none_match_too(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Vread")).json()
    path = f"/Patient/{created['id']}/_history/1"
    assert fhir.get(path, headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_a_conditional_read_still_needs_a_token(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Guarded")).json()
    anonymous = httpx.get(
        f"{str(fhir.base_url).rstrip('/')}/Patient/{created['id']}",
        headers={"If-None-Match": 'W/"1"'},
    )
    assert anonymous.status_code == 401
