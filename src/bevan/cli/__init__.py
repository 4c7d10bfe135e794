"""The `bevan` command: serve, demo, load, synth, token, db, audit, user, client,
backup and restore, slots and waitlist, view, one module of the package to each family."""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from bevan.cli.data import cmd_db_upgrade, cmd_load, cmd_reindex, cmd_synth
from bevan.cli.options import data_options
from bevan.cli.serve import cmd_demo, cmd_serve
from bevan.cli.tokens import cmd_token_create


def build_parser() -> argparse.ArgumentParser:
    from bevan.security.tokens import ROLES

    parser = argparse.ArgumentParser(
        prog="bevan", description="Bevan: an open electronic patient record on FHIR R4."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the FHIR API")
    data_options(serve)
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1; more for PostgreSQL or busy servers)",
    )
    serve.set_defaults(run=cmd_serve)

    demo = commands.add_parser(
        "demo", help="create a demo database, load a synthetic population, serve it"
    )
    data_options(demo)
    demo.add_argument("--host", default=None)
    demo.add_argument("--port", type=int, default=None)
    demo.add_argument("--patients", type=int, default=500)
    demo.add_argument("--seed", type=int, default=1948)
    demo.set_defaults(run=cmd_demo)

    load = commands.add_parser(
        "load", help="load transaction/batch Bundles (.json) and NDJSON (.ndjson)"
    )
    data_options(load)
    load.add_argument("paths", nargs="+", type=Path, help="files or directories")
    load.set_defaults(run=cmd_load)

    reindex = commands.add_parser("reindex", help="rebuild every resource's search index rows")
    data_options(reindex)
    reindex.set_defaults(run=cmd_reindex)

    synth = commands.add_parser("synth", help="write a synthetic NHS population as FHIR")
    synth.add_argument("--patients", type=int, required=True)
    synth.add_argument("--seed", type=int, default=1948)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--ndjson", action="store_true", help="one NDJSON file per resource type")
    synth.add_argument(
        "--diary-start",
        type=date.fromisoformat,
        help="the Monday the practice diaries start on (default: the coming Monday)",
    )
    synth.add_argument("--no-diaries", action="store_true", help="leave out the practice diaries")
    synth.set_defaults(run=cmd_synth)

    token = commands.add_parser("token", help="bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new bearer token as the last line")
    data_options(create)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--subject", help="who the token is for (default: the role)")
    create.add_argument("--scope", help="SMART scopes (default system/*.* or user/*.*)")
    create.add_argument("--lifetime", type=int, default=24 * 3600, help="seconds (default 86400)")
    create.add_argument("--organisation", help="the user's ODS code (staff roles)")
    create.add_argument("--patient", help="the Patient id (patient and device roles)")
    create.add_argument("--device", help="the Device id (device role)")
    create.set_defaults(run=cmd_token_create)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    up = db_commands.add_parser("upgrade", help="apply schema migrations")
    data_options(up)
    up.set_defaults(run=cmd_db_upgrade)

    from bevan.cli.audit import register as register_audit

    register_audit(commands)

    from bevan.cli.security import register as register_security

    register_security(commands)

    from bevan.cli.backup import register as register_backup

    register_backup(commands)

    from bevan.cli.ward import register as register_ward

    register_ward(commands)
    from bevan.cli.scheduling import register as register_scheduling

    register_scheduling(commands)
    from bevan.cli.views import register as register_views

    register_views(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result: int = args.run(args)
    return result


__all__ = ["build_parser", "main"]
