"""The README's first session works as written, against the demo's own people.

The requests are read from the README itself, so a change to either that breaks a
newcomer's first steps fails here. The server holds the demo's population at its seed
(the first patients of a population do not depend on how many follow, so a few stand in
for the demo's 500) and the Bundle file the README posts.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bevan.records.loader import load_files
from bevan.synth import write_population
from tests.conftest import RunningServer, database_url, start_server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_SEED = 1948  # bevan demo's default
PATIENTS = 20
DEMO_ADDRESS = "http://127.0.0.1:8000"


def first_session_requests() -> list[list[str]]:
    """Return the curl commands of the README's first session, split into arguments."""
    text = README.read_text()
    section = text.split("## A first session", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the first session has no sh block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith("curl ")]


def as_request(arguments: list[str], root: str, token: str) -> tuple[str, str, dict, bytes]:
    """Return method, URL, headers and body of a curl command (the options it uses)."""
    headers: dict[str, str] = {}
    body = b""
    method = "GET"
    url = ""
    words = iter(arguments[1:])
    for word in words:
        if word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip().replace("$TOKEN", token)
        elif word == "-d":
            data = next(words)
            body = (ROOT / data[1:]).read_bytes() if data.startswith("@") else data.encode()
            method = "POST"
        elif word == "-X":
            method = next(words)
        else:
            url = word
    assert url.startswith(DEMO_ADDRESS), url
    return method, root + url.removeprefix(DEMO_ADDRESS), headers, body


@pytest.fixture(scope="module")
def demo(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server holding the first of the demo's patients."""
    tmp = tmp_path_factory.mktemp(f"bevan-readme-{backend}")
    population = tmp / "population"
    write_population(PATIENTS, DEMO_SEED, population)
    for running in start_server(database_url(backend, tmp), tmp):
        report = load_files(running.records, sorted(population.glob("*.json")))
        assert not report.refused, report.refused[:3]
        yield running


def test_the_readme_has_a_first_session_that_posts_the_example_bundle() -> None:
    requests = first_session_requests()
    assert len(requests) >= 5
    assert any("@examples/bundle.json" in arguments for arguments in requests)
    assert (ROOT / "examples" / "bundle.json").exists()
    assert len(README.read_text().splitlines()) < 200


def test_every_first_session_request_returns_the_demo_patients_data(demo: RunningServer) -> None:
    root = demo.base_url.removesuffix("/fhir")
    for arguments in first_session_requests():
        method, url, headers, body = as_request(arguments, root, demo.token)
        response = httpx.request(method, url, headers=headers, content=body, timeout=60)
        assert response.status_code == 200, f"{' '.join(arguments)}: {response.text[:500]}"
        answer = response.json()
        if answer["resourceType"] == "Bundle" and answer["type"] == "searchset":
            matches = [e for e in answer.get("entry", []) if e["search"]["mode"] == "match"]
            assert matches, f"{' '.join(arguments)} found nothing"
        if answer["resourceType"] == "Bundle" and answer["type"] == "transaction-response":
            statuses = [entry["response"]["status"] for entry in answer["entry"]]
            assert all(status.startswith(("200", "201")) for status in statuses), statuses


def test_the_readme_names_the_demo_patient_it_searches_for(demo: RunningServer) -> None:
    with demo.client() as fhir:
        found = fhir.get(
            "/Patient", params={"identifier": "https://fhir.nhs.uk/Id/nhs-number|9992902485"}
        ).json()
    [entry] = found["entry"]
    name = entry["resource"]["name"][0]
    assert (name["family"], name["given"][0]) == ("Campbell", "Gurpreet")
    assert "Mr Gurpreet Campbell" in README.read_text()
