"""`bevan backup DEST` and `bevan restore SRC`: the record and its keys, copied and put back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bevan.cli.options import data_options, settings_from


def cmd_backup(args: argparse.Namespace) -> int:
    from bevan.store.backup import BackupError, back_up

    settings = settings_from(args)
    try:
        report = back_up(settings.resolved_database_url, settings.data_dir, args.destination)
    except BackupError as error:
        print(f"bevan backup: {error}", file=sys.stderr)
        return 1
    kept = ", ".join(report.files) or "no other files"
    print(f"Backed up the {report.engine} database to {report.database} ({kept} beside it).")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from bevan.store.backup import BackupError, restore

    settings = settings_from(args)
    try:
        report = restore(
            args.source, settings.resolved_database_url, settings.data_dir, replace=args.replace
        )
    except BackupError as error:
        print(f"bevan restore: {error}", file=sys.stderr)
        return 1
    kept = ", ".join(report.files) or "no other files"
    print(f"Restored the {report.engine} database and {kept} into {settings.data_dir}.")
    print("Check it with `bevan audit verify` before serving; `bevan serve` upgrades its schema.")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bevan backup` and `bevan restore` to the command's subparsers."""
    backup = commands.add_parser(
        "backup", help="copy the database, signing key and audit files to a new directory"
    )
    data_options(backup)
    backup.add_argument("destination", type=Path, help="a new (or empty) directory")
    backup.set_defaults(run=cmd_backup)

    restore = commands.add_parser(
        "restore", help="put a backup back as the database and data directory (server stopped)"
    )
    data_options(restore)
    restore.add_argument("source", type=Path, help="a directory made by `bevan backup`")
    restore.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a database that holds records, and key files that differ",
    )
    restore.set_defaults(run=cmd_restore)
