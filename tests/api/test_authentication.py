"""Every FHIR route but /metadata refuses a request without a valid bearer token."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bevan.security.tokens import AUDIENCE, ISSUER, TokenAuthority


def route_table() -> list[tuple[str, str]]:
    """Every (method, path) of the FHIR route table, with its parameters filled in."""
    from bevan.api.routes import fhir_routes

    examples = {
        "type": "Patient",
        "id": "p1",
        "version": "1",
        "target": "Observation",
        "grant": "1",
    }
    found = []
    for route in fhir_routes("/fhir"):
        for path, methods in _with_operations(route.path.removeprefix("/fhir"), route.methods):
            for name, value in examples.items():
                path = path.replace("{" + name + "}", value)
            for method in sorted(methods or ()):
                if method != "HEAD":
                    found.append((method, path))
    return found


def _with_operations(path: str, methods: set[str] | None) -> list[tuple[str, set[str] | None]]:
    """A route answering operations, once for each operation it answers."""
    from bevan.api.operations import OPERATIONS

    if "{operation}" not in path:
        return [(path, methods)]
    level = {0: "system", 1: "type", 2: "instance"}[path.count("/") - 1]
    out = []
    for operation in OPERATIONS:
        if level in operation.handlers:
            typed = path.replace("{type}", operation.types[0]) if operation.types else path
            out.append((typed.replace("{operation}", operation.name), set(operation.methods)))
    return out


ROUTES = [(m, p) for m, p in route_table() if p != "/metadata"]


def claims(**changes: object) -> dict:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "someone",
        "role": "system",
        "scope": "system/*.*",
        "iat": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def bad_tokens(data_dir: Path) -> dict[str, str | None]:
    own = TokenAuthority.in_directory(data_dir)._private  # the server's key, to forge near-misses
    other = Ed25519PrivateKey.generate()
    return {
        "no token": None,
        "not a jwt": "Bearer not-a-token",
        "wrong scheme": "Basic dXNlcjpwYXNz",
        "expired": "Bearer "
        + jwt.encode(claims(exp=int(time.time()) - 10), own, algorithm="EdDSA"),
        "wrong signature": "Bearer " + jwt.encode(claims(), other, algorithm="EdDSA"),
        "wrong audience": "Bearer "
        + jwt.encode(claims(aud="someone-else"), own, algorithm="EdDSA"),
        "alg none": "Bearer " + jwt.encode(claims(), None, algorithm="none"),  # type: ignore[arg-type]
        "unknown role": "Bearer " + jwt.encode(claims(role="wizard"), own, algorithm="EdDSA"),
    }


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_bad_tokens(server, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    for why, header in bad_tokens(server.data_dir).items():
        headers = {"Content-Type": "application/fhir+json"}
        if header is not None:
            headers["Authorization"] = header
        response = httpx.request(method, server.base_url + path, headers=headers, content=b"{}")
        assert response.status_code == 401, f"{why}: {response.status_code} {response.text}"
        body = response.json()
        assert body["resourceType"] == "OperationOutcome", why
        assert body["issue"][0]["code"] == "login"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_route_table_is_walked() -> None:
    assert ("GET", "/Patient/p1") in ROUTES
    assert ("GET", "/Patient/p1/$everything") in ROUTES
    assert len(ROUTES) >= 18


def test_metadata_needs_no_token(server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(server.base_url + "/metadata").status_code == 200


def test_a_token_from_bevan_token_create_is_accepted(server) -> None:  # type: ignore[no-untyped-def]
    import contextlib
    import io

    from bevan.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert (
            main(["token", "create", "--role", "system", "--data-dir", str(server.data_dir)]) == 0
        )
    token = out.getvalue().strip().splitlines()[-1]
    response = httpx.get(server.base_url + "/Patient", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
