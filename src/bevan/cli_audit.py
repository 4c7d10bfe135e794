"""`bevan audit verify` and `bevan audit list`: check and read the audit trail."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import orjson

from bevan.cli import _data_options, _settings

if TYPE_CHECKING:
    from bevan.store.audit import AuditLog


def _open_log(args: argparse.Namespace) -> AuditLog:
    from bevan.store.audit import AuditLog
    from bevan.store.engine import make_engine
    from bevan.store.migrate import upgrade

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    return AuditLog(engine)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.security.trail import AuditTrail

    log = _open_log(args)
    trail = AuditTrail(log)
    total = log.count()
    with tqdm(total=total, desc="Verifying audit chain", unit=" entries", file=sys.stderr) as bar:
        problems = trail.verify(bar.update)
    log.engine.dispose()
    if problems:
        for problem in problems:
            print(problem)
        print(f"audit chain FAILED verification: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    seq, head = log.head()
    print(f"audit chain verified: {total} entries")
    print(f"head: entry {seq}, hash {head} (keep this to detect later removal of the newest)")
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    from bevan.security.audit import summarise

    log = _open_log(args)
    entries = log.find(user_id=args.user, patient_id=args.patient, limit=args.limit)
    log.engine.dispose()
    for entry in entries:
        summary = summarise(orjson.loads(entry.content))
        touched = " ".join(summary.resources)
        if summary.query is not None:
            touched = f"{touched} ?{summary.query}".strip()
        fields = [
            str(entry.seq),
            summary.recorded,
            summary.user,
            summary.role or "-",
            f"{summary.action}/{summary.interaction}",
            f"{summary.outcome} {summary.outcome_text}",
            f"patient={summary.patient_id or '-'}",
            touched or "-",
        ]
        if summary.break_glass_reason is not None:
            fields.append(f"BREAK-GLASS: {summary.break_glass_reason or '(no reason given)'}")
        print("  ".join(fields))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `bevan audit verify` and `bevan audit list` to the command's subparsers."""
    audit = commands.add_parser("audit", help="the audit trail: verify the chain, list entries")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_commands.add_parser(
        "verify", help="check every entry's hash chain; exit 1 naming each broken entry"
    )
    _data_options(verify)
    verify.set_defaults(run=cmd_audit_verify)

    listing = audit_commands.add_parser("list", help="print entries, newest first")
    _data_options(listing)
    listing.add_argument("--patient", help="only entries about this patient's record")
    listing.add_argument("--user", help="only entries of this user")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(run=cmd_audit_list)
