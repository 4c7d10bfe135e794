"""OAuth 2.0 and SMART App Launch: sign-in, authorization codes with PKCE, tokens, revocation.

- `GET /auth/authorize` shows a sign-in form; `POST /auth/authorize` checks the password
  and sends the browser back to the application with a one-time code (RFC 6749 4.1,
  PKCE S256 only, RFC 7636).
- `POST /auth/token` exchanges a code, a refresh token or a confidential client's
  credentials for a short-lived access token (a JWT from `TokenAuthority`). Refresh tokens
  rotate: each is good for one exchange, and one presented again ends every refresh
  token of that user and client (it may have been stolen). Codes and refresh tokens are
  stored only as SHA-256 digests.
- Failed sign-ins are counted per account and per client address; past the limits the
  sign-in page answers 429 with Retry-After (`sign_in_throttle`), and each failure is
  audited as one.
- `POST /auth/revoke` ends a refresh token or an access token (RFC 7009).
- `/.well-known/smart-configuration` describes all this to SMART applications.

Granted scope is the intersection of what was asked for, what the client may ask for,
and what the user's role allows (`ROLE_SCOPES`).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import html
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bevan.security.scopes import ResourceScope
from bevan.security.sign_in_throttle import SignInThrottle, Throttled
from bevan.security.tokens import TokenAuthority, TokenError
from bevan.security.users import (
    ROLE_SCOPES,
    SERVICE_ROLES,
    User,
    UserDirectory,
)
from bevan.store.identity import IdentityStore, OAuthClient, OAuthGrant
from bevan.store.sign_in_failures import SignInFailures

ACCESS_LIFETIME = 15 * 60
REFRESH_LIFETIME = 8 * 3600  # a signed-in session lasts a working shift at most
CODE_LIFETIME = 60
PURGE_INTERVAL = 600

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"

# The most a client may ask for when it is registered without a scope of its own.
DEFAULT_CLIENT_SCOPE = (
    "launch/patient offline_access online_access patient/*.cruds user/*.cruds system/*.cruds"
)

SCOPES_SUPPORTED = [
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "patient/*.read",
    "user/*.rs",
    "user/*.cruds",
    "user/*.read",
    "user/*.*",
    "system/*.rs",
    "system/*.cruds",
    "system/*.read",
    "system/*.*",
]

SMART_CAPABILITIES = [
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]


# --- SMART scopes --------------------------------------------------------------------


def intersect_scopes(requested: str, allowed: str) -> str:
    """Return the scopes of requested that allowed permits, narrowed to what it permits.

    Resource scopes meet pairwise (`user/*.cruds` and `user/Patient.rs` give
    `user/Patient.rs`); other scopes (launch/patient, offline_access) must appear in both.
    """
    allowed_words = allowed.split()
    allowed_resources = [s for s in map(ResourceScope.parse, allowed_words) if s]
    granted: list[str] = []
    resources: list[ResourceScope] = []
    for word in requested.split():
        asked = ResourceScope.parse(word)
        if asked is None:
            if word in allowed_words and word not in granted:
                granted.append(word)
            continue
        for permitted in allowed_resources:
            met = asked.meet(permitted)
            if met is not None:
                resources.append(met)
    # Drop scopes another granted scope already covers.
    kept: list[ResourceScope] = []
    for index, scope in enumerate(resources):
        covered = any(
            scope.within(other) and (not other.within(scope) or later < index)
            for later, other in enumerate(resources)
            if later != index
        )
        if not covered:
            kept.append(scope)
    for scope in kept:
        if str(scope) not in granted:
            granted.append(str(scope))
    return " ".join(granted)


def scope_for_role(requested: str, user: User) -> str:
    """Return the part of requested that user's role may be granted."""
    return intersect_scopes(requested, ROLE_SCOPES.get(user.role, ""))


def describe_scope(scope: str) -> str:
    """Return a plain-English line for a scope, for the sign-in page."""
    words = {
        "launch/patient": "know which patient's record you are looking at",
        "offline_access": "keep access after you close it (until you sign out, at most 8 hours)",
        "online_access": "keep access while you are using it",
        "openid": "know who you are",
        "fhirUser": "know who you are",
    }
    if scope in words:
        return words[scope]
    parsed = ResourceScope.parse(scope)
    if parsed is None:
        return scope
    verbs = [
        verb
        for letter, verb in zip(
            "cruds", ("create", "read", "update", "delete", "search"), strict=True
        )
        if letter in parsed.permissions
    ]
    action = ", ".join(verbs[:-1]) + (" and " if len(verbs) > 1 else "") + verbs[-1]
    what = "all records" if parsed.type == "*" else f"{parsed.type} records"
    whose = {
        "patient": "for one patient",
        "user": "that you are allowed to see",
        "system": "across the whole system",
    }[parsed.context]
    line = f"{action} {what} {whose}"
    return line[0].upper() + line[1:]


