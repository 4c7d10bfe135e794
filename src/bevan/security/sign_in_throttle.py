"""Slowing down password guessing: failed sign-ins are counted per account and per client
address, and past a limit within a window further attempts are refused for a while.

The answer when throttled is the same whether or not the account exists (the account
subject is the username as typed, normalised), and a throttled attempt is refused before
its password is checked, so a right password then reveals nothing either. Throttled
attempts are not counted as failures, so an attacker cannot keep an account locked out
past the window by hammering it. An address may fail more often than an account, since
many people can share one (a hospital's network). A successful sign-in clears the
account's failures, not the address's.
"""

from __future__ import annotations

import math
import time

from bevan.security.users import normalise_username
from bevan.store.sign_in_failures import SignInFailures

WINDOW_SECONDS = 15 * 60
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 30
PURGE_INTERVAL = 600


class Throttled(Exception):
    """Too many failed sign-ins: try again after retry_after seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(
            "There have been too many failed sign-ins for this account or from this network "
            f"address. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )


class SignInThrottle:
    """Counts failed sign-ins and refuses attempts past the limits."""

    def __init__(
        self,
        failures: SignInFailures,
        *,
        window: float = WINDOW_SECONDS,
        account_limit: int = ACCOUNT_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
    ) -> None:
        self.failures = failures
        self.window = window
        self.limits = {"account": account_limit, "address": address_limit}
        self._purged_at = float("-inf")

    def _subjects(self, username: str, address: str | None) -> list[tuple[str, str]]:
        subjects = [("account", f"account:{normalise_username(username)}")]
        if address:
            subjects.append(("address", f"address:{address}"))
        return subjects

    def check(self, username: str, address: str | None) -> None:
        """Raise Throttled if this account or address has failed too often of late."""
        now = time.time()
        wait = 0.0
        for kind, subject in self._subjects(username, address):
            count, earliest = self.failures.since(subject, now - self.window)
            if count >= self.limits[kind] and earliest is not None:
                wait = max(wait, earliest + self.window - now)
        if wait > 0:
            raise Throttled(max(1, math.ceil(wait)))

    def failed(self, username: str, address: str | None) -> None:
        """Count one failed sign-in against the account and the address."""
        now = time.time()
        self.failures.add((s for _, s in self._subjects(username, address)), now)
        if time.monotonic() - self._purged_at > PURGE_INTERVAL:
            self._purged_at = time.monotonic()
            self.failures.purge(now - self.window)

    def succeeded(self, username: str) -> None:
        """Clear the account's failures after a successful sign-in."""
        self.failures.clear(f"account:{normalise_username(username)}")
