"""What every command that opens the record shares: its settings, its options and
the store, migrated."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bevan.config import Settings

if TYPE_CHECKING:
    from bevan.store.record_store import RecordStore


def settings_from(args: argparse.Namespace) -> Settings:
    """Return the settings from the environment, overridden by what the command was given."""
    return Settings.from_environment(
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def data_options(parser: argparse.ArgumentParser) -> None:
    """Add the options naming the data directory and the database."""
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (env BEVAN_DATA_DIR; default ./bevan-data)"
    )
    parser.add_argument(
        "--database",
        help="database URL (env BEVAN_DATABASE_URL; default a SQLite file in the data directory)",
    )


def open_store(settings: Settings) -> RecordStore:
    """Return the record store, its schema upgraded and its statistics fresh."""
    from bevan.store.migrate import upgrade
    from bevan.store.record_store import RecordStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = RecordStore.from_url(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    upgrade(store.engine)
    store.analyse()
    return store
