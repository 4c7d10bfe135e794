"""The OAuth 2.0 and SMART App Launch flows, independent of HTTP: authorization codes
with PKCE, tokens, refresh, client credentials and revocation.

- An authorization request is checked, the user's password is checked, and the browser
  is sent back to the application with a one-time code (RFC 6749 4.1, PKCE S256 only,
  RFC 7636).
- A code, a refresh token or a confidential client's credentials are exchanged for a
  short-lived access token (a JWT from `TokenAuthority`). Refresh tokens rotate: each is
  good for one exchange, and one presented again ends every refresh token of that user
  and client (it may have been stolen). Codes and refresh tokens are stored only as
  SHA-256 digests.
- Failed sign-ins are counted per account and per client address; past the limits a
  sign-in is refused for a while (`sign_in_throttle`).
- A refresh token or an access token can be ended (RFC 7009).

Granted scope is the intersection of what was asked for, what the client may ask for,
and what the user's role allows (`ROLE_SCOPES`). The HTTP side (pages and routes) is
`api/oauth.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from bevan.security.oauth_clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    REFRESH_TOKEN,
    ClientRegistry,
)
from bevan.security.revocation import RevocationList
from bevan.security.scopes import SCOPES_SUPPORTED, intersect_scopes, scope_for_role
from bevan.security.sign_in_throttle import SignInThrottle
from bevan.security.tokens import TokenAuthority, TokenError
from bevan.security.users import SERVICE_ROLES, User, UserDirectory
from bevan.store.identity import OAuthClient, OAuthGrant
from bevan.store.sign_in_failures import SignInFailures

ACCESS_LIFETIME = 15 * 60
REFRESH_LIFETIME = 8 * 3600  # a signed-in session lasts a working shift at most
CODE_LIFETIME = 60
PURGE_INTERVAL = 600

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
