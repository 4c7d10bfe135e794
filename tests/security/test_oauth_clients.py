"""Client credentials, refused grants and SMART discovery, over real HTTP, on both backends."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from bevan.security.oauth_clients import ClientRegistry
from bevan.security.tokens import TokenAuthority
from bevan.security.users import UserDirectory
from tests.conftest import RunningServer

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@dataclass
class Confidential:
    client_id: str
    secret: str


def root(server: RunningServer) -> str:
    return server.base_url.removesuffix("/fhir")


@pytest.fixture
def feeder(server: RunningServer) -> Confidential:
    """A confidential client acting as a system account."""
    users = UserDirectory.on(server.store.engine)
    account = users.add(f"feeder-{uuid.uuid4().hex[:8]}", "system")
    client, secret = ClientRegistry.on(server.store.engine).register(
        "Lab results feed", user=account, scope="system/*.cruds"
    )
    assert secret is not None
    return Confidential(client.client_id, secret)


def token(
    server: RunningServer, form: dict[str, str], auth: tuple[str, str] | None = None
) -> httpx.Response:
    return httpx.post(f"{root(server)}/auth/token", data=form, auth=auth, timeout=30)


def test_client_credentials_with_basic_authentication_give_a_working_token(
    server: RunningServer, feeder: Confidential
) -> None:
    response = token(
        server,
        {"grant_type": "client_credentials", "scope": "system/Patient.cruds"},
        auth=(feeder.client_id, feeder.secret),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Patient.cruds"
    assert "refresh_token" not in body  # client credentials need none
    with server.client(body["access_token"]) as fhir:
        created = fhir.post(
            "/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=FHIR_JSON
        )
        assert created.status_code == 201, created.text
        read = fhir.get(f"/Patient/{created.json()['id']}")
        assert read.status_code == 200


def test_client_credentials_in_the_form_body_work_too(
    server: RunningServer, feeder: Confidential
) -> None:
    response = token(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": feeder.client_id,
            "client_secret": feeder.secret,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.cruds"


def test_a_wrong_client_secret_is_refused_with_401(
    server: RunningServer, feeder: Confidential
) -> None:
    basic = token(
        server, {"grant_type": "client_credentials"}, auth=(feeder.client_id, "not-the-secret")
    )
    assert basic.status_code == 401
    assert basic.json()["error"] == "invalid_client"
    assert basic.headers["www-authenticate"].startswith("Basic")
    posted = token(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": feeder.client_id,
            "client_secret": "not-the-secret",
        },
    )
    assert posted.status_code == 401
    assert posted.json()["error"] == "invalid_client"


def test_client_credentials_without_a_secret_are_refused(
    server: RunningServer, feeder: Confidential
) -> None:
    response = token(server, {"grant_type": "client_credentials", "client_id": feeder.client_id})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_disabled_account_behind_a_client_gets_no_token(server: RunningServer) -> None:
    users = UserDirectory.on(server.store.engine)
    account = users.add(f"feeder-{uuid.uuid4().hex[:8]}", "system")
    client, secret = ClientRegistry.on(server.store.engine).register("Old feed", user=account)
    assert secret is not None
    users.disable(account.username)
    response = token(server, {"grant_type": "client_credentials"}, auth=(client.client_id, secret))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_public_client_cannot_use_client_credentials(server: RunningServer) -> None:
    client, _ = ClientRegistry.on(server.store.engine).register(
        "Browser app", redirect_uris=["https://app.example.nhs.uk/callback"], public=True
    )
    response = token(server, {"grant_type": "client_credentials", "client_id": client.client_id})
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_the_password_grant_is_not_supported(server: RunningServer, feeder: Confidential) -> None:
    response = token(
        server,
        {
            "grant_type": "password",
            "username": "anyone",
            "password": "anything at all",
            "client_id": feeder.client_id,
            "client_secret": feeder.secret,
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unsupported_grant_type"
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"


def test_a_token_request_that_is_not_a_form_is_refused(server: RunningServer) -> None:
    response = httpx.post(
        f"{root(server)}/auth/token", json={"grant_type": "client_credentials"}, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_device_token_names_its_device_and_patient(server: RunningServer) -> None:
    users = UserDirectory.on(server.store.engine)
    device = users.add(
        f"oximeter-{uuid.uuid4().hex[:8]}", "device", patient_id="p-123", device_id="d-456"
    )
    client, secret = ClientRegistry.on(server.store.engine).register(
        "Home oximeter", user=device, scope="patient/Observation.cru"
    )
    assert secret is not None
    response = token(server, {"grant_type": "client_credentials"}, auth=(client.client_id, secret))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "patient/Observation.cru"
    principal = TokenAuthority.in_directory(server.data_dir).verify(response.json()["access_token"])
    assert (principal.role, principal.patient_id, principal.device_id) == (
        "device",
        "p-123",
        "d-456",
    )


@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]
)
def test_smart_configuration_describes_the_endpoints(server: RunningServer, path: str) -> None:
    response = httpx.get(root(server) + path)
    assert response.status_code == 200
    config = response.json()
    assert config["authorization_endpoint"] == f"{root(server)}/auth/authorize"
    assert config["token_endpoint"] == f"{root(server)}/auth/token"
    assert config["revocation_endpoint"] == f"{root(server)}/auth/revoke"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["response_types_supported"] == ["code"]
    assert set(config["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "password" not in config["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        config["token_endpoint_auth_methods_supported"]
    )
    assert {
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "context-standalone-patient",
        "permission-patient",
        "permission-user",
        "permission-v2",
    } <= set(config["capabilities"])
    assert "launch/patient" in config["scopes_supported"]
    assert "patient/*.rs" in config["scopes_supported"]
