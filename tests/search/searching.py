"""Talking to the server under test: load resources, run searches, collect every page."""

from __future__ import annotations

from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
TAG_SYSTEM = "urn:bevan:search-test"


def tagged(resource: dict[str, Any], tag: str) -> dict[str, Any]:
    """Return resource with meta.tag naming the test data set it belongs to."""
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": tag}]
    return {**resource, "meta": meta}


def tag_parameter(tag: str) -> tuple[str, str]:
    return ("_tag", f"{TAG_SYSTEM}|{tag}")


def load(fhir: httpx.Client, resources: list[dict[str, Any]]) -> None:
    """PUT every resource (which carries its id) in one transaction Bundle."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    response = fhir.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, f"loading the data set failed: {response.text[:1000]}"


def search(
    fhir: httpx.Client, path: str, params: list[tuple[str, str]], **kwargs: Any
) -> httpx.Response:
    return fhir.get(path, params=params, **kwargs)


def search_bundle(fhir: httpx.Client, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    response = search(fhir, path, params)
    assert response.status_code == 200, (
        f"GET {path}?{httpx.QueryParams(params)} answered {response.status_code}: "
        f"{response.text[:1000]}"
    )
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link["relation"] == "next":
            return str(link["url"])
    return None


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return str(item["url"])
    return None


def all_pages(fhir: httpx.Client, path: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Return every page of a search, following `next` links to the end."""
    pages = [search_bundle(fhir, path, params)]
    seen = set()
    while (url := next_link(pages[-1])) is not None:
        assert url not in seen, f"the next link {url} repeats"
        seen.add(url)
        response = fhir.get(url)
        assert response.status_code == 200, (
            f"GET {url}: {response.status_code} {response.text[:500]}"
        )
        pages.append(response.json())
        assert len(pages) < 200, "more than 200 pages: the next links do not end"
    return pages


def matched(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the resources of search.mode "match" across pages, in order."""
    return [
        e["resource"]
        for page in pages
        for e in page.get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def matched_ids(fhir: httpx.Client, path: str, params: list[tuple[str, str]]) -> list[str]:
    """Return the ids of every match of a search, across all pages, in order."""
    return [r["id"] for r in matched(all_pages(fhir, path, params))]
