"""The Patient the store tests write: an identifier to find it by and a family name."""

from __future__ import annotations

from typing import Any

SYSTEM = "https://example.org/mrn"


def patient(mrn: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }
