"""The audit trail keeps one entry per interaction, in an unbroken hash chain, on both engines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, update

from bevan.security.audit import AuditRecord
from bevan.security.trail import AuditNotRecorded, AuditTrail
from bevan.store.audit import AuditLog, AuditRow, chain_hash
from bevan.store.engine import make_engine
from bevan.store.migrate import upgrade
from bevan.store.schema import audit_event
from tests.conftest import BACKENDS, database_url

BASE = "http://127.0.0.1:8000/fhir"


def a_record(n: int, **changes: object) -> AuditRecord:
    """Return the n-th record of a scripted clinical session: reads, searches and writes."""
    interaction = ("read", "search-type", "create", "update")[n % 4]
    record = AuditRecord(
        recorded=f"2026-11-24T05:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        user_id=f"user-{n % 5}",
        role="clinician",
        organisation="A81001",
        client_address="10.0.0.7",
        action={"read": "R", "search-type": "E", "create": "C", "update": "U"}[interaction],
        interaction=interaction,
        outcome="0",
        outcome_text="OK",
        http_status=200,
        resources=(f"Observation/obs-{n}",),
        query=f"patient=pat-{n % 3}" if interaction == "search-type" else None,
        patient_id=f"pat-{n % 3}",
        request_id=f"req-{n}",
        source=BASE,
    )
    return replace(record, **changes)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(str(request.param), tmp_path)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def trail(engine: Engine) -> AuditTrail:
    return AuditTrail(AuditLog(engine))


def tamper(engine: Engine, statement: object) -> None:
    with engine.begin() as connection:
        connection.execute(statement)  # type: ignore[call-overload]


def content_of(engine: Engine, seq: int) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                select(audit_event.c.content).where(audit_event.c.seq == seq)
            ).scalar_one()
        )


def test_concurrent_recorders_each_get_one_entry_in_a_chain_that_verifies(
    trail: AuditTrail,
) -> None:
    commits = 0
    append = trail.log._append  # every transaction, whether on the loop or a thread

    def counting_append(rows: Sequence[AuditRow]) -> list[int]:
        nonlocal commits
        commits += 1
        return append(rows)

    trail.log._append = counting_append  # type: ignore[method-assign]

    async def session() -> None:
        await asyncio.gather(*(trail.record(a_record(n)) for n in range(200)))
        await trail.stop()

    asyncio.run(session())
    assert trail.log.count() == 200
    assert trail.verify() == []
    # Concurrent requests share commits rather than taking one each.
    assert 0 < commits < 50
    entries = trail.log.find(limit=1000)
    assert sorted(e.seq for e in entries) == list(range(1, 201))
    assert sorted(e.recorded for e in entries) == sorted(a_record(n).recorded for n in range(200))


def test_records_made_one_pass_of_the_loop_apart_share_a_commit(trail: AuditTrail) -> None:
    """A request that finishes while the writer is about to commit (one pass of the
    event loop behind the first) joins that commit instead of waiting for the next."""
    batches: list[int] = []
    append = trail.log._append

    def counting_append(rows: Sequence[AuditRow]) -> list[int]:
        batches.append(len(rows))
        return append(rows)

    trail.log._append = counting_append  # type: ignore[method-assign]

    async def request(n: int) -> None:
        for _ in range(n % 2):  # half the requests finish one pass later
            await asyncio.sleep(0)
        await trail.record(a_record(n))

    async def session() -> None:
        await trail.start()
        await asyncio.gather(*(request(n) for n in range(20)))
        await trail.stop()

    asyncio.run(session())
    assert batches == [20]
    assert trail.verify() == []


def test_records_wait_for_a_writer_holding_the_lock_then_commit(url: str, engine: Engine) -> None:
    """While another writer holds the store's lock, entries go to the writer thread and
    commit once it lets go; none is lost and the chain verifies."""
    import threading

    lock = threading.Lock()
    trail = AuditTrail(AuditLog(engine, lock))

    async def session() -> int:
        lock.acquire()
        recording = asyncio.gather(*(trail.record(a_record(n)) for n in range(20)))
        await asyncio.sleep(0.2)
        committed_meanwhile = trail.log.count()
        lock.release()
        await recording
        await trail.stop()
        return committed_meanwhile

    committed_meanwhile = asyncio.run(session())
    if engine.dialect.name == "sqlite":
        assert committed_meanwhile == 0  # nothing jumped the writer's lock
    assert trail.log.count() == 20
    assert trail.verify() == []


def test_a_recorder_returns_only_after_its_entry_is_committed(trail: AuditTrail) -> None:
    async def one() -> int:
        await trail.record(a_record(1, patient_id="pat-committed"))
        # Another connection already sees it: the answer may now be sent.
        return len(AuditLog(trail.log.engine).for_patient("pat-committed"))

    assert asyncio.run(one()) == 1


def test_synchronous_and_asynchronous_records_continue_one_chain(trail: AuditTrail) -> None:
    assert trail.record_sync([a_record(n) for n in range(3)]) == [1, 2, 3]

    async def more() -> None:
        await asyncio.gather(*(trail.record(a_record(n)) for n in range(3, 10)))
        await trail.flush()

    asyncio.run(more())
    assert trail.record_sync([a_record(10)]) == [11]
    assert trail.verify() == []


def test_changing_an_entry_names_that_entry(trail: AuditTrail, engine: Engine) -> None:
    trail.record_sync([a_record(n) for n in range(30)])
    altered = content_of(engine, 17).replace("user-", "someone-else-")
    tamper(engine, update(audit_event).where(audit_event.c.seq == 17).values(content=altered))
    problems = trail.verify()
    assert any("audit entry 17 has been altered" in p for p in problems)
    assert not any("entry 16 " in p or "entry 18 " in p for p in problems)


def test_rewriting_an_entry_and_its_hash_names_the_entry_after_it(
    trail: AuditTrail, engine: Engine
) -> None:
    trail.record_sync([a_record(n) for n in range(30)])
    with engine.connect() as connection:
        previous = connection.execute(
            select(audit_event.c.previous_hash).where(audit_event.c.seq == 17)
        ).scalar_one()
    forged = content_of(engine, 17).replace("pat-", "nobody-")
    tamper(
        engine,
        update(audit_event)
        .where(audit_event.c.seq == 17)
        .values(content=forged, hash=chain_hash(previous, 17, forged)),
    )
    problems = trail.verify()
    assert "audit entry 18 follows a missing or changed entry" in problems


def test_deleting_an_entry_names_the_entry_after_the_gap(trail: AuditTrail, engine: Engine) -> None:
    trail.record_sync([a_record(n) for n in range(30)])
    tamper(engine, delete(audit_event).where(audit_event.c.seq == 12))
    assert trail.verify() == ["audit entry 13 follows a missing or changed entry"]


def test_deleting_the_first_entries_is_noticed(trail: AuditTrail, engine: Engine) -> None:
    trail.record_sync([a_record(n) for n in range(10)])
    tamper(engine, delete(audit_event).where(audit_event.c.seq <= 3))
    assert trail.verify() == ["audit entry 4 follows a missing or changed entry"]


def test_swapping_two_entries_contents_names_both(trail: AuditTrail, engine: Engine) -> None:
    trail.record_sync([a_record(n) for n in range(10)])
    fifth, sixth = content_of(engine, 5), content_of(engine, 6)
    tamper(engine, update(audit_event).where(audit_event.c.seq == 5).values(content=sixth))
    tamper(engine, update(audit_event).where(audit_event.c.seq == 6).values(content=fifth))
    problems = trail.verify()
    assert any("audit entry 5 has been altered" in p for p in problems)
    assert any("audit entry 6 has been altered" in p for p in problems)


def test_refiling_an_entry_under_another_patient_is_noticed(
    trail: AuditTrail, engine: Engine
) -> None:
    trail.record_sync([a_record(n) for n in range(10)])
    tamper(engine, update(audit_event).where(audit_event.c.seq == 4).values(patient_id="pat-x"))
    assert trail.verify() == ["audit entry 4 is filed under columns that differ from its content"]


def test_an_entry_that_cannot_be_committed_fails_every_waiting_request(url: str) -> None:
    unmigrated = make_engine(url)  # no audit_event table: every append fails
    trail = AuditTrail(AuditLog(unmigrated))

    async def attempt() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(trail.record(a_record(n)) for n in range(20)), return_exceptions=True
        )
        await trail.stop()
        return list(results)

    try:
        results = asyncio.run(attempt())
    finally:
        unmigrated.dispose()
    assert all(isinstance(result, AuditNotRecorded) for result in results)


def test_stopping_commits_what_is_queued(trail: AuditTrail) -> None:
    async def record_then_stop() -> None:
        waiting = [asyncio.ensure_future(trail.record(a_record(n))) for n in range(50)]
        await asyncio.sleep(0)
        await trail.stop()
        await asyncio.gather(*waiting)

    asyncio.run(record_then_stop())
    assert trail.log.count() == 50
    assert trail.verify() == []


def test_a_patients_entries_are_listed_newest_first(trail: AuditTrail) -> None:
    trail.record_sync([a_record(n) for n in range(30)])
    entries = trail.log.for_patient("pat-1")
    assert [e.seq for e in entries] == list(range(29, 0, -3))
    assert all(e.patient_id == "pat-1" for e in entries)
    page = trail.log.for_patient("pat-1", limit=2, before_seq=entries[1].seq)
    assert [e.seq for e in page] == [entries[2].seq, entries[3].seq]


def test_entries_are_found_by_user_outcome_break_glass_and_time(trail: AuditTrail) -> None:
    trail.record_sync(
        [a_record(n) for n in range(10)]
        + [
            a_record(10, outcome="4", outcome_text="Forbidden", http_status=403),
            a_record(
                11,
                user_id="dr-emergency",
                purpose_of_use="ETREAT",
                break_glass_reason="cardiac arrest",
            ),
        ]
    )
    assert [e.seq for e in trail.log.find(user_id="user-2")] == [8, 3]
    assert [e.seq for e in trail.log.find(outcome="4")] == [11]
    assert [e.seq for e in trail.log.find(break_glass=True)] == [12]
    assert len(trail.log.find(break_glass=False)) == 11
    since = a_record(9).recorded
    assert [e.seq for e in trail.log.find(since=since)] == [12, 11, 10]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bevan.cli", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bevan_audit_verify_passes_then_names_the_tampered_entry(
    trail: AuditTrail, engine: Engine, url: str, tmp_path: Path
) -> None:
    trail.record_sync([a_record(n) for n in range(25)])
    # On SQLite the data directory alone finds the database (its default bevan.db).
    where = ["--data-dir", str(tmp_path)] + (
        [] if url.startswith("sqlite") else ["--database", url]
    )

    before = run_cli("verify", *where)
    assert before.returncode == 0, before.stderr
    assert "audit chain verified: 25 entries" in before.stdout

    listing = run_cli("list", *where, "--patient", "pat-2", "--limit", "3")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["24", "21", "18"]
    assert all("patient=pat-2" in line for line in lines)

    altered = content_of(engine, 9).replace("obs-8", "obs-999")
    tamper(engine, update(audit_event).where(audit_event.c.seq == 9).values(content=altered))
    after = run_cli("verify", *where)
    assert after.returncode == 1
    assert "audit entry 9 has been altered" in after.stdout


def test_an_append_that_fails_midway_lets_go_of_the_lock(url: str, engine: Engine) -> None:
    """An append that fails after taking the lock (PostgreSQL's advisory lock, SQLite's
    write lock) leaves nothing behind: another appender, on a connection of its own,
    goes ahead at once, and the chain verifies."""
    import threading

    failing = AuditLog(engine)
    broken = RuntimeError("the rows could not be made")

    def refuse(head: object, rows: object) -> list[dict[str, object]]:
        raise broken

    failing._chained = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        failing.append([_row(1)])

    other = make_engine(url)
    appended: list[list[int]] = []
    try:
        thread = threading.Thread(target=lambda: appended.append(AuditLog(other).append([_row(2)])))
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the failed append still holds the lock"
    finally:
        other.dispose()
    assert appended == [[1]]
    assert AuditLog(engine).verify() == []


def _row(n: int) -> AuditRow:
    return AuditRow(
        recorded=f"2026-11-24T06:00:{n:02d}.000Z",
        user_id="user-1",
        patient_id="pat-1",
        action="R",
        outcome="0",
        break_glass=False,
        content=f'{{"resourceType":"AuditEvent","id":"{n}"}}',
    )
