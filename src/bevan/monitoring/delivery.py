"""Delivery of subscriptions: a background thread of the app follows the record's change
feed, finds which changed resources each subscription's criteria match, and tells its
channel, off the write path (a write never waits for a subscriber).

- Matching is the store's own search: a subscription's criteria, ANDed with `_id` of
  the resources of its type that changed, limited as its owner's search would be; each
  match is then judged as a read by the owner (`DeliveryAccess`, which the app factory
  builds from security/). Deleted resources match nothing.
- rest-hook: first the handshake, a POST to the endpoint with an empty body and the
  header `X-Bevan-Notification: handshake`; a 2xx answer makes the subscription
  active. Then each match: with payload `application/fhir+json`, a PUT of the resource
  to `[endpoint]/[type]/[id]` (as R4 describes); without, a POST to the endpoint with
  an empty body naming the resource in `X-Bevan-Resource` (id only). Every call carries
  `X-Bevan-Subscription: [id]` and the channel's own headers. A failed call is tried
  again after retry_seconds, doubling each time; after `attempts` failures in a row the
  subscription is marked status error with the reason, and what it held is dropped.
  Calls for one subscription go one at a time, in order; different ones in parallel.
- websocket: each socket bound to a subscription (api/subscription_websocket.py) is
  sent `ping [id]` for every match, as R4 describes.
- With several worker processes, exactly one delivers rest-hooks: the one holding the
  delivery lock (a PostgreSQL advisory lock, or an advisory lock on the file
  `<database>-subscriptions` beside a SQLite database); the others try to take it over
  every LEADER_RETRY_SECONDS. A websocket is served by the process holding it, which
  follows the feed only while it holds one.
- The feed is followed from the moment delivery starts: changes made while no process
  was delivering are not sent afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx
import orjson

from bevan.fhir.errors import FhirError
from bevan.fhir.search import IdMatch, SearchQuery
from bevan.monitoring.subscriptions import Subscription, SubscriptionService
from bevan.records.service import RecordService
from bevan.store.changes import Change, ChangeFeed, ChangeFollower
from bevan.store.subscriptions import DeliveryLock, SubscriptionOwner

log = logging.getLogger("bevan.subscriptions")

# How often the feed is read while there is anything to deliver to: well inside the
# one second a notification may take (benchmarks/subscriptions.py measures it).
POLL_SECONDS = 0.05
# How often the subscriptions themselves are read again (new ones, changed, removed).
RELOAD_SECONDS = 1.0
LEADER_RETRY_SECONDS = 2.0
# The most changed resources of one type matched in one search.
IDS_PER_SEARCH = 100
CALL_TIMEOUT_SECONDS = 5.0
SENDING_THREADS = 4


class DeliveryAccess(Protocol):
    """The access decision, as delivery asks it (security/subscriber_access.py)."""

    def refusal(self, owner: SubscriptionOwner) -> str | None: ...

    def visible(self, owner: SubscriptionOwner, query: SearchQuery) -> SearchQuery: ...

    def may_read(self, owner: SubscriptionOwner, resource: dict[str, Any]) -> bool: ...

    def disclosing(self, disclosures: list[Disclosure]) -> None: ...


@dataclass(frozen=True)
class Disclosure:
    """A resource about to be sent to a subscriber: audited as its owner's read."""

    owner: SubscriptionOwner
    subscription_id: str
    resource: dict[str, Any]
    channel: str  # rest-hook | websocket
    where: str  # the endpoint, or the websocket's subscription


@dataclass(frozen=True, eq=False)
class Notification:
    """One call to make: a handshake (resource None) or a match."""

    resource_type: str | None = None
    id: str | None = None
    content: str | None = None


HANDSHAKE = Notification()


@dataclass
class RestHook:
    """One rest-hook subscription's calls: queued, in flight, and failing."""

    subscription: Subscription
    queue: deque[Notification] = field(default_factory=deque)
    sending: bool = False
    failures: int = 0
    next_try: float = 0.0
    handshake_version: int | None = None
    head_audited: bool = False  # the first queued notification's disclosure is audited


Sink = Callable[[str], None]


