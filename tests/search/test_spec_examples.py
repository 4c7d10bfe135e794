"""The examples of the FHIR R4 search page, each with its exact set of matches, and the
result parameters (_sort, _count and paging, _total, _summary, _elements, _include,
_revinclude), POST _search, compartments, $everything and unknown parameters."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.search.reference import matching_ids
from tests.search.searching import (
    FHIR_JSON,
    TAG_SYSTEM,
    all_pages,
    link,
    load,
    matched,
    matched_ids,
    search_bundle,
    tag_parameter,
    tagged,
)
from tests.search.spec_data import SPEC_CASES, SPEC_TAG, SpecCase, spec_resources

if TYPE_CHECKING:
    from tests.conftest import RunningServer

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


@pytest.fixture(scope="module")
def spec_data(server: RunningServer) -> list[dict[str, Any]]:
    """Load the crafted data set once per server."""
    resources = spec_resources(server.base_url)
    with server.client() as fhir:
        load(fhir, resources)
    return resources


def _query(case: SpecCase) -> list[tuple[str, str]]:
    return [*parse_qsl(case.query, keep_blank_values=True), tag_parameter(SPEC_TAG)]


def _case_id(case: SpecCase) -> str:
    return case.name


@pytest.mark.parametrize("case", SPEC_CASES, ids=_case_id)
def test_spec_example_finds_exactly_its_matches(
    fhir: httpx.Client, spec_data: list[dict[str, Any]], case: SpecCase
) -> None:
    found = matched_ids(fhir, f"/{case.resource_type}", _query(case))
    assert len(found) == len(set(found)), f"duplicates in {found}"
    assert set(found) == case.expected, (
        f"GET /{case.resource_type}?{case.query}: missing {sorted(case.expected - set(found))}, "
        f"extra {sorted(set(found) - case.expected)}"
    )


@pytest.mark.parametrize("case", SPEC_CASES, ids=_case_id)
def test_reference_evaluator_agrees_with_spec_example(case: SpecCase) -> None:
    base_url = "http://127.0.0.1:8080/fhir"
    everything = {(r["resourceType"], r["id"]): r for r in spec_resources(base_url)}
    assert matching_ids(case.resource_type, _query(case), everything, base_url) == case.expected


# -- result parameters -------------------------------------------------------------------


def _fresh_patients(fhir: httpx.Client, rows: list[tuple[str, str, str]]) -> str:
    """Load Patients (family, given, birthDate) under a new tag; return the tag."""
    tag = uuid.uuid4().hex[:12]
    load(
        fhir,
        [
            tagged(
                {
                    "resourceType": "Patient",
                    "id": f"{tag}-{i}",
                    "name": [{"family": family, "given": [given]}],
                    "gender": "female" if i % 2 else "male",
                    "birthDate": birth_date,
                },
                tag,
            )
            for i, (family, given, birth_date) in enumerate(rows)
        ],
    )
    return tag


def test_sort_by_birthdate_ascending(fhir: httpx.Client) -> None:
    tag = _fresh_patients(
        fhir, [("B", "x", "1990-05-01"), ("A", "x", "1970"), ("C", "x", "2001-01-01")]
    )
    found = matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_sort", "birthdate")])
    assert found == [f"{tag}-1", f"{tag}-0", f"{tag}-2"]


def test_sort_by_birthdate_descending_then_name(fhir: httpx.Client) -> None:
    tag = _fresh_patients(
        fhir,
        [
            ("Zebra", "Ann", "1980-01-01"),
            ("Aardvark", "Ann", "1980-01-01"),
            ("Moss", "Ann", "2000-01-01"),
            ("Lamb", "Ann", "1960-01-01"),
        ],
    )
    found = matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_sort", "-birthdate,name")])
    assert found == [f"{tag}-2", f"{tag}-1", f"{tag}-0", f"{tag}-3"]


def test_paging_follows_next_through_every_match_once(
    server: RunningServer, fhir: httpx.Client
) -> None:
    tag = _fresh_patients(fhir, [(f"Page{i}", "x", "1990-01-01") for i in range(7)])
    first = search_bundle(
        fhir, "/Patient", [tag_parameter(tag), ("_count", "3"), ("_total", "accurate")]
    )
    assert first["total"] == 7
    assert len(first["entry"]) == 3
    assert link(first, "self") is not None
    # A new match arrives between pages: no page may repeat or skip an earlier match.
    with server.client() as other:
        _load_one_more(other, tag)
    pages = [first]
    while (url := link(pages[-1], "next")) is not None:
        response = fhir.get(url)
        assert response.status_code == 200, response.text[:500]
        pages.append(response.json())
        assert len(pages) < 10
    ids = [r["id"] for r in matched(pages)]
    assert len(ids) == len(set(ids)), f"a match appeared twice across pages: {ids}"
    assert {f"{tag}-{i}" for i in range(7)} <= set(ids)
    assert all(len(p.get("entry", [])) <= 3 for p in pages)


def _load_one_more(fhir: httpx.Client, tag: str) -> None:
    load(
        fhir,
        [tagged({"resourceType": "Patient", "id": f"{tag}-late", "birthDate": "1990"}, tag)],
    )


def test_previous_link_returns_the_page_before(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [(f"Prev{i}", "x", "1990-01-01") for i in range(5)])
    first = search_bundle(fhir, "/Patient", [tag_parameter(tag), ("_count", "2")])
    next_url = link(first, "next")
    assert next_url is not None
    second = fhir.get(next_url).json()
    previous = link(second, "previous") or link(second, "prev")
    assert previous is not None, "the second page has no previous link"
    again = fhir.get(previous).json()
    assert [r["id"] for r in matched([again])] == [r["id"] for r in matched([first])]


def test_total_accurate_counts_every_match(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [(f"T{i}", "x", "1990-01-01") for i in range(4)])
    bundle = search_bundle(
        fhir, "/Patient", [tag_parameter(tag), ("_total", "accurate"), ("_count", "1")]
    )
    assert bundle["total"] == 4


def test_total_none_leaves_total_out(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [("N", "x", "1990-01-01")])
    bundle = search_bundle(fhir, "/Patient", [tag_parameter(tag), ("_total", "none")])
    assert "total" not in bundle
    assert len(matched([bundle])) == 1


def test_summary_count_gives_the_total_without_entries(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [(f"S{i}", "x", "1990-01-01") for i in range(3)])
    bundle = search_bundle(fhir, "/Patient", [tag_parameter(tag), ("_summary", "count")])
    assert bundle["total"] == 3
    assert not bundle.get("entry")


def test_elements_returns_only_those_elements_marked_subsetted(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [("Elem", "x", "1990-01-01")])
    bundle = search_bundle(fhir, "/Patient", [tag_parameter(tag), ("_elements", "name,gender")])
    [patient] = matched([bundle])
    assert set(patient) <= {"resourceType", "id", "meta", "name", "gender"}
    assert {"name", "gender"} <= set(patient)
    assert "birthDate" not in patient
    tags = {(t.get("system"), t.get("code")) for t in patient["meta"].get("tag", [])}
    assert SUBSETTED in tags


def test_include_adds_the_referenced_patient(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    bundle = search_bundle(
        fhir,
        "/Observation",
        [("_id", "lab-jan14"), ("_include", "Observation:patient")],
    )
    modes = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"]
        for e in bundle["entry"]
    }
    assert modes == {("Observation", "lab-jan14"): "match", ("Patient", "23"): "include"}
    assert bundle.get("total", 1) == 1, "total counts matches only, not included resources"


def test_revinclude_adds_the_observations_that_point_here(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    bundle = search_bundle(
        fhir, "/Patient", [("_id", "evelyn"), ("_revinclude", "Observation:patient")]
    )
    modes = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"]
        for e in bundle["entry"]
    }
    assert modes == {("Patient", "evelyn"): "match", ("Observation", "lab-low"): "include"}


def test_include_iterate_follows_included_resources(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    bundle = search_bundle(
        fhir,
        "/Observation",
        [
            ("_id", "lab-jan14"),
            ("_include", "Observation:patient"),
            ("_include:iterate", "Patient:general-practitioner"),
        ],
    )
    modes = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"]
        for e in bundle["entry"]
    }
    assert modes == {
        ("Observation", "lab-jan14"): "match",
        ("Patient", "23"): "include",
        ("Practitioner", "gp1"): "include",
    }


def test_post_search_with_a_form_body_equals_get(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    params = [("given", "eve"), tag_parameter(SPEC_TAG)]
    by_get = matched_ids(fhir, "/Patient", params)
    response = fhir.post(
        "/Patient/_search",
        content=str(httpx.QueryParams(params)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text[:500]
    assert (
        sorted(r["id"] for r in matched([response.json()])) == sorted(by_get) == ["eve", "evelyn"]
    )


def test_compartment_search_finds_the_patients_observations(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    found = matched_ids(fhir, "/Patient/23/Observation", [("code", "1234-5")])
    assert sorted(found) == ["lab-jan14"]
    everything = matched_ids(fhir, "/Patient/eve/Observation", [])
    assert sorted(everything) == ["bp-low", "lab-grams", "lab-jan15"]


def test_everything_returns_the_patient_and_its_compartment(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    response = fhir.get("/Patient/23/$everything", params={"_count": "1000"})
    assert response.status_code == 200, response.text[:500]
    pages = [response.json()]
    while (url := link(pages[-1], "next")) is not None:
        pages.append(fhir.get(url).json())
    found = {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for p in pages
        for e in p.get("entry", [])
    }
    expected = {
        ("Patient", "23"),
        ("Observation", "lab-jan14"),
        ("Observation", "bp-high"),
        ("Condition", "headache"),
        ("Encounter", "enc-2012"),
        ("Encounter", "enc-jan13"),
    }
    assert expected <= found, f"missing {expected - found}"
    others = {("Patient", "eve"), ("Observation", "lab-jan15"), ("Condition", "migraine")}
    assert not (others & found), f"resources of another patient: {others & found}"


def test_unknown_parameter_is_ignored_and_reported(
    fhir: httpx.Client, spec_data: list[dict[str, Any]]
) -> None:
    bundle = search_bundle(
        fhir, "/Patient", [("given", "eve"), ("no-such-parameter", "x"), tag_parameter(SPEC_TAG)]
    )
    assert sorted(r["id"] for r in matched([bundle])) == ["eve", "evelyn"]
    outcomes = [e for e in bundle["entry"] if e.get("search", {}).get("mode") == "outcome"]
    assert len(outcomes) == 1
    assert outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
    assert "no-such-parameter" in str(outcomes[0]["resource"])
    self_link = link(bundle, "self")
    assert self_link is not None
    used = dict(parse_qsl(urlsplit(self_link).query))
    assert "no-such-parameter" not in used
    assert used.get("given") == "eve"


def test_unknown_parameter_under_strict_handling_is_refused(fhir: httpx.Client) -> None:
    response = fhir.get(
        "/Patient", params={"no-such-parameter": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_last_updated_brackets_a_new_resource(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [("Recent", "x", "1990-01-01")])
    [patient] = matched([search_bundle(fhir, "/Patient", [tag_parameter(tag)])])
    stamp = patient["meta"]["lastUpdated"]
    assert matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_lastUpdated", f"ge{stamp}")])
    assert matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_lastUpdated", "gt2000-01-01")])
    assert not matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_lastUpdated", "lt2000-01-01")])
    assert not matched_ids(fhir, "/Patient", [tag_parameter(tag), ("_lastUpdated", f"gt{stamp}")])


def test_tag_search_with_system_and_code(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [("Tagged", "x", "1990-01-01")])
    assert len(matched_ids(fhir, "/Patient", [("_tag", f"{TAG_SYSTEM}|{tag}")])) == 1
    assert len(matched_ids(fhir, "/Patient", [("_tag", tag)])) == 1
    assert matched_ids(fhir, "/Patient", [("_tag", f"urn:other|{tag}")]) == []


def test_put_then_search_sees_the_new_version(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [("Before", "x", "1990-01-01")])
    patient = tagged(
        {"resourceType": "Patient", "id": f"{tag}-0", "name": [{"family": "After"}]}, tag
    )
    response = fhir.put(f"/Patient/{tag}-0", json=patient, headers=FHIR_JSON)
    assert response.status_code in (200, 201)
    assert matched_ids(fhir, "/Patient", [tag_parameter(tag), ("family", "before")]) == []
    assert matched_ids(fhir, "/Patient", [tag_parameter(tag), ("family", "after")]) == [f"{tag}-0"]


def test_every_page_has_a_self_link_and_pages_add_up(fhir: httpx.Client) -> None:
    tag = _fresh_patients(fhir, [(f"P{i}", "x", "1990-01-01") for i in range(5)])
    pages = all_pages(fhir, "/Patient", [tag_parameter(tag), ("_count", "2")])
    assert [len(p.get("entry", [])) for p in pages] == [2, 2, 1]
    assert all(link(p, "self") for p in pages)