# --- clients -------------------------------------------------------------------------


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


# --- revoked access tokens -----------------------------------------------------------


class RevocationList:
    """Answers "is this token revoked?" from memory, reloading from the database every
    few seconds, so it is cheap enough to ask on every request.

    A revocation made in this process counts at once; one made by another worker process
    counts here within `refresh_seconds`.
    """

    def __init__(self, store: IdentityStore, refresh_seconds: float = 5.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._revoked: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def on(cls, engine: Engine) -> RevocationList:
        return cls(IdentityStore(engine))

    def is_revoked(self, jti: str) -> bool:
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            self._reload()
        return jti in self._revoked

    def revoke(self, jti: str, expires: float) -> None:
        """Record jti as revoked until expires (epoch seconds)."""
        self.store.revoke_token(jti, expires)
        with self._lock:
            self._revoked = self._revoked | {jti}

    def _reload(self) -> None:
        # One thread reloads; the others answer from the list they have.
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._revoked = frozenset(self.store.revoked_tokens(time.time()))
            self._loaded_at = time.monotonic()
        finally:
            self._lock.release()


# --- errors --------------------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 error answered as JSON from the token and revocation endpoints."""

    def __init__(
        self, error: str, description: str, status: int = 400, basic_challenge: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic_challenge = basic_challenge


class UntrustedRequest(Exception):
    """An authorization request whose client or redirect URI cannot be trusted: the
    browser is shown the reason instead of being sent anywhere."""


class RedirectedError(Exception):
    """An authorization request error sent back to the client's redirect URI."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.state = state
        self.error = error
        self.description = description


# --- the flows -----------------------------------------------------------------------


def digest(secret: str) -> str:
    """Return the SHA-256 hex digest a code or refresh token is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """Return the S256 code challenge for a PKCE code verifier (RFC 7636 4.2)."""
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
_AUTHORIZE_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "aud",
)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked request for an authorization code (RFC 6749 4.1.1 with PKCE)."""

    client: OAuthClient
    redirect_uri: str
    scope: str  # as asked for, narrowed to what the client may ask for
    state: str | None
    code_challenge: str
    parameters: dict[str, str]  # as received, carried through the sign-in form


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    scope: str
    expires_in: int
    refresh_token: str | None = None
    patient: str | None = None

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        if self.patient:
            body["patient"] = self.patient
        return body


class AuthorizationServer:
    """The OAuth 2.0 flows, independent of HTTP: each method returns or raises a value."""

    def __init__(
        self,
        authority: TokenAuthority,
        users: UserDirectory,
        clients: ClientRegistry,
        revocations: RevocationList,
        base_url: str,
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.authority = authority
        self.users = users
        self.clients = clients
        self.revocations = revocations
        self.store = clients.store
        self.base_url = base_url.rstrip("/")
        self._purged_at = float("-inf")
        self.throttle = throttle or SignInThrottle(SignInFailures(self.store.engine))

    # authorization endpoint ----------------------------------------------------------

    def authorization_request(
        self, parameters: Mapping[str, str], repeated: Iterable[str] = (), fhir_base: str = ""
    ) -> AuthorizationRequest:
        """Return the checked request; UntrustedRequest or RedirectedError if it is wrong."""
        client_id = parameters.get("client_id", "")
        client = self.clients.get(client_id) if client_id else None
        if client is None:
            raise UntrustedRequest(
                "The application asking you to sign in is not registered with this server."
                if client_id
                else "The request does not say which application is asking (client_id)."
            )
        redirect_uri = parameters.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise UntrustedRequest(
                "The address to return to (redirect_uri) is not one registered for "
                f"{client.name}, so you have not been sent back to it."
            )
        state = parameters.get("state")

        def refuse(error: str, description: str) -> RedirectedError:
            return RedirectedError(redirect_uri, state, error, description)

        repeated = sorted(set(repeated) & set(_AUTHORIZE_PARAMETERS))
        if repeated:
            raise refuse("invalid_request", f"parameters given more than once: {repeated}")
        if parameters.get("response_type") != "code":
            raise refuse("unsupported_response_type", "this server only issues codes")
        if AUTHORIZATION_CODE not in client.grant_types:
            raise refuse("unauthorized_client", "this client may not use authorization codes")
        challenge = parameters.get("code_challenge", "")
        method = parameters.get("code_challenge_method")
        if not challenge:
            raise refuse("invalid_request", "PKCE is required: send code_challenge (S256)")
        if method != "S256":
            raise refuse("invalid_request", "code_challenge_method must be S256")
        if not _CHALLENGE.match(challenge):
            raise refuse("invalid_request", "code_challenge is not a base64url SHA-256 digest")
        aud = parameters.get("aud")
        if aud is not None and aud.rstrip("/") not in (self.base_url, fhir_base.rstrip("/")):
            raise refuse("invalid_request", f"aud must be this server's FHIR base {self.base_url}")
        requested = parameters.get("scope") or client.scope
        scope = intersect_scopes(requested, client.scope)
        if not scope:
            raise refuse("invalid_scope", "none of the scopes asked for are allowed this client")
        carried = {k: parameters[k] for k in _AUTHORIZE_PARAMETERS if k in parameters}
        return AuthorizationRequest(client, redirect_uri, scope, state, challenge, carried)

    def sign_in(
        self,
        request: AuthorizationRequest,
        username: str,
        password: str,
        address: str | None = None,
    ) -> str | None:
        """Return the redirect carrying a new code if the user signs in, else None;
        Throttled if the account or the address (the client's) has failed too often."""
        self.throttle.check(username, address)
        user = self.users.authenticate(username, password)
        if user is None or not user.signs_in_with_password:
            self.throttle.failed(username, address)
            return None
        self.throttle.succeeded(username)
        scope = scope_for_role(request.scope, user)
        if not scope:
            raise RedirectedError(
                request.redirect_uri,
                request.state,
                "access_denied",
                f"a {user.role} may not be granted any of the scopes asked for",
            )
        self._purge_now_and_then()
        code = secrets.token_urlsafe(32)
        self.store.add_grant(
            OAuthGrant(
                digest=digest(code),
                kind="code",
                client_id=request.client.client_id,
                user_id=user.id,
                scope=scope,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                expires=time.time() + CODE_LIFETIME,
                used=False,
            )
        )
        return with_query(request.redirect_uri, code=code, state=request.state)

    # token endpoint -----------------------------------------------------------------

    def token(self, form: Mapping[str, str], authorization: str | None) -> TokenResponse:
        """Return tokens for a token request; OAuthError says why not."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type not in (AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS):
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type {grant_type!r} is not supported; use authorization_code "
                "(with PKCE), refresh_token or client_credentials",
            )
        client, authenticated = self.client_of(form, authorization)
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
        if grant_type == AUTHORIZATION_CODE:
            return self._exchange_code(client, form)
        if grant_type == REFRESH_TOKEN:
            return self._refresh(client, form)
        if not authenticated:
            raise OAuthError("invalid_client", "client credentials need a client secret", 401)
        return self._client_credentials(client, form)

    def client_of(
        self, form: Mapping[str, str], authorization: str | None
    ) -> tuple[OAuthClient, bool]:
        """Return the client making a request and whether it proved itself with a secret."""
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        basic = False
        if authorization and authorization.lower().startswith("basic "):
            if secret is not None:
                raise OAuthError("invalid_request", "use one client authentication method")
            basic = True
            header_id, secret = _basic_credentials(authorization)
            if client_id is not None and client_id != header_id:
                raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
            client_id = header_id
        if not client_id:
            raise OAuthError("invalid_client", "the client is not identified", 401)
        if secret is not None:
            client = self.clients.authenticate(client_id, secret)
            if client is None:
                raise OAuthError("invalid_client", "client authentication failed", 401, basic)
            return client, True
        found = self.clients.get(client_id)
        if found is None:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if not found.public:
            raise OAuthError("invalid_client", "this client must authenticate", 401)
        return found, False

    def _exchange_code(self, client: OAuthClient, form: Mapping[str, str]) -> TokenResponse:
        code = form.get("code")
        redirect_uri = form.get("redirect_uri")
        verifier = form.get("code_verifier")
        if not code or not redirect_uri or not verifier:
            raise OAuthError("invalid_request", "code, redirect_uri and code_verifier are required")
        claimed = self.store.claim_grant(digest(code), "code")
        if claimed is None or claimed.grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code is not valid")
        grant = claimed.grant
        if not claimed.first_use:
            # A code presented twice may have been stolen: end what the first use began.
            self.store.end_grants(client.client_id, grant.user_id, "refresh")
            raise OAuthError("invalid_grant", "the code has been used already")
        if grant.expires < time.time():
            raise OAuthError("invalid_grant", "the code has expired")
        if redirect_uri != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        if not _VERIFIER.match(verifier) or not hmac.compare_digest(
            pkce_challenge(verifier), grant.code_challenge or ""
        ):
            raise OAuthError("invalid_grant", "the code_verifier does not match the code_challenge")
        user = self._active_user(grant.user_id)
        scope = scope_for_role(grant.scope, user)
        return self._issue(client, user, scope, refresh_expires=time.time() + REFRESH_LIFETIME)

    def _refresh(self, client: OAuthClient, form: Mapping[str, str]) -> TokenResponse:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        claimed = self.store.claim_grant(digest(token), "refresh")
        if claimed is None or claimed.grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the refresh token is not valid")
        grant = claimed.grant
        if not claimed.first_use:
            # A refresh token presented twice may have been stolen: whoever holds its
            # successor (the thief or the user) loses it too, and must sign in again.
            self.store.end_grants(client.client_id, grant.user_id, "refresh")
            raise OAuthError("invalid_grant", "the refresh token has been used or revoked")
        if grant.expires < time.time():
            raise OAuthError("invalid_grant", "the refresh token has expired; sign in again")
        user = self._active_user(grant.user_id)
        session_scope = scope_for_role(grant.scope, user)
        scope = session_scope
        if form.get("scope"):
            scope = intersect_scopes(form["scope"], session_scope)
            if not scope:
                raise OAuthError("invalid_scope", "the scope asked for was not granted before")
        # The new refresh token keeps the session's scope and its end (RFC 6749 6).
        return self._issue(
            client, user, scope, refresh_expires=grant.expires, refresh_scope=session_scope
        )

    def _client_credentials(self, client: OAuthClient, form: Mapping[str, str]) -> TokenResponse:
        if client.user_id is None:
            raise OAuthError("unauthorized_client", "this client does not act as an account")
        user = self._active_user(client.user_id)
        if user.role not in SERVICE_ROLES:
            raise OAuthError(
                "unauthorized_client", "client credentials are for systems and devices"
            )
        requested = form.get("scope") or client.scope
        scope = scope_for_role(intersect_scopes(requested, client.scope), user)
        if not scope:
            raise OAuthError("invalid_scope", "none of the scopes asked for can be granted")
        return self._issue(client, user, scope, refresh_expires=None)

    def _active_user(self, user_id: str) -> User:
        user = self.users.by_id(user_id)
        if user is None or user.disabled:
            raise OAuthError("invalid_grant", "the account is disabled")
        return user

    def _issue(
        self,
        client: OAuthClient,
        user: User,
        scope: str,
        *,
        refresh_expires: float | None,
        refresh_scope: str | None = None,
    ) -> TokenResponse:
        if not scope:
            raise OAuthError("invalid_scope", "nothing asked for can be granted to this account")
        access = self.authority.issue(
            user.id,
            user.role,
            scope=scope,
            lifetime=ACCESS_LIFETIME,
            organisation=user.organisation,
            patient_id=user.patient_id,
            device_id=user.device_id,
        )
        refresh = None
        if refresh_expires is not None:
            refresh = secrets.token_urlsafe(32)
            self.store.add_grant(
                OAuthGrant(
                    digest=digest(refresh),
                    kind="refresh",
                    client_id=client.client_id,
                    user_id=user.id,
                    scope=refresh_scope or scope,
                    redirect_uri=None,
                    code_challenge=None,
                    expires=refresh_expires,
                    used=False,
                )
            )
        patient = user.patient_id if user.role == "patient" else None
        return TokenResponse(access, scope, ACCESS_LIFETIME, refresh, patient)

    # revocation endpoint ------------------------------------------------------------

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """End a refresh or access token (RFC 7009); unknown tokens are not an error."""
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        client: OAuthClient | None = None
        if authorization or form.get("client_secret") or form.get("client_id"):
            client, _ = self.client_of(form, authorization)
        if form.get("token_type_hint") != "access_token":
            grant = self.store.grant(digest(token), "refresh")
            if grant is not None:
                if client is not None and grant.client_id != client.client_id:
                    raise OAuthError(
                        "unauthorized_client", "the token was issued to another client"
                    )
                self.store.end_grant(grant.digest)
                return
        if token.count(".") == 2:
            self._revoke_access_token(token)

    def _revoke_access_token(self, token: str) -> None:
        try:
            principal = self.authority.verify(token)
        except TokenError:
            return  # expired, not ours, or revoked already: nothing to do
        if principal.token_id:
            self.revocations.revoke(principal.token_id, principal.expires_at)
            self.authority.forget(principal.token_id)

    # housekeeping --------------------------------------------------------------------

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._purged_at > PURGE_INTERVAL:
            self._purged_at = now
            self.store.purge_expired(time.time())

    # discovery -----------------------------------------------------------------------

    def smart_configuration(self, root: str) -> dict[str, Any]:
        """Return the SMART App Launch configuration for a server reached at root."""
        return {
            "authorization_endpoint": f"{root}/auth/authorize",
            "token_endpoint": f"{root}/auth/token",
            "revocation_endpoint": f"{root}/auth/revoke",
            "grant_types_supported": [AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "scopes_supported": SCOPES_SUPPORTED,
            "capabilities": SMART_CAPABILITIES,
        }


def _basic_credentials(header: str) -> tuple[str, str]:
    """Return (client_id, secret) from an HTTP Basic header (RFC 6749 2.3.1)."""
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise OAuthError(
            "invalid_client", "the Basic credentials are malformed", 401, True
        ) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "the Basic credentials are malformed", 401, True)
    return unquote_plus(client_id), unquote_plus(secret)


def with_query(uri: str, **parameters: str | None) -> str:
    """Return uri with parameters added to its query (keeping any it has)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in parameters.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- HTTP ----------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_FORM_TYPE = "application/x-www-form-urlencoded"

_STYLE = """
body{font-family:Arial,sans-serif;font-size:19px;line-height:1.5;color:#212b32;
background:#f0f4f5;margin:0;padding:16px}
main{max-width:540px;margin:32px auto;background:#fff;padding:24px 32px;border-radius:4px}
h1{font-size:32px;margin:0 0 16px}
label{display:block;font-weight:bold;margin-top:16px}
input{font-size:19px;padding:8px;width:100%;box-sizing:border-box;border:2px solid #4c6272}
input:focus,button:focus{outline:4px solid #ffeb3b;outline-offset:0;box-shadow:0 4px 0 #212b32}
button{font-size:19px;padding:12px 16px;margin:24px 16px 0 0;border:0;border-radius:4px;
cursor:pointer}
.sign-in{background:#007f3b;color:#fff}.cancel{background:#4c6272;color:#fff}
.error{border:4px solid #d5281b;padding:16px;margin-bottom:16px}
.error h2{margin:0 0 8px;font-size:24px}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)} - Bevan</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def sign_in_page(
    request: AuthorizationRequest,
    *,
    username: str = "",
    error: str | None = None,
    status: int | None = None,
) -> HTMLResponse:
    """Return the sign-in form for an authorization request."""
    e = html.escape
    name = e(request.client.name)
    scopes = "".join(f"<li>{e(describe_scope(s))}</li>" for s in request.scope.split())
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in request.parameters.items()
    )
    invalid = ' aria-invalid="true" aria-describedby="sign-in-error"' if error else ""
    problem = (
        '<div class="error" role="alert" id="sign-in-error">'
        f"<h2>There is a problem</h2><p>{e(error)}</p></div>"
        if error
        else ""
    )
    body = f"""<h1>Sign in</h1>
{problem}<p><strong>{name}</strong> is asking to:</p>
<ul>{scopes}</ul>
<form method="post" action="authorize">
{hidden}
<label for="username">Username</label>
<input id="username" name="username" type="text" value="{e(username)}" autocomplete="username"
 autocapitalize="none" spellcheck="false" required{invalid}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required{invalid}>
<button class="sign-in" type="submit" name="action" value="sign-in">Sign in</button>
<button class="cancel" type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</form>"""
    return _page(f"Sign in to {request.client.name}", body, status or (401 if error else 200))


def _untrusted_page(reason: str) -> HTMLResponse:
    body = (
        "<h1>This sign-in link does not work</h1>"
        f"<p>{html.escape(reason)}</p>"
        "<p>Go back to the application and try again. If it keeps happening, tell the "
        "people who run the application.</p>"
    )
    return _page("Sign-in link does not work", body, 400)


def _error_redirect(error: RedirectedError) -> RedirectResponse:
    target = with_query(
        error.redirect_uri,
        error=error.error,
        error_description=error.description,
        state=error.state,
    )
    return RedirectResponse(target, status_code=303, headers=_NO_STORE)


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.basic_challenge:
        headers["WWW-Authenticate"] = 'Basic realm="bevan"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _root_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _form(request: Request) -> tuple[dict[str, str], list[str]]:
    """Return a urlencoded form's fields and the names given more than once."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise OAuthError("invalid_request", f"send the parameters as {_FORM_TYPE}")
    form = await request.form()
    fields: dict[str, str] = {}
    repeated: list[str] = []
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key in fields:
            repeated.append(key)
        fields[key] = value
    return fields, repeated


def oauth_routes(
    authority: TokenAuthority,
    users: UserDirectory,
    clients: ClientRegistry,
    revocations: RevocationList,
    base_url: str,
    server: AuthorizationServer | None = None,
) -> list[Route]:
    """Return the routes for sign-in, tokens, revocation and SMART discovery.

    base_url is this server's FHIR base (e.g. https://bevan.example.nhs.uk/fhir): the
    `aud` SMART applications must name, and the path the FHIR-relative discovery
    document lives under. server, if given, is the authorization server to answer with
    (the web app exchanges its own codes with the same one). Mount these before the
    FHIR routes.
    """
    server = server or AuthorizationServer(authority, users, clients, revocations, base_url)
    base_path = urlsplit(base_url).path.rstrip("/")

    def fhir_base(request: Request) -> str:
        return _root_of(request) + base_path

    async def authorize_form(request: Request) -> Response:
        parameters = dict(request.query_params)
        repeated = [k for k in parameters if len(request.query_params.getlist(k)) > 1]
        try:
            checked = await run_in_threadpool(
                server.authorization_request, parameters, repeated, fhir_base(request)
            )
        except UntrustedRequest as error:
            return _untrusted_page(str(error))
        except RedirectedError as error:
            return _error_redirect(error)
        return sign_in_page(checked)

    async def authorize_submit(request: Request) -> Response:
        try:
            fields, repeated = await _form(request)
        except OAuthError as error:
            return _untrusted_page(error.description)
        try:
            checked = await run_in_threadpool(
                server.authorization_request, fields, repeated, fhir_base(request)
            )
            if fields.get("action") == "cancel":
                raise RedirectedError(
                    checked.redirect_uri, checked.state, "access_denied", "the user cancelled"
                )
            username = fields.get("username", "")
            address = request.client.host if request.client else None
            redirect = await run_in_threadpool(
                server.sign_in, checked, username, fields.get("password", ""), address
            )
        except UntrustedRequest as error:
            return _untrusted_page(str(error))
        except RedirectedError as error:
            return _error_redirect(error)
        except Throttled as error:
            page = sign_in_page(checked, username=username, error=str(error), status=429)
            page.headers["Retry-After"] = str(error.retry_after)
            return page
        if redirect is None:
            page = sign_in_page(
                checked,
                username=username,
                error="The username or password is not right, or the account cannot sign in here.",
            )
            return page
        return RedirectResponse(redirect, status_code=303, headers=_NO_STORE)

    async def token(request: Request) -> Response:
        try:
            fields, repeated = await _form(request)
            if repeated:
                raise OAuthError("invalid_request", f"parameters given more than once: {repeated}")
            issued = await run_in_threadpool(
                server.token, fields, request.headers.get("authorization")
            )
        except OAuthError as error:
            return _oauth_error(error)
        return JSONResponse(issued.json(), headers=_NO_STORE)

    async def revoke(request: Request) -> Response:
        try:
            fields, _ = await _form(request)
            await run_in_threadpool(server.revoke, fields, request.headers.get("authorization"))
        except OAuthError as error:
            return _oauth_error(error)
        return Response(status_code=200, headers=_NO_STORE)

    async def smart_configuration(request: Request) -> Response:
        return JSONResponse(
            server.smart_configuration(_root_of(request)),
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return [
        Route("/auth/authorize", authorize_form, methods=["GET"]),
        Route("/auth/authorize", authorize_submit, methods=["POST"]),
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/revoke", revoke, methods=["POST"]),
        Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route(f"{base_path}/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
    ]
