"""Signing in with an authorization code and PKCE, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from bevan.security.oauth_clients import ClientRegistry
from bevan.security.users import UserDirectory
from tests.conftest import RunningServer

REDIRECT = "http://127.0.0.1:8765/callback"
PASSWORD = "a long and memorable passphrase"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@dataclass
class App:
    """A registered public application and a patient who uses it."""

    client_id: str
    username: str
    patient_id: str


@pytest.fixture(scope="module")
def patient_id(server: RunningServer) -> str:
    with server.client() as fhir:
        created = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Bevan", "given": ["Aneurin"]}]},
            headers=FHIR_JSON,
        )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.fixture
def app(server: RunningServer, patient_id: str) -> App:
    """A fresh client and patient account for each test, so tests cannot disturb each other."""
    username = f"patient-{uuid.uuid4().hex[:8]}"
    UserDirectory.on(server.store.engine).add(
        username, "patient", password=PASSWORD, patient_id=patient_id
    )
    client, secret = ClientRegistry.on(server.store.engine).register(
        "Patient Portal", redirect_uris=[REDIRECT], public=True
    )
    assert secret is None
    return App(client.client_id, username, patient_id)


def root(server: RunningServer) -> str:
    return server.base_url.removesuffix("/fhir")


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class FormFields(HTMLParser):
    """The named inputs of the page's form, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def authorize_query(server: RunningServer, app: App, challenge: str, **changes: str) -> dict:
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": "launch/patient patient/*.rs offline_access",
        "state": "st-" + uuid.uuid4().hex,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": server.base_url,
    }
    query.update(changes)
    return query


def sign_in(
    server: RunningServer,
    app: App,
    challenge: str,
    *,
    username: str | None = None,
    password: str = PASSWORD,
    **changes: str,
) -> httpx.Response:
    """Open the sign-in page as a browser would, fill it in and submit it."""
    with httpx.Client(base_url=root(server), timeout=30) as browser:
        page = browser.get(
            "/auth/authorize", params=authorize_query(server, app, challenge, **changes)
        )
        assert page.status_code == 200, page.text
        form = FormFields()
        form.feed(page.text)
        fields = {**form.fields, "username": username or app.username, "password": password}
        fields["action"] = "sign-in"
        return browser.post("/auth/authorize", data=fields)


def redirected_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_for(server: RunningServer, app: App) -> tuple[str, str]:
    verifier, challenge = pkce()
    query = redirected_query(sign_in(server, app, challenge))
    return query["code"], verifier


def token_request(server: RunningServer, **form: str) -> httpx.Response:
    return httpx.post(f"{root(server)}/auth/token", data=form, timeout=30)


def exchange(
    server: RunningServer, app: App, code: str, verifier: str, **changes: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": app.client_id,
        "code_verifier": verifier,
    }
    form.update(changes)
    return token_request(server, **form)


def tokens_for(server: RunningServer, app: App) -> dict:
    code, verifier = code_for(server, app)
    response = exchange(server, app, code, verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


def fhir_get(server: RunningServer, path: str, access_token: str) -> httpx.Response:
    with server.client(access_token) as fhir:
        return fhir.get(path)


# --- the sign-in page ----------------------------------------------------------------


def test_sign_in_page_names_the_app_and_what_it_asks_for(server: RunningServer, app: App) -> None:
    _, challenge = pkce()
    page = httpx.get(
        f"{root(server)}/auth/authorize", params=authorize_query(server, app, challenge)
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Patient Portal" in page.text
    assert "Read and search all records for one patient" in page.text
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert 'lang="en"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_redirect_uri_not_registered_gets_a_plain_400_page_and_no_redirect(
    server: RunningServer, app: App
) -> None:
    _, challenge = pkce()
    query = authorize_query(server, app, challenge, redirect_uri="https://evil.example/steal")
    page = httpx.get(f"{root(server)}/auth/authorize", params=query)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "evil.example" not in page.text


def test_an_unknown_client_gets_a_plain_400_page(server: RunningServer, app: App) -> None:
    _, challenge = pkce()
    query = authorize_query(server, app, challenge, client_id="no-such-app")
    page = httpx.get(f"{root(server)}/auth/authorize", params=query)
    assert page.status_code == 400
    assert "location" not in page.headers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"aud": "https://another.example/fhir"}, "invalid_request"),
        ({"scope": "openid"}, "invalid_scope"),  # not a scope this client may ask for
    ],
)
def test_a_bad_request_from_a_trusted_app_is_redirected_back_with_an_error(
    server: RunningServer, app: App, changes: dict[str, str], error: str
) -> None:
    _, challenge = pkce()
    query = authorize_query(server, app, challenge, **changes)
    response = httpx.get(f"{root(server)}/auth/authorize", params=query)
    answer = redirected_query(response)
    assert answer["error"] == error
    assert answer["state"] == query["state"]
    assert "code" not in answer


def test_a_user_whose_role_allows_nothing_asked_for_is_sent_back_with_access_denied(
    server: RunningServer, app: App
) -> None:
    _, challenge = pkce()
    response = sign_in(server, app, challenge, scope="system/*.cruds")  # the client may ask
    answer = redirected_query(response)
    assert answer["error"] == "access_denied"
    assert "code" not in answer


def test_plain_pkce_is_refused(server: RunningServer, app: App) -> None:
    verifier = secrets.token_urlsafe(48)
    query = authorize_query(server, app, verifier, code_challenge_method="plain")
    answer = redirected_query(httpx.get(f"{root(server)}/auth/authorize", params=query))
    assert answer["error"] == "invalid_request"
    assert "S256" in answer["error_description"]


def test_a_wrong_password_shows_the_form_again_and_gives_no_code(
    server: RunningServer, app: App
) -> None:
    _, challenge = pkce()
    response = sign_in(server, app, challenge, password="not the right one at all")
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "location" not in response.headers
    assert app.username in response.text  # the username is kept; the password is not
    assert "not the right one" not in response.text


def test_a_disabled_user_cannot_sign_in(server: RunningServer, app: App) -> None:
    assert UserDirectory.on(server.store.engine).disable(app.username)
    _, challenge = pkce()
    response = sign_in(server, app, challenge)
    assert response.status_code == 401
    assert "location" not in response.headers


def test_cancelling_sends_the_user_back_with_access_denied(server: RunningServer, app: App) -> None:
    _, challenge = pkce()
    query = authorize_query(server, app, challenge)
    form = {**query, "action": "cancel"}
    response = httpx.post(f"{root(server)}/auth/authorize", data=form)
    answer = redirected_query(response)
    assert answer == {
        "error": "access_denied",
        "error_description": "the user cancelled",
        "state": query["state"],
    }


# --- the code exchange --------------------------------------------------------------


def test_signing_in_gives_a_code_and_the_state_back(server: RunningServer, app: App) -> None:
    _, challenge = pkce()
    response = sign_in(server, app, challenge, state="opaque-state-123")
    answer = redirected_query(response)
    assert answer["state"] == "opaque-state-123"
    assert len(answer["code"]) >= 40


def test_authorization_code_with_pkce_gives_tokens_that_open_the_fhir_api(
    server: RunningServer, app: App
) -> None:
    code, verifier = code_for(server, app)
    response = exchange(server, app, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 15 * 60
    assert set(body["scope"].split()) == {"launch/patient", "patient/*.rs", "offline_access"}
    assert body["patient"] == app.patient_id  # SMART launch context
    assert body["refresh_token"]

    metadata = fhir_get(server, "/metadata", body["access_token"])
    assert metadata.status_code == 200
    own_record = fhir_get(server, f"/Patient/{app.patient_id}", body["access_token"])
    assert own_record.status_code == 200, own_record.text
    assert own_record.json()["id"] == app.patient_id


def test_the_granted_scope_is_only_what_the_role_allows(server: RunningServer, app: App) -> None:
    verifier, challenge = pkce()
    asked = "patient/*.cruds user/*.cruds launch/patient"
    code = redirected_query(sign_in(server, app, challenge, scope=asked))["code"]
    body = exchange(server, app, code, verifier).json()
    granted = set(body["scope"].split())
    assert "patient/*.rs" in granted and "launch/patient" in granted
    assert not any(scope.startswith("user/") for scope in granted)
    assert "patient/*.cruds" not in granted


def test_a_wrong_code_verifier_is_refused(server: RunningServer, app: App) -> None:
    code, _ = code_for(server, app)
    response = exchange(server, app, code, secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_works_once_and_reuse_ends_what_it_issued(server: RunningServer, app: App) -> None:
    code, verifier = code_for(server, app)
    first = exchange(server, app, code, verifier)
    assert first.status_code == 200
    second = exchange(server, app, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # The refresh token the first exchange gave no longer works.
    refreshed = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=first.json()["refresh_token"],
        client_id=app.client_id,
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_a_different_redirect_uri_at_the_token_endpoint_is_refused(
    server: RunningServer, app: App
) -> None:
    code, verifier = code_for(server, app)
    response = exchange(server, app, code, verifier, redirect_uri="http://127.0.0.1:8765/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_from_another_client_is_refused(server: RunningServer, app: App) -> None:
    code, verifier = code_for(server, app)
    other, _ = ClientRegistry.on(server.store.engine).register(
        "Other App", redirect_uris=[REDIRECT], public=True
    )
    response = exchange(server, app, code, verifier, client_id=other.client_id)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_made_up_code_is_refused(server: RunningServer, app: App) -> None:
    verifier, _ = pkce()
    response = exchange(server, app, secrets.token_urlsafe(32), verifier)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the code is not valid",
    }


# --- refresh and revocation -----------------------------------------------------------


def test_refresh_tokens_rotate_and_the_old_one_stops_working(
    server: RunningServer, app: App
) -> None:
    first = tokens_for(server, app)
    refreshed = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        client_id=app.client_id,
    )
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["patient"] == app.patient_id
    assert fhir_get(server, f"/Patient/{app.patient_id}", second["access_token"]).status_code == 200

    replay = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        client_id=app.client_id,
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # A replay may be a thief's: the successor it would have raced is ended too.
    again = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=second["refresh_token"],
        client_id=app.client_id,
    )
    assert again.status_code == 400


def test_a_refresh_can_narrow_the_scope_but_not_widen_it(server: RunningServer, app: App) -> None:
    first = tokens_for(server, app)
    narrowed = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        client_id=app.client_id,
        scope="patient/Observation.rs",
    )
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "patient/Observation.rs"
    widened = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=narrowed.json()["refresh_token"],
        client_id=app.client_id,
        scope="user/*.cruds",
    )
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"


def test_a_disabled_user_cannot_refresh(server: RunningServer, app: App) -> None:
    first = tokens_for(server, app)
    UserDirectory.on(server.store.engine).disable(app.username)
    response = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        client_id=app.client_id,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_revoking_an_access_token_makes_the_fhir_api_answer_401(
    server: RunningServer, app: App
) -> None:
    access = tokens_for(server, app)["access_token"]
    assert fhir_get(server, f"/Patient/{app.patient_id}", access).status_code == 200
    revoked = httpx.post(
        f"{root(server)}/auth/revoke",
        data={"token": access, "token_type_hint": "access_token", "client_id": app.client_id},
    )
    assert revoked.status_code == 200
    assert fhir_get(server, f"/Patient/{app.patient_id}", access).status_code == 401
    assert fhir_get(server, "/Patient", access).status_code == 401


def test_revoking_a_refresh_token_stops_it_working(server: RunningServer, app: App) -> None:
    refresh = tokens_for(server, app)["refresh_token"]
    revoked = httpx.post(
        f"{root(server)}/auth/revoke", data={"token": refresh, "client_id": app.client_id}
    )
    assert revoked.status_code == 200
    response = token_request(
        server, grant_type="refresh_token", refresh_token=refresh, client_id=app.client_id
    )
    assert response.json()["error"] == "invalid_grant"


def test_revoking_an_unknown_token_still_answers_200(server: RunningServer) -> None:
    response = httpx.post(f"{root(server)}/auth/revoke", data={"token": "nothing-we-issued"})
    assert response.status_code == 200


def test_repeated_parameters_are_refused(server: RunningServer, app: App) -> None:
    code, verifier = code_for(server, app)
    body = urlencode(
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", app.client_id),
            ("code_verifier", verifier),
        ]
    )
    response = httpx.post(
        f"{root(server)}/auth/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
