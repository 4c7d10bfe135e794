"""A Bulk Data client, as the specification's conventions have one read an export:
kick off with Prefer: respond-async, poll the Content-Location, fetch each file."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

RESPOND_ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def kick_off(client: httpx.Client, path: str, **params: str) -> str:
    """Return the status URL of an export kicked off at path."""
    response = client.get(path, params=params, headers=RESPOND_ASYNC)
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


def finished(client: httpx.Client, status_url: str, timeout: float = 60) -> httpx.Response:
    """Poll status_url until it stops answering 202; each 202 must carry its headers."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url)
        if response.status_code != 202:
            return response
        assert response.headers["x-progress"]
        assert int(response.headers["retry-after"]) > 0
        assert time.monotonic() < deadline, "the bulk request did not finish"
        time.sleep(0.05)


def manifest_of(client: httpx.Client, status_url: str) -> dict[str, Any]:
    response = finished(client, status_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    manifest: dict[str, Any] = response.json()
    return manifest


def export(client: httpx.Client, path: str = "/$export", **params: str) -> dict[str, Any]:
    """Return the manifest of a finished export."""
    return manifest_of(client, kick_off(client, path, **params))


def files(client: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Return the exported resources by type, checking each file as a client would: its
    lines are its count of resources, each of the file's type."""
    found: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        response = client.get(output["url"], headers={"Accept": "application/fhir+ndjson"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = response.content.splitlines()
        assert len(lines) == output["count"]
        resources = [orjson.loads(line) for line in lines]
        assert {r["resourceType"] for r in resources} == {output["type"]}
        found.setdefault(output["type"], []).extend(resources)
    return found


def ids(found: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    return {t: {r["id"] for r in resources} for t, resources in found.items()}
