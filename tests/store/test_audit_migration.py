"""Upgrading keeps an existing trail in every patient's access log and verifying."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert

from bevan.store.audit import GENESIS_HASH, AuditLog, chain_hash
from bevan.store.engine import make_engine
from bevan.store.migrate import upgrade
from bevan.store.schema import audit_event
from tests.conftest import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_entries_written_before_the_upgrade_stay_in_their_patients_access_log(
    backend: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url(backend, tmp_path))
    try:
        upgrade(engine, "0008")
        content = '{"resourceType":"AuditEvent","recorded":"2026-11-01T00:00:00.000Z"}'
        with engine.begin() as connection:
            connection.execute(
                insert(audit_event).values(
                    seq=1,
                    recorded="2026-11-01T00:00:00.000Z",
                    user_id="someone",
                    patient_id="old-patient",
                    action="R",
                    outcome="0",
                    break_glass=False,
                    content=content,
                    previous_hash=GENESIS_HASH,
                    hash=chain_hash(GENESIS_HASH, 1, content),
                )
            )
        upgrade(engine)
        log = AuditLog(engine, key=b"k" * 32)
        assert [e.seq for e in log.for_patient("old-patient")] == [1]
        assert log.verify() == []
    finally:
        engine.dispose()
