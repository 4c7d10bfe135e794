"""A population shared by the synth tests: generating it once keeps the suite quick."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.synth import generate_patients, shared_resources

SEED = 2024
POPULATION = 2000


@pytest.fixture(scope="session")
def population() -> list[list[dict[str, Any]]]:
    return list(generate_patients(POPULATION, SEED))


@pytest.fixture(scope="session")
def shared() -> list[dict[str, Any]]:
    return shared_resources(SEED)
