"""Revoked access tokens: "is this token revoked?" answered from memory on every request."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from bevan.store.identity import IdentityStore


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
