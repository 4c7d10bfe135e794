"""BEVAN_SQLITE_SYNCHRONOUS reaches the database through Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bevan.cli.options import open_store
from bevan.config import Settings

# PRAGMA synchronous answers a number: 1 is NORMAL, 2 is FULL.
LEVELS = {"NORMAL": 1, "FULL": 2}


@pytest.mark.parametrize(
    ("given", "level"), [(None, "NORMAL"), ("full", "FULL"), ("bogus", "NORMAL")]
)
def test_bevan_sqlite_synchronous_sets_how_sqlite_commits(
    given: str | None, level: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if given is None:
        monkeypatch.delenv("BEVAN_SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("BEVAN_SQLITE_SYNCHRONOUS", given)
    store = open_store(Settings.from_environment(data_dir=tmp_path))
    try:
        with store.engine.connect() as connection:
            answer = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        assert answer == LEVELS[level]
    finally:
        store.close()
