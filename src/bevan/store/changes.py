"""The change feed: every version written to the record, in the order of its sequence
number, for the services that follow the record (subscriptions, and later analytics and
exports) without scanning whole tables.

`resource_version.seq` is the change sequence (store/schema.py): each version written
gets the next number. A follower asks for the changes after the last number it has
seen. Two things make "after the last number" not quite enough:

- On PostgreSQL the numbers come from a sequence, handed out when a row is inserted but
  visible only when its transaction commits. Transactions commit in any order, so a
  reader can see seq 11 while seq 10 is still in an open transaction; a follower that
  moved on to "after 11" would never see 10. Numbers of transactions that rolled back
  are never seen at all.
- On SQLite one writer holds the database at a time and commits in the order it took
  its numbers, so a number missing below a visible one is a rollback's and is never
  coming.

`ChangeFollower` therefore keeps a watermark (every change at or below it was given
out) and remembers each missing number above it (a *gap*). It reads new changes from
the highest number it has read (never re-reading what it gave out), and on each poll
asks again for the gaps: one that has appeared is given out then (late, and so out of
order). A gap is forgotten only when it can only have rolled back: at least
GAP_SETTLE_SECONDS after it was missed (an INSERT takes its number a moment before its
transaction has an id), the follower notes the transactions then running on this
database (its *suspects*, which include the one holding the number if it is still
open); once none of them is running, a read made after that would see the number had
its transaction committed. On SQLite a gap is a rollback's at once. Each change is
given out exactly once by one follower.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, bindparam, func, select

from bevan.store.engine import is_sqlite
from bevan.store.schema import resource_version

# A gap's suspects are noted no sooner than this after it was first missed: an INSERT
# takes its number a moment before its transaction has an id that shows it as running.
GAP_SETTLE_SECONDS = 1.0
# The most gaps asked for again in one poll (the lowest first).
GAPS_PER_POLL = 1000


@dataclass(frozen=True)
class Change:
    """One version written to the record."""

    seq: int
    resource_type: str
    id: str
    version_id: int
    deleted: bool
    last_updated: str


@dataclass(frozen=True)
class ChangePage:
    """Changes read together, in sequence order, and what the read could see."""

    changes: tuple[Change, ...]
    latest_seq: int  # the highest sequence number committed when read (0: none)
    # PostgreSQL: the ids of the transactions holding writes on this database just
    # before the read; None on SQLite, whose commits come in sequence order.
    running: frozenset[int] | None


_COLUMNS = (
    resource_version.c.seq,
    resource_version.c.resource_type,
    resource_version.c.id,
    resource_version.c.version_id,
    resource_version.c.method,
    resource_version.c.last_updated,
)
_SINCE = (
    select(*_COLUMNS)
    .where(resource_version.c.seq > bindparam("after"))
    .order_by(resource_version.c.seq)
    .limit(bindparam("limit"))
)
_AT = (
    select(*_COLUMNS)
    .where(resource_version.c.seq.in_(bindparam("seqs", expanding=True)))
    .order_by(resource_version.c.seq)
)
_LATEST = select(func.max(resource_version.c.seq))
# Every transaction that has written holds a lock on its own id; pg_locks and the pid and
# database of pg_stat_activity are readable by any role.
_RUNNING = """
SELECT l.transactionid::text::bigint FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock'
AND a.datname = current_database()
"""


class ChangeFeed:
    """Reads the record's changes by sequence number."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)

    def changes_since(self, after_seq: int, limit: int = 1000) -> ChangePage:
        """Return up to limit changes after after_seq, in order, with the latest sequence
        number the same read could see. A change committed later may still have a lower
        number than one returned here (PostgreSQL): follow the feed with ChangeFollower."""
        return self._read(_SINCE, {"after": after_seq, "limit": limit})

    def changes_at(self, seqs: Sequence[int]) -> ChangePage:
        """Return the changes with these sequence numbers that are visible now."""
        return self._read(_AT, {"seqs": list(seqs)})

    def latest_seq(self) -> int:
        """Return the highest sequence number committed (0 for an empty record)."""
        with self.engine.connect() as connection:
            return int(connection.execute(_LATEST).scalar() or 0)

    def _read(self, statement: object, params: dict[str, object]) -> ChangePage:
        with self.engine.connect() as connection:
            running = None
            if not self.sqlite:
                # Asked before the rows are read, in a statement of its own: a transaction
                # not running then has committed, or not, before the rows' snapshot.
                running = frozenset(
                    int(xid) for (xid,) in connection.exec_driver_sql(_RUNNING).all()
                )
                connection.commit()
            rows = connection.execute(statement, params).all()  # type: ignore[call-overload]
            latest = int(connection.execute(_LATEST).scalar() or 0)
            connection.commit()
        changes = tuple(
            Change(int(seq), resource_type, id, int(version), method == "delete", updated)
            for seq, resource_type, id, version, method, updated in rows
        )
        return ChangePage(changes, latest, running)


@dataclass
class _Gap:
    missed_at: float
    suspects: frozenset[int] | None = None  # what was running once it had settled


@dataclass
class ChangeFollower:
    """Follows a ChangeFeed, giving out each change once, none skipped (see the module
    docstring for how)."""

    feed: ChangeFeed
    watermark: int  # every change at or below this has been given out (or never was)
    read_to: int = -1  # the highest number read so far
    gaps: dict[int, _Gap] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.read_to = max(self.read_to, self.watermark)

    @classmethod
    def from_now(cls, feed: ChangeFeed) -> ChangeFollower:
        """Return a follower that starts after the latest change committed now."""
        return cls(feed, feed.latest_seq())

    def poll(self, limit: int = 1000) -> list[Change]:
        """Return the changes not yet given out: late arrivals below the highest number
        read first, then new ones, each in sequence order."""
        late: list[Change] = []
        if self.gaps:
            asked = sorted(self.gaps)[:GAPS_PER_POLL]
            page = self.feed.changes_at(asked)
            late = list(page.changes)
            for change in late:
                del self.gaps[change.seq]
            self._settle([seq for seq in asked if seq in self.gaps], page.running)
        page = self.feed.changes_since(self.read_to, limit)
        expected = self.read_to + 1
        now = time.monotonic()
        for change in page.changes:
            for missing in range(expected, change.seq):
                self.gaps[missing] = _Gap(now)
            expected = change.seq + 1
        if page.changes:
            self.read_to = page.changes[-1].seq
        if page.running is None:
            self.gaps.clear()  # SQLite: a number missing below a visible one rolled back
        self.watermark = min(self.gaps, default=self.read_to + 1) - 1
        return late + list(page.changes)

    def _settle(self, still_missing: list[int], running: frozenset[int] | None) -> None:
        """Forget the gaps, asked for again and still missing in a read made when only
        running were running, that can only have rolled back."""
        now = time.monotonic()
        for seq in still_missing:
            gap = self.gaps[seq]
            if running is None:
                del self.gaps[seq]
            elif now - gap.missed_at < GAP_SETTLE_SECONDS:
                continue
            elif gap.suspects is None:
                if running:
                    gap.suspects = running
                else:
                    del self.gaps[seq]
            elif not gap.suspects & running:
                del self.gaps[seq]
