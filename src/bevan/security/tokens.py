"""Bearer tokens: JWTs signed with the server's Ed25519 key, kept in the data directory.

PyJWT does the signing and checking (no hand-written cryptography). Verified tokens are
cached by their text until they expire, so a busy client pays for one signature check.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROLES = (
    "system",
    "clinician",
    "nurse",
    "receptionist",
    "analyst",
    "privacy-officer",
    "patient",
    "device",
)
AUDIENCE = "bevan-fhir"
ISSUER = "bevan"
KEY_FILE = "signing-key.pem"
DEFAULT_LIFETIME = 24 * 3600


class TokenError(Exception):
    """The token is missing, malformed, expired, or not ours; the text says which."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token says is asking."""

    subject: str
    role: str
    scope: str
    expires_at: float
    organisation: str | None = None  # ODS code of the user's organisation
    patient_id: str | None = None  # for patients (and devices): whose record
    device_id: str | None = None
    token_id: str | None = None  # jti, for revocation


class TokenAuthority:
    """Issues and verifies the server's bearer tokens."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        revoked: Callable[[str], bool] | None = None,
        disabled: Callable[[str], bool] | None = None,
    ) -> None:
        self._private = private_key
        # Asked for each newly seen token's jti: True means revoked.
        self.revoked: Callable[[str], bool] = revoked or (lambda jti: False)
        # Asked on every request with the token's subject: True means the account is
        # disabled, and its tokens stop working at once.
        self.disabled: Callable[[str], bool] = disabled or (lambda subject: False)
        self._public: Ed25519PublicKey = private_key.public_key()
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def in_directory(
        cls,
        data_dir: Path,
        revoked: Callable[[str], bool] | None = None,
        disabled: Callable[[str], bool] | None = None,
    ) -> TokenAuthority:
        """Load the key from data_dir, creating it (readable by its owner only) if absent.

        revoked, if given, is asked whether a token's jti has been revoked; disabled,
        whether the account a token names has been disabled.
        """
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            # Written aside under a name of its own, then linked into place: workers
            # and threads starting together each make a key, the first link wins, and
            # no one reads a key half written.
            descriptor, name = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=data_dir)
            written = Path(name)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            try:
                os.link(written, path)
            except FileExistsError:
                pass  # another process's key is in place: use it
            finally:
                written.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise TokenError(f"{path} does not hold an Ed25519 private key")
        return cls(loaded, revoked, disabled)

    def issue(
        self,
        subject: str,
        role: str,
        *,
        scope: str | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        organisation: str | None = None,
        patient_id: str | None = None,
        device_id: str | None = None,
    ) -> str:
        """Return a signed access token for subject acting in role."""
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "role": role,
            "scope": scope or ("system/*.*" if role == "system" else "user/*.*"),
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        for claim, value in (("org", organisation), ("patient", patient_id), ("device", device_id)):
            if value is not None:
                claims[claim] = value
        return jwt.encode(claims, self._private, algorithm="EdDSA")

    def forget(self, token_id: str) -> None:
        """Drop cached verifications of a token (after it is revoked)."""
        with self._lock:
            for text in [t for t, p in self._cache.items() if p.token_id == token_id]:
                del self._cache[text]

    def verify(self, token: str) -> Principal:
        """Return the principal a token names; TokenError says why it is refused."""
        now = time.time()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at <= now:
                raise TokenError("the token has expired")
            if cached.token_id is not None and self.revoked(cached.token_id):
                raise TokenError("the token has been revoked")
            if self.disabled(cached.subject):
                raise TokenError("the account has been disabled")
            return cached
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token is for another audience") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not this server's") from None
        except jwt.PyJWTError as error:
            raise TokenError(f"the token is not valid: {error}") from None
        role = claims.get("role")
        if role not in ROLES:
            raise TokenError(f"the token's role {role!r} is not one Bevan knows")
        jti = claims.get("jti")
        if jti is not None and self.revoked(str(jti)):
            raise TokenError("the token has been revoked")
        if self.disabled(str(claims["sub"])):
            raise TokenError("the account has been disabled")
        principal = Principal(
            claims["sub"],
            role,
            str(claims.get("scope", "")),
            float(claims["exp"]),
            organisation=claims.get("org"),
            patient_id=claims.get("patient"),
            device_id=claims.get("device"),
            token_id=jti,
        )
        with self._lock:
            self._cache[token] = principal
            if len(self._cache) > 10_000:
                self._cache.popitem(last=False)
        return principal
