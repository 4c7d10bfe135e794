"""Whether a token's account has been disabled, asked on every request.

Disabling an account (`bevan user disable`, possibly in another process) must stop the
access tokens it already holds, not only its next sign-in. The disabled accounts are
read from the database every `refresh_seconds`, so asking costs a set lookup and a
disabled account's tokens stop working within that time on every worker.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from bevan.store.identity import IdentityStore

REFRESH_SECONDS = 2.0


class DisabledAccounts:
    """Answers "is this account disabled?" from memory, reloaded every few seconds."""

    def __init__(self, store: IdentityStore, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._disabled: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def on(cls, engine: Engine) -> DisabledAccounts:
        return cls(IdentityStore(engine))

    def is_disabled(self, user_id: str) -> bool:
        """Return True if user_id is the id of a disabled account."""
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            self._reload()
        return user_id in self._disabled

    def _reload(self) -> None:
        # One thread reloads; the others answer from the set they have.
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._disabled = frozenset(self.store.disabled_user_ids())
            self._loaded_at = time.monotonic()
        finally:
            self._lock.release()
