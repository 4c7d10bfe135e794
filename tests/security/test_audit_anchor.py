"""An auditor's checks of the chain against one who can write the audit table but not
read the data directory: a rewrite with recomputed hashes, and cutting the newest
entries off, are both found; the audit key is made once, readable by its owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
from sqlalchemy import delete, select, update

from bevan.security.audit_key import audit_key_path, load_audit_key
from bevan.store.audit import AuditLog, chain_hash
from bevan.store.schema import audit_entity, audit_event
from tests.conftest import RunningServer


def audit_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    url = server.store.engine.url.render_as_string(hide_password=False)
    return subprocess.run(
        [
            sys.executable, "-m", "bevan.cli", "audit", *args,
            "--data-dir", str(server.data_dir), "--database", url,
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip


def some_requests(server: RunningServer, n: int = 4) -> None:
    with server.client() as fhir:
        for _ in range(n):
            fhir.get("/metadata")


def rewrite_from(server: RunningServer, seq: int, content: str) -> None:
    """Replace entry seq's content and recompute every hash after it, as an attacker
    with write access to the table (but not the key) would."""
    engine = server.store.engine
    with engine.begin() as connection:
        rows = connection.execute(
            select(audit_event.c.seq, audit_event.c.content, audit_event.c.previous_hash)
            .where(audit_event.c.seq >= seq)
            .order_by(audit_event.c.seq)
        ).all()
        previous = rows[0].previous_hash
        for row in rows:
            text = content if row.seq == seq else row.content
            digest = chain_hash(previous, row.seq, text)
            connection.execute(
                update(audit_event)
                .where(audit_event.c.seq == row.seq)
                .values(content=text, previous_hash=previous, hash=digest)
            )
            previous = digest


def test_the_audit_key_is_kept_outside_the_database_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    with ThreadPoolExecutor(8) as pool:  # workers starting together agree on one key
        keys = set(pool.map(lambda _: load_audit_key(tmp_path), range(16)))
    assert len(keys) == 1
    mode = stat.S_IMODE(os.stat(audit_key_path(tmp_path)).st_mode)
    assert mode == 0o600
    assert load_audit_key(tmp_path / "elsewhere", create=False) is None


def test_hiding_an_entry_from_a_patients_access_log_is_named(server: RunningServer) -> None:
    with server.client() as fhir:
        fhir.put(
            "/Patient/hidden",
            json={"resourceType": "Patient", "id": "hidden"},
            headers={"Content-Type": "application/fhir+json"},
        )
        fhir.get("/Patient/hidden")
    log = AuditLog(server.store.engine)
    victim = log.for_patient("hidden", limit=1)[0]
    with server.store.engine.begin() as connection:
        connection.execute(delete(audit_entity).where(audit_entity.c.seq == victim.seq))
    assert log.for_patient("hidden", limit=1)[0].seq != victim.seq
    result = audit_cli(server, "verify")
    assert result.returncode == 1
    assert f"audit entry {victim.seq} is filed under other" in result.stdout


def test_a_rewrite_with_recomputed_hashes_is_named(server: RunningServer) -> None:
    some_requests(server)
    victim = AuditLog(server.store.engine).find(limit=3)[-1]
    # (an earlier test in this module may have left its own problem in the trail)
    assert f"audit entry {victim.seq} has been" not in audit_cli(server, "verify").stdout
    event = orjson.loads(victim.content)
    event["outcome"] = "0"
    event["outcomeDesc"] = "nothing to see here"
    rewrite_from(server, victim.seq, orjson.dumps(event).decode())
    result = audit_cli(server, "verify")
    assert result.returncode == 1
    assert f"audit entry {victim.seq} has been rewritten" in result.stdout


def test_an_anchor_shows_the_newest_entries_cut_off(server: RunningServer) -> None:
    some_requests(server)
    anchored = audit_cli(server, "anchor")
    assert anchored.returncode == 0, anchored.stderr
    checkpoint = orjson.loads(anchored.stdout)
    assert set(checkpoint) == {"seq", "hash", "hmac", "time"}
    some_requests(server)
    kept = server.data_dir / "checkpoint.json"
    kept.write_text(anchored.stdout)
    ok = audit_cli(server, "verify", "--anchor", str(kept))
    # (an earlier test in this module may have left a rewritten entry: only the anchor's
    # own verdict is asserted here)
    assert "truncated" not in ok.stdout and "not the one checkpointed" not in ok.stdout
    with server.store.engine.begin() as connection:
        connection.execute(delete(audit_event).where(audit_event.c.seq >= checkpoint["seq"]))
    cut = audit_cli(server, "verify", "--anchor", anchored.stdout)
    assert cut.returncode == 1
    assert "truncated" in cut.stdout
    forged = {**checkpoint, "seq": checkpoint["seq"] - 1}
    refused = audit_cli(server, "verify", "--anchor", orjson.dumps(forged).decode())
    assert refused.returncode == 1 and "not genuine" in refused.stdout
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        http.get("/metadata")  # the trail goes on past the cut: still not the checkpoint
    again = audit_cli(server, "verify", "--anchor", anchored.stdout)
    assert again.returncode == 1
