"""Rewriting the references of a Bundle's resources: every reference, nothing else, and
never the resources given."""

from __future__ import annotations

import copy
from typing import Any

from bevan.fhir.references import rewrite_references

TARGETS = {"urn:uuid:p": "Patient/1", "urn:uuid:e": "Encounter/2"}


def test_every_reference_is_rewritten_wherever_it_sits_and_the_input_is_kept() -> None:
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "patient": {"reference": "urn:uuid:p", "display": "Ann"},
        "item": [
            {"sequence": 1, "encounter": [{"reference": "urn:uuid:e"}]},
            {"sequence": 2, "encounter": [{"reference": "Encounter/kept"}]},
        ],
        "extension": [
            {
                "url": "http://example.org/x",
                "valueReference": {"reference": "urn:uuid:p"},
            }
        ],
        "contained": [
            {"resourceType": "Patient", "id": "c", "link": [{"other": {"reference": "urn:uuid:p"}}]}
        ],
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:p"}],
        "provider": {"reference": "#c"},
    }
    given = copy.deepcopy(claim)
    rewritten = rewrite_references(claim, TARGETS.get)
    assert claim == given
    assert rewritten["patient"] == {"reference": "Patient/1", "display": "Ann"}
    assert rewritten["item"][0]["encounter"][0]["reference"] == "Encounter/2"
    assert rewritten["item"][1] is claim["item"][1]  # unchanged parts are shared
    assert rewritten["extension"][0]["valueReference"]["reference"] == "Patient/1"
    assert rewritten["contained"][0]["link"][0]["other"]["reference"] == "Patient/1"
    # An identifier that happens to hold the same text is not a reference.
    assert rewritten["identifier"] == given["identifier"]
    assert rewritten["provider"] == {"reference": "#c"}


def test_nothing_to_rewrite_gives_back_the_same_objects() -> None:
    resources = [
        {"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/9"}]}
    ]
    assert rewrite_references(resources, TARGETS.get) is resources
