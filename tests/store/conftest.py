"""A record store on each backend, migrated, and the record service over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bevan.records.service import RecordService
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from tests.conftest import database_url


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[RecordStore]:
    store = RecordStore.from_url(database_url(backend, tmp_path))
    upgrade(store.engine)
    yield store
    store.close()


@pytest.fixture
def service(store: RecordStore) -> RecordService:
    return RecordService(store)
