"""`bevan ward overdue`: one look for overdue virtual ward readings (the server also
looks every BEVAN_OVERDUE_CHECK_SECONDS)."""

from __future__ import annotations

import argparse
from datetime import datetime

from bevan.cli.options import data_options, open_store, settings_from


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ward = commands.add_parser("ward", help="the virtual ward")
    ward_commands = ward.add_subparsers(dest="ward_command", required=True)
    overdue = ward_commands.add_parser(
        "overdue", help="raise a Task for each enrolled patient whose readings are overdue"
    )
    data_options(overdue)
    overdue.add_argument(
        "--at", help="judge as at this instant (ISO 8601; default now), e.g. to replay a day"
    )
    overdue.set_defaults(run=cmd_ward_overdue)


def cmd_ward_overdue(args: argparse.Namespace) -> int:
    from bevan.app import record_service, record_system_writes
    from bevan.monitoring.overdue import look_for_overdue

    settings = settings_from(args)
    store = open_store(settings)
    now = datetime.fromisoformat(args.at) if args.at else None
    look = look_for_overdue(record_service(settings, store), now)
    record_system_writes(settings, store, look)
    print(
        f"{look.enrolled} enrolled, {look.overdue} overdue, {len(look.raised)} new Task(s)"
        + "".join(f"\n  Task/{task} for Patient/{patient}" for task, patient in look.raised)
    )
    return 0
