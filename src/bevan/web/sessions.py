"""Web sessions: the web app signs people in as an OAuth client of its own server
(authorization code with PKCE), keeps the tokens in an HttpOnly cookie, renews them
with the refresh token, and revokes them on sign-out.

The cookie holds only what the server issued and checks on every request (a signed
access token and an opaque refresh token), so it needs no server-side table; the CSRF
token of a session is an HMAC of the session's random id under a key kept in the data
directory, so forms stay valid across token renewals.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson

from bevan.security.oauth_clients import ClientError, ClientRegistry
from bevan.security.oauth_flows import (
    REFRESH_LIFETIME,
    AuthorizationServer,
    OAuthError,
    pkce_challenge,
)
from bevan.security.tokens import Principal, TokenAuthority, TokenError

SESSION_COOKIE = "bevan_session"
SIGN_IN_COOKIE = "bevan_sign_in"
KEY_FILE = "web-session-key"
CLIENT_NAME = "Bevan web app"
CALLBACK_PATH = "/sign-in/callback"
# What the web app asks for; the server narrows it to what each role may have.
CLIENT_SCOPE = "launch/patient offline_access online_access patient/*.cruds user/*.cruds"
SIGN_IN_SECONDS = 600  # how long a started sign-in may take


class SignedOut(Exception):
    """The session cookie is missing, or its tokens can no longer be used."""


@dataclass(frozen=True)
class WebSession:
    """One browser's sign-in: a random id (for CSRF) and the tokens the server issued."""

    id: str
    access_token: str
    refresh_token: str | None

    def cookie(self) -> str:
        data = orjson.dumps({"i": self.id, "a": self.access_token, "r": self.refresh_token})
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @classmethod
    def from_cookie(cls, text: str | None) -> WebSession | None:
        if not text or len(text) > 8000:
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        id, access, refresh = data.get("i"), data.get("a"), data.get("r")
        if not isinstance(id, str) or not isinstance(access, str):
            return None
        return cls(id, access, refresh if isinstance(refresh, str) else None)


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in under way: the state sent to the server and the PKCE verifier."""

    state: str
    verifier: str

    def cookie(self) -> str:
        return f"{self.state}.{self.verifier}"

    @classmethod
    def from_cookie(cls, text: str | None) -> PendingSignIn | None:
        state, dot, verifier = (text or "").partition(".")
        return cls(state, verifier) if dot and state and verifier else None


def session_key(data_dir: Path) -> bytes:
    """Return the key CSRF tokens are made with, created on first use (readable by the
    server's user only)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        partial.write_bytes(secrets.token_bytes(32))
        partial.chmod(0o600)
        try:
            os.link(partial, path)  # the first writer wins; everyone reads its key
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    return path.read_bytes()


class SessionKeeper:
    """Signs browsers in and out through the server's own OAuth flows."""

    def __init__(
        self,
        server: AuthorizationServer,
        tokens: TokenAuthority,
        clients: ClientRegistry,
        root: str,
        key: bytes,
    ) -> None:
        self.server = server
        self.tokens = tokens
        self.root = root.rstrip("/")
        self.redirect_uri = self.root + CALLBACK_PATH
        self.secure = urlsplit(self.root).scheme == "https"
        self.key = key
        self.client_id, self.problem = _web_client(clients, self.redirect_uri)

    # sign-in -------------------------------------------------------------------------

    def start(self) -> tuple[PendingSignIn, str]:
        """Return a new sign-in and the address of the server's sign-in page for it."""
        pending = PendingSignIn(secrets.token_urlsafe(24), secrets.token_urlsafe(48))
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id or "",
                "redirect_uri": self.redirect_uri,
                "scope": CLIENT_SCOPE,
                "state": pending.state,
                "code_challenge": pkce_challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        return pending, f"/auth/authorize?{query}"

    def finish(self, pending: PendingSignIn, state: str, code: str) -> WebSession:
        """Return the session for a code the server sent back (OAuthError if refused)."""
        if not hmac.compare_digest(pending.state, state):
            raise OAuthError("invalid_request", "the sign-in was not started in this browser")
        issued = self.server.token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id or "",
                "code_verifier": pending.verifier,
            },
            None,
        )
        return WebSession(secrets.token_urlsafe(16), issued.access_token, issued.refresh_token)

    # each request --------------------------------------------------------------------

    def resume(self, session: WebSession | None) -> tuple[Principal, WebSession | None]:
        """Return who the session signs in, and its renewed form if its access token had
        to be renewed (else None); SignedOut if it cannot be used."""
        if session is None:
            raise SignedOut("not signed in")
        try:
            return self.tokens.verify(session.access_token), None
        except TokenError:
            pass
        if not session.refresh_token:
            raise SignedOut("the session has ended")
        try:
            issued = self.server.token(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": session.refresh_token,
                    "client_id": self.client_id or "",
                },
                None,
            )
            renewed = WebSession(session.id, issued.access_token, issued.refresh_token)
            return self.tokens.verify(renewed.access_token), renewed
        except (OAuthError, TokenError) as error:
            raise SignedOut("the session has ended") from error

    def end(self, session: WebSession) -> None:
        """Revoke the session's tokens at the server."""
        for token, hint in (
            (session.refresh_token, "refresh_token"),
            (session.access_token, "access_token"),
        ):
            if token:
                # Already ended, or issued to another client: nothing to end here.
                with contextlib.suppress(OAuthError):
                    self.server.revoke(
                        {
                            "token": token,
                            "token_type_hint": hint,
                            "client_id": self.client_id or "",
                        },
                        None,
                    )

    # forms ---------------------------------------------------------------------------

    def csrf_token(self, session: WebSession) -> str:
        return hmac.new(self.key, session.id.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: WebSession, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(session), given or "")

    def cookie_options(self) -> dict[str, object]:
        return {
            "httponly": True,
            "secure": self.secure,
            "samesite": "lax",
            "path": "/",
            "max_age": REFRESH_LIFETIME,
        }


def _web_client(clients: ClientRegistry, redirect_uri: str) -> tuple[str | None, str | None]:
    """Return the web app's public client id (registered on first start) or why there is none."""
    for client in clients.list():
        if (
            client.name == CLIENT_NAME
            and redirect_uri in client.redirect_uris
            and not client.disabled
        ):
            return client.client_id, None
    try:
        client, _ = clients.register(
            CLIENT_NAME, redirect_uris=[redirect_uri], public=True, scope=CLIENT_SCOPE
        )
    except ClientError as error:
        return None, (
            f"the web app cannot sign anyone in at {redirect_uri}: {error}. "
            "Set BEVAN_BASE_URL to the https address people use."
        )
    return client.client_id, None
