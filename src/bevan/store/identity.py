"""Identity tables: user accounts, OAuth clients, OAuth grants and revoked tokens.

Instants are kept as fixed-width UTC strings (`2024-05-01T09:30:00.000Z`), so comparing
them as text orders them in time on both engines. Callers pass and receive epoch
seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bevan.store.schema import oauth_client, oauth_grant, revoked_token, user_account


class UsernameTaken(Exception):
    """Another account already has this username."""


class ClientIdTaken(Exception):
    """Another OAuth client already has this client_id."""


def instant(epoch: float) -> str:
    """Return epoch seconds as the fixed-width UTC text the identity tables store."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch(text: str) -> float:
    """Return the epoch seconds of an instant stored by `instant`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class UserAccount:
    """One row of user_account."""

    id: str
    username: str
    password_hash: str | None
    role: str
    organisation: str | None
    patient_id: str | None
    device_id: str | None
    display_name: str | None
    disabled: bool
    created: float


@dataclass(frozen=True)
class OAuthClient:
    """One row of oauth_client: an application allowed to ask for tokens."""

    client_id: str
    secret_hash: str | None  # None for a public client (it proves itself with PKCE)
    name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scope: str  # the most this client may ask for
    user_id: str | None  # the account a client-credentials token acts as
    disabled: bool
    created: float

    @property
    def public(self) -> bool:
        return self.secret_hash is None


@dataclass(frozen=True)
class OAuthGrant:
    """One row of oauth_grant: an authorization code or a refresh token, by its digest."""

    digest: str
    kind: str  # code | refresh
    client_id: str
    user_id: str
    scope: str
    redirect_uri: str | None
    code_challenge: str | None
    expires: float
    used: bool


@dataclass(frozen=True)
class ClaimedGrant:
    """A grant presented for use: `first_use` is False when it had been used before."""

    grant: OAuthGrant
    first_use: bool


def _user(row: Any) -> UserAccount:
    return UserAccount(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        organisation=row.organisation,
        patient_id=row.patient_id,
        device_id=row.device_id,
        display_name=row.display_name,
        disabled=bool(row.disabled),
        created=epoch(row.created),
    )


def _client(row: Any) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id,
        secret_hash=row.secret_hash,
        name=row.name,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        grant_types=tuple(json.loads(row.grant_types)),
        scope=row.scope,
        user_id=row.user_id,
        disabled=bool(row.disabled),
        created=epoch(row.created),
    )


def _grant(row: Any) -> OAuthGrant:
    return OAuthGrant(
        digest=row.digest,
        kind=row.kind,
        client_id=row.client_id,
        user_id=row.user_id,
        scope=row.scope,
        redirect_uri=row.redirect_uri,
        code_challenge=row.code_challenge,
        expires=epoch(row.expires),
        used=bool(row.used),
    )


class IdentityStore:
    """All SQL about who may sign in, which applications may ask, and what was granted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        # bevan_write makes SQLite take its write lock at BEGIN (see store.engine).
        with (
            self.engine.connect().execution_options(bevan_write=True) as connection,
            connection.begin(),
        ):
            yield connection

    # --- user accounts -----------------------------------------------------------------

    def add_user(self, account: UserAccount) -> None:
        """Insert an account; UsernameTaken if its username is in use."""
        try:
            with self._writing() as connection:
                connection.execute(
                    insert(user_account).values(
                        id=account.id,
                        username=account.username,
                        password_hash=account.password_hash,
                        role=account.role,
                        organisation=account.organisation,
                        patient_id=account.patient_id,
                        device_id=account.device_id,
                        display_name=account.display_name,
                        disabled=account.disabled,
                        created=instant(account.created),
                    )
                )
        except IntegrityError:
            raise UsernameTaken(account.username) from None

    def user_by_username(self, username: str) -> UserAccount | None:
        with self._reading() as connection:
            row = connection.execute(
                select(user_account).where(user_account.c.username == username)
            ).first()
        return _user(row) if row else None

    def user_by_id(self, user_id: str) -> UserAccount | None:
        with self._reading() as connection:
            row = connection.execute(
                select(user_account).where(user_account.c.id == user_id)
            ).first()
        return _user(row) if row else None

    def users(self) -> list[UserAccount]:
        """Return every account, by username."""
        with self._reading() as connection:
            rows = connection.execute(select(user_account).order_by(user_account.c.username))
            return [_user(row) for row in rows]

    def set_user_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable) an account; False if there is no such username."""
        with self._writing() as connection:
            result = connection.execute(
                update(user_account)
                .where(user_account.c.username == username)
                .values(disabled=disabled)
            )
        return result.rowcount == 1

    def disabled_user_ids(self) -> set[str]:
        """Return the ids of every disabled account."""
        with self._reading() as connection:
            rows = connection.execute(
                select(user_account.c.id).where(user_account.c.disabled.is_(True))
            )
            return {row.id for row in rows}

    def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        with self._writing() as connection:
            connection.execute(
                update(user_account)
                .where(user_account.c.id == user_id)
                .values(password_hash=password_hash)
            )

    # --- OAuth clients -----------------------------------------------------------------

    def add_client(self, client: OAuthClient) -> None:
        """Insert a client; ClientIdTaken if its client_id is in use."""
        try:
            with self._writing() as connection:
                connection.execute(
                    insert(oauth_client).values(
                        client_id=client.client_id,
                        secret_hash=client.secret_hash,
                        name=client.name,
                        redirect_uris=json.dumps(list(client.redirect_uris)),
                        grant_types=json.dumps(list(client.grant_types)),
                        scope=client.scope,
                        user_id=client.user_id,
                        disabled=client.disabled,
                        created=instant(client.created),
                    )
                )
        except IntegrityError:
            raise ClientIdTaken(client.client_id) from None

    def client(self, client_id: str) -> OAuthClient | None:
        with self._reading() as connection:
            row = connection.execute(
                select(oauth_client).where(oauth_client.c.client_id == client_id)
            ).first()
        return _client(row) if row else None

    def clients(self) -> list[OAuthClient]:
        """Return every client, by name."""
        with self._reading() as connection:
            rows = connection.execute(
                select(oauth_client).order_by(oauth_client.c.name, oauth_client.c.client_id)
            )
            return [_client(row) for row in rows]

    def set_client_disabled(self, client_id: str, disabled: bool) -> bool:
        with self._writing() as connection:
            result = connection.execute(
                update(oauth_client)
                .where(oauth_client.c.client_id == client_id)
                .values(disabled=disabled)
            )
        return result.rowcount == 1

    # --- grants: authorization codes and refresh tokens ---------------------------------

    def add_grant(self, grant: OAuthGrant) -> None:
        with self._writing() as connection:
            connection.execute(
                insert(oauth_grant).values(
                    digest=grant.digest,
                    kind=grant.kind,
                    client_id=grant.client_id,
                    user_id=grant.user_id,
                    scope=grant.scope,
                    redirect_uri=grant.redirect_uri,
                    code_challenge=grant.code_challenge,
                    expires=instant(grant.expires),
                    used=grant.used,
                )
            )

    def claim_grant(self, digest: str, kind: str) -> ClaimedGrant | None:
        """Mark a grant used and return it; None if there is no such grant.

        Exactly one caller sees `first_use` True, however many present the grant at once:
        the update only matches while the row is still unused.
        """
        with self._writing() as connection:
            claimed = connection.execute(
                update(oauth_grant)
                .where(
                    oauth_grant.c.digest == digest,
                    oauth_grant.c.kind == kind,
                    oauth_grant.c.used.is_(False),
                )
                .values(used=True)
                .returning(*oauth_grant.c)
            ).first()
            if claimed is not None:
                return ClaimedGrant(_grant(claimed), first_use=True)
            row = connection.execute(
                select(oauth_grant).where(
                    oauth_grant.c.digest == digest, oauth_grant.c.kind == kind
                )
            ).first()
        return ClaimedGrant(_grant(row), first_use=False) if row else None

    def end_grants(self, client_id: str, user_id: str, kind: str) -> int:
        """Mark every live grant of a kind for this client and user used; return how many."""
        with self._writing() as connection:
            result = connection.execute(
                update(oauth_grant)
                .where(
                    oauth_grant.c.client_id == client_id,
                    oauth_grant.c.user_id == user_id,
                    oauth_grant.c.kind == kind,
                    oauth_grant.c.used.is_(False),
                )
                .values(used=True)
            )
        return int(result.rowcount)

    def grant(self, digest: str, kind: str) -> OAuthGrant | None:
        with self._reading() as connection:
            row = connection.execute(
                select(oauth_grant).where(
                    oauth_grant.c.digest == digest, oauth_grant.c.kind == kind
                )
            ).first()
        return _grant(row) if row else None

    def end_grant(self, digest: str) -> None:
        """Mark one grant used, so it can no longer be exchanged."""
        with self._writing() as connection:
            connection.execute(
                update(oauth_grant).where(oauth_grant.c.digest == digest).values(used=True)
            )

    # --- revoked access tokens ---------------------------------------------------------

    def revoke_token(self, jti: str, expires: float) -> None:
        """Record an access token's jti as revoked until it would have expired anyway."""
        try:
            with self._writing() as connection:
                connection.execute(insert(revoked_token).values(jti=jti, expires=instant(expires)))
        except IntegrityError:
            pass  # revoked already: revocation is idempotent

    def is_token_revoked(self, jti: str) -> bool:
        with self._reading() as connection:
            row = connection.execute(
                select(revoked_token.c.jti).where(revoked_token.c.jti == jti)
            ).first()
        return row is not None

    def revoked_tokens(self, now: float) -> set[str]:
        """Return the jti of every revoked token that has not yet expired."""
        with self._reading() as connection:
            rows = connection.execute(
                select(revoked_token.c.jti).where(revoked_token.c.expires > instant(now))
            )
            return {row.jti for row in rows}

    def purge_expired(self, now: float) -> None:
        """Delete grants and revocations that have expired: they can no longer matter."""
        cutoff = instant(now)
        with self._writing() as connection:
            connection.execute(delete(oauth_grant).where(oauth_grant.c.expires < cutoff))
            connection.execute(delete(revoked_token).where(revoked_token.c.expires < cutoff))
