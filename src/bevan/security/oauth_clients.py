"""OAuth clients: registering one (its redirect URIs, the account it acts as, the most
it may ask for) and checking its secret, kept only as an Argon2id hash."""

from __future__ import annotations

import builtins
import secrets
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine

from bevan.security.users import SERVICE_ROLES, User
from bevan.store.identity import IdentityStore, OAuthClient

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"

# The most a client may ask for when it is registered without a scope of its own.
DEFAULT_CLIENT_SCOPE = (
    "launch/patient offline_access online_access patient/*.cruds user/*.cruds system/*.cruds"
)


class ClientError(ValueError):
    """The client asked for cannot be registered as given; the text says why."""


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def check_redirect_uri(uri: str) -> None:
    """Raise ClientError unless uri may receive authorization codes.

    HTTPS, or HTTP to this machine (RFC 8252 7.3), or an app's own scheme (RFC 8252 7.1).
    """
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientError(f"a redirect URI cannot have a fragment: {uri}")
    if parts.scheme == "https" and parts.netloc:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return
    if parts.scheme not in ("http", "https", "") and "." in parts.scheme:
        return  # private-use scheme of a native app, e.g. uk.nhs.example:/callback
    raise ClientError(
        f"{uri!r} is not a usable redirect URI: use https://, http://127.0.0.1, "
        "or an app scheme such as uk.nhs.example:/callback"
    )


class ClientRegistry:
    """Registers OAuth clients and checks their secrets (kept only as Argon2id hashes)."""

    def __init__(self, store: IdentityStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._decoy_hash = self.hasher.hash(uuid.uuid4().hex)

    @classmethod
    def on(cls, engine: Engine) -> ClientRegistry:
        return cls(IdentityStore(engine))

    def register(
        self,
        name: str,
        *,
        redirect_uris: Sequence[str] = (),
        public: bool = False,
        user: User | None = None,
        scope: str | None = None,
    ) -> tuple[OAuthClient, str | None]:
        """Return a new client and its secret (None for a public client); show it once.

        A client with redirect URIs signs users in (authorization code, refresh token); a
        client linked to a system or device user gets tokens as that user (client
        credentials) and must be confidential.
        """
        if not name.strip():
            raise ClientError("a client needs a name")
        for uri in redirect_uris:
            check_redirect_uri(uri)
        if user is not None:
            if user.role not in SERVICE_ROLES:
                raise ClientError(
                    f"client credentials act as a system or device account, not a {user.role}"
                )
            if public:
                raise ClientError("a client that acts as an account must be confidential")
        if not redirect_uris and user is None:
            raise ClientError("a client needs redirect URIs, a user to act as, or both")
        grant_types: list[str] = []
        if redirect_uris:
            grant_types += [AUTHORIZATION_CODE, REFRESH_TOKEN]
        if user is not None:
            grant_types.append(CLIENT_CREDENTIALS)
        scope = " ".join((scope or DEFAULT_CLIENT_SCOPE).split())
        secret = None if public else secrets.token_urlsafe(32)
        client = OAuthClient(
            client_id=secrets.token_urlsafe(16),
            secret_hash=self.hasher.hash(secret) if secret else None,
            name=name.strip(),
            redirect_uris=tuple(redirect_uris),
            grant_types=tuple(grant_types),
            scope=scope,
            user_id=user.id if user else None,
            disabled=False,
            created=time.time(),
        )
        self.store.add_client(client)
        return client, secret

    def get(self, client_id: str) -> OAuthClient | None:
        """Return the client if it exists and is not disabled."""
        client = self.store.client(client_id)
        return client if client and not client.disabled else None

    def authenticate(self, client_id: str, secret: str) -> OAuthClient | None:
        """Return the confidential client whose secret this is, else None (in constant time)."""
        client = self.get(client_id)
        if client is None or client.secret_hash is None:
            self._verify(self._decoy_hash, secret)
            return None
        return client if self._verify(client.secret_hash, secret) else None

    def _verify(self, secret_hash: str, secret: str) -> bool:
        try:
            return self.hasher.verify(secret_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def list(self) -> builtins.list[OAuthClient]:
        return self.store.clients()

    def disable(self, client_id: str) -> bool:
        return self.store.set_client_disabled(client_id, True)