class SubscriptionDelivery:
    """Follows the record and delivers each subscription's matches (see the module
    docstring); start() and stop() it with the app."""

    def __init__(
        self,
        subscriptions: SubscriptionService,
        records: RecordService,
        access: DeliveryAccess,
        *,
        retry_seconds: float = 1.0,
        attempts: int = 6,
    ) -> None:
        self.subscriptions = subscriptions
        self.records = records
        self.access = access
        self.retry_seconds = retry_seconds
        self.attempts = attempts
        self.feed = ChangeFeed(records.store.engine)
        self.lock = DeliveryLock(records.store.engine)
        self._follower: ChangeFollower | None = None
        self._hooks: dict[str, RestHook] = {}
        self._live: list[Subscription] = []
        self._sinks: dict[str, set[Sink]] = {}
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._reloaded = 0.0
        self._lock_tried = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the record (once; again after stop())."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._client = httpx.Client(timeout=CALL_TIMEOUT_SECONDS, follow_redirects=False)
        self._sender = ThreadPoolExecutor(SENDING_THREADS, thread_name_prefix="bevan-hooks")
        self._thread = threading.Thread(target=self._run, name="bevan-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sender is not None:
            self._sender.shutdown(wait=True, cancel_futures=True)
            self._sender = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self.lock.release()

    def changed(self) -> None:
        """Read the subscriptions again now (one was created, changed or removed here)."""
        self._reloaded = 0.0
        self._wake.set()

    # --- websockets -----------------------------------------------------------------------

    def bind(self, subscription_id: str, sink: Sink) -> None:
        """Send sink `ping [id]` for each match of this subscription (a bound websocket)."""
        with self._mutex:
            self._sinks.setdefault(subscription_id, set()).add(sink)
        self.changed()

    def unbind(self, subscription_id: str, sink: Sink) -> None:
        with self._mutex:
            sinks = self._sinks.get(subscription_id)
            if sinks is not None:
                sinks.discard(sink)
                if not sinks:
                    del self._sinks[subscription_id]

    # --- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # the loop must outlive a failed poll; it is logged
                log.exception("subscription delivery failed; trying again")
                self._stopping.wait(1.0)
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _step(self) -> None:
        now = time.monotonic()
        if not self.lock.held and now - self._lock_tried >= LEADER_RETRY_SECONDS:
            self._lock_tried = now
            self.lock.try_take()
        leading = self.lock.held
        with self._mutex:
            bound = set(self._sinks)
        if not leading and not bound:
            self._follower = None  # nothing to deliver here: start afresh when there is
            return
        if self._follower is None:
            self._follower = ChangeFollower.from_now(self.feed)
        if now - self._reloaded >= RELOAD_SECONDS:
            self._reloaded = now
            self._reload(leading)
        changes = self._follower.poll()
        served = [
            s
            for s in self._live
            if (s.channel == "rest-hook" and leading)
            or (s.channel == "websocket" and s.id in bound)
        ]
        if changes and served:
            self._match(changes, served)
        if leading:
            self._send_due()

    def _reload(self, leading: bool) -> None:
        """Read the live subscriptions; queue a handshake for each newly requested one."""
        self._live = self.subscriptions.live()
        if not leading:
            return
        hooks: dict[str, RestHook] = {}
        for subscription in self._live:
            if subscription.channel != "rest-hook":
                continue
            hook = self._hooks.get(subscription.id) or RestHook(subscription)
            if hook.subscription.version_id != subscription.version_id and (
                subscription.status == "requested"
            ):
                hook = RestHook(subscription)  # changed by its owner: start over
            hook.subscription = subscription
            if subscription.status == "requested" and hook.handshake_version is None:
                hook.handshake_version = subscription.version_id
                hook.queue.appendleft(HANDSHAKE)
            hooks[subscription.id] = hook
        with self._mutex:
            self._hooks = hooks

    def _match(self, changes: list[Change], served: list[Subscription]) -> None:
        """Queue each served subscription's matches among the changed resources (and
        ping the websockets bound here, once their disclosures are audited)."""
        by_type: dict[str, dict[str, None]] = {}
        for change in changes:
            if not change.deleted:
                by_type.setdefault(change.resource_type, {})[change.id] = None
        pings: list[tuple[Subscription, Notification]] = []
        for subscription in served:
            ids = list(by_type.get(subscription.resource_type, ()))
            if not ids:
                continue
            refusal = self.access.refusal(subscription.owner)
            if refusal is not None:
                self._fail(subscription, refusal)
                continue
            for start in range(0, len(ids), IDS_PER_SEARCH):
                chunk = tuple(ids[start : start + IDS_PER_SEARCH])
                try:
                    found = self._matches(subscription, chunk)
                except FhirError as refused:
                    reason = "; ".join(issue.diagnostics for issue in refused.issues)
                    self._fail(subscription, f"the subscriber may not run its criteria: {reason}")
                    break
                for resource_type, id, content in found:
                    notification = Notification(resource_type, id, content)
                    if subscription.channel == "websocket":
                        pings.append((subscription, notification))
                    else:
                        with self._mutex:
                            hook = self._hooks.get(subscription.id)
                            if hook is not None:
                                hook.queue.append(notification)
        if pings:
            self._ping(pings)

    def _matches(
        self, subscription: Subscription, ids: tuple[str, ...]
    ) -> list[tuple[str, str, str]]:
        """Return (type, id, content) of the resources among ids that the subscription's
        criteria match and its owner may read."""
        query = replace(
            subscription.query.with_criteria(IdMatch(ids)), count=len(ids), total="none"
        )
        page = self.records.search(self.access.visible(subscription.owner, query))
        out = []
        for stored in page.matches:
            if stored.content is None:
                continue
            if self.access.may_read(subscription.owner, orjson.loads(stored.content)):
                out.append((stored.resource_type, stored.id, stored.content))
        return out

    def _ping(self, pings: list[tuple[Subscription, Notification]]) -> None:
        """Ping the websockets bound to each subscription, once for each match."""
        sent: list[tuple[list[Sink], str]] = []
        disclosures = []
        for subscription, notification in pings:
            with self._mutex:
                sinks = list(self._sinks.get(subscription.id, ()))
            if not sinks or notification.content is None:
                continue
            sent.append((sinks, f"ping {subscription.id}"))
            disclosures.append(
                Disclosure(
                    subscription.owner,
                    subscription.id,
                    orjson.loads(notification.content),
                    "websocket",
                    f"{subscription.id}",
                )
            )
        if disclosures:
            self.access.disclosing(disclosures)
        for sinks, text in sent:
            for sink in sinks:
                sink(text)

    # --- rest-hook calls ------------------------------------------------------------------

    def _send_due(self) -> None:
        """Start the next call of each rest-hook that is due, after auditing, in one
        entry batch, the disclosures they are about to make."""
        now = time.monotonic()
        with self._mutex:
            due = [
                hook
                for hook in self._hooks.values()
                if hook.queue and not hook.sending and hook.next_try <= now
            ]
            for hook in due:
                hook.sending = True
            unaudited = [
                (hook, hook.queue[0])
                for hook in due
                if not hook.head_audited and hook.queue[0].content is not None
            ]
        if unaudited:
            self.access.disclosing(
                [
                    Disclosure(
                        hook.subscription.owner,
                        hook.subscription.id,
                        orjson.loads(notification.content or "{}"),
                        "rest-hook",
                        hook.subscription.endpoint or "",
                    )
                    for hook, notification in unaudited
                ]
            )
            with self._mutex:
                for hook, _ in unaudited:
                    hook.head_audited = True
        for hook in due:
            assert self._sender is not None
            self._sender.submit(self._send, hook, hook.queue[0])

    def _send(self, hook: RestHook, notification: Notification) -> None:
        subscription = hook.subscription
        try:
            problem = self._call(subscription, notification)
        except Exception as error:  # any failure to call is the endpoint's failure
            problem = f"{type(error).__name__}: {error}"
        marked: tuple[str, str | None] | None = None
        with self._mutex:
            hook.sending = False
            if problem is None:
                if hook.queue and hook.queue[0] is notification:
                    hook.queue.popleft()
                    hook.head_audited = False
                hook.failures = 0
                hook.next_try = 0.0
                if notification is HANDSHAKE:
                    marked = ("active", None)
            else:
                hook.failures += 1
                hook.next_try = time.monotonic() + self.retry_seconds * 2 ** (hook.failures - 1)
                if hook.failures >= self.attempts:
                    hook.queue.clear()
                    hook.head_audited = False
                    what = "handshake" if notification is HANDSHAKE else "notification"
                    marked = (
                        "error",
                        f"the endpoint failed {hook.failures} times in a row; the last "
                        f"{what} failed with {problem}",
                    )
                    self._hooks.pop(subscription.id, None)
        if marked is not None:
            status, reason = marked
            if status == "active":
                version = hook.handshake_version or subscription.version_id
            else:
                version = self._current_version(subscription)
            self.subscriptions.mark(subscription.id, version, status, reason)
            self.changed()
        self._wake.set()

    def _current_version(self, subscription: Subscription) -> int:
        stored = self.subscriptions.table.get(subscription.id)
        return stored.version_id if stored is not None else subscription.version_id

    def _call(self, subscription: Subscription, notification: Notification) -> str | None:
        """Make one call; return None if the endpoint took it, else what went wrong."""
        assert self._client is not None and subscription.endpoint is not None
        headers = dict(subscription.headers)
        headers["X-Bevan-Subscription"] = subscription.id
        endpoint = subscription.endpoint
        if notification is HANDSHAKE:
            headers["X-Bevan-Notification"] = "handshake"
            method, url, body = "POST", endpoint, b""
        elif subscription.full_payload:
            headers["X-Bevan-Notification"] = "notification"
            headers["Content-Type"] = "application/fhir+json"
            method = "PUT"
            url = f"{endpoint.rstrip('/')}/{notification.resource_type}/{notification.id}"
            body = (notification.content or "").encode()
        else:
            headers["X-Bevan-Notification"] = "notification"
            headers["X-Bevan-Resource"] = f"{notification.resource_type}/{notification.id}"
            method, url, body = "POST", endpoint, b""
        response = self._client.request(method, url, content=body, headers=headers)
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code} from {url}"
        return None

    def _fail(self, subscription: Subscription, reason: str) -> None:
        """Mark a subscription error, with why, and drop what it held."""
        with self._mutex:
            self._hooks.pop(subscription.id, None)
        self._live = [s for s in self._live if s.id != subscription.id]
        self.subscriptions.mark(subscription.id, subscription.version_id, "error", reason)
