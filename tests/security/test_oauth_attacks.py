"""Attacks on sign-in and tokens, over real HTTP on both engines: guessing passwords,
replaying a stolen refresh token, using the tokens of an account since disabled."""

from __future__ import annotations

import re
import time

import httpx
import orjson

from bevan.security.sign_in_throttle import ACCOUNT_LIMIT, ADDRESS_LIMIT
from bevan.security.users import UserDirectory
from bevan.store.audit import AuditLog
from tests.conftest import RunningServer
from tests.security.test_oauth_code_flow import (
    PASSWORD,
    App,
    app,
    fhir_get,
    patient_id,
    pkce,
    redirected_query,
    sign_in,
    token_request,
    tokens_for,
)

__all__ = ["app", "patient_id"]  # fixtures, used by name

WRONG = "not the passphrase at all"


def guess(server: RunningServer, app: App, username: str, password: str = WRONG) -> int:
    return sign_in(server, app, pkce()[1], username=username, password=password).status_code


def test_guessing_an_accounts_password_is_throttled_even_when_the_guess_is_right(
    server: RunningServer, app: App
) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert guess(server, app, app.username) == 401
    throttled = sign_in(server, app, pkce()[1], password=PASSWORD)
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    assert "too many failed sign-ins" in throttled.text
    assert "code=" not in throttled.headers.get("location", "")


def test_a_throttled_account_that_does_not_exist_looks_like_one_that_does(
    server: RunningServer, app: App
) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert guess(server, app, "nobody-by-this-name") == 401
    throttled = sign_in(server, app, pkce()[1], username="nobody-by-this-name")
    assert throttled.status_code == 429
    for _ in range(ACCOUNT_LIMIT):
        assert guess(server, app, app.username) == 401
    real = sign_in(server, app, pkce()[1], username=app.username)
    assert real.status_code == 429
    assert problem(throttled) == problem(real)


def problem(page: httpx.Response) -> str:
    """Return the text of the sign-in page's error box."""
    found = re.search(r'<div class="error".*?</div>', page.text, re.S)
    assert found is not None, page.text
    return found.group(0)


def test_a_failed_sign_in_is_audited_as_a_failure(server: RunningServer, app: App) -> None:
    assert guess(server, app, app.username) == 401
    entry = AuditLog(server.store.engine).find(user_id=app.username, limit=1)[0]
    assert entry.outcome == "4"
    assert "wrong username or password" in orjson.loads(entry.content)["outcomeDesc"]


def test_other_accounts_sign_in_while_one_is_throttled(server: RunningServer, app: App) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert guess(server, app, app.username) == 401
    other = f"{app.username}-colleague"
    UserDirectory.on(server.store.engine).add(
        other, "patient", password=PASSWORD, patient_id=app.patient_id
    )
    assert "code" in redirected_query(sign_in(server, app, pkce()[1], username=other))


def test_replaying_a_refresh_token_ends_the_whole_session(server: RunningServer, app: App) -> None:
    stolen = tokens_for(server, app)["refresh_token"]

    def refresh(token: str) -> int:
        return token_request(
            server, grant_type="refresh_token", refresh_token=token, client_id=app.client_id
        ).status_code

    rotated = token_request(
        server, grant_type="refresh_token", refresh_token=stolen, client_id=app.client_id
    ).json()["refresh_token"]
    assert refresh(stolen) == 400  # the thief's replay
    assert refresh(rotated) == 400  # and the session it belonged to is over


def test_disabling_an_account_stops_its_access_tokens(server: RunningServer, app: App) -> None:
    access = tokens_for(server, app)["access_token"]
    assert fhir_get(server, f"/Patient/{app.patient_id}", access).status_code == 200
    UserDirectory.on(server.store.engine).disable(app.username)
    deadline = time.monotonic() + 10
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = fhir_get(server, f"/Patient/{app.patient_id}", access).status_code
        time.sleep(0.2)
    assert status == 401


def test_guessing_from_one_address_is_throttled_across_accounts(
    server: RunningServer, app: App
) -> None:
    # Last in this module: it throttles the test client's own address.
    for n in range(ADDRESS_LIMIT):
        assert guess(server, app, f"someone-{n}") in (401, 429)
    assert sign_in(server, app, pkce()[1]).status_code == 429
