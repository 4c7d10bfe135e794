"""A server holding the people and the clinics' diaries the booking tests share."""

from __future__ import annotations

import pytest

from tests.conftest import RunningServer
from tests.people import PEOPLE
from tests.scheduling.diaries import CLINICS, put_all


@pytest.fixture(scope="module")
def diary(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, PEOPLE + CLINICS)
    return server
