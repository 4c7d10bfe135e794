"""`bevan audit verify`, `bevan audit anchor` and `bevan audit list`: check, checkpoint
and read the audit trail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from bevan.cli.options import data_options, settings_from

if TYPE_CHECKING:
    from bevan.store.audit import AuditLog, Checkpoint


def _open_log(args: argparse.Namespace) -> AuditLog:
    from bevan.security.audit_key import load_audit_key
    from bevan.store.audit import AuditLog
    from bevan.store.engine import make_engine
    from bevan.store.migrate import upgrade

    settings = settings_from(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    return AuditLog(engine, key=load_audit_key(settings.data_dir, create=False))


def _checkpoint_text(checkpoint: Checkpoint) -> str:
    return orjson.dumps(
        {
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "hmac": checkpoint.seal,
            "time": checkpoint.taken,
        }
    ).decode()


def _read_checkpoint(given: str) -> Checkpoint:
    """Return the checkpoint in given: its JSON text, or a file holding it."""
    from bevan.store.audit import Checkpoint

    text = given
    if not given.lstrip().startswith("{"):
        text = Path(given).read_text()
    try:
        fields = orjson.loads(text)
        return Checkpoint(
            int(fields["seq"]), str(fields["hash"]), str(fields["hmac"]), str(fields["time"])
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise SystemExit(
            f"the anchor is not a checkpoint from `bevan audit anchor`: {error}"
        ) from None


def cmd_audit_anchor(args: argparse.Namespace) -> int:
    from bevan.fhir.dates import now_instant

    log = _open_log(args)
    if log.key is None:
        print("there is no audit key in the data directory: start the server once", file=sys.stderr)
        return 1
    checkpoint = log.checkpoint(now_instant())
    log.engine.dispose()
    print(_checkpoint_text(checkpoint))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.security.trail import AuditTrail

    log = _open_log(args)
    checkpoint = _read_checkpoint(args.anchor) if args.anchor else None
    trail = AuditTrail(log)
    total = log.count()
    with tqdm(total=total, desc="Verifying audit chain", unit=" entries", file=sys.stderr) as bar:
        problems = trail.verify(bar.update)
    if checkpoint is not None:
        problems += log.check_checkpoint(checkpoint)
    if log.key is None:
        print("no audit key in the data directory: the seals were not checked", file=sys.stderr)
    log.engine.dispose()
    if problems:
        for problem in problems:
            print(problem)
        print(f"audit chain FAILED verification: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    seq, head = log.head()
    print(f"audit chain verified: {total} entries")
    if checkpoint is not None:
        print(f"the trail holds the checkpoint at entry {checkpoint.seq} unaltered")
    print(f"head: entry {seq}, hash {head} (`bevan audit anchor` prints a checkpoint to keep)")
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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bevan audit verify` and `bevan audit list` to the command's subparsers."""
    audit = commands.add_parser("audit", help="the audit trail: verify the chain, list entries")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_commands.add_parser(
        "verify", help="check every entry's hash chain; exit 1 naming each broken entry"
    )
    data_options(verify)
    verify.add_argument(
        "--anchor",
        help="a checkpoint from `bevan audit anchor` (its text, or a file holding it): "
        "also check the trail still holds it unaltered and has not been cut back below it",
    )
    verify.set_defaults(run=cmd_audit_verify)

    anchor = audit_commands.add_parser(
        "anchor",
        help="print a checkpoint of the trail's head (sequence, hash, HMAC, time) to keep "
        "somewhere else",
    )
    data_options(anchor)
    anchor.set_defaults(run=cmd_audit_anchor)

    listing = audit_commands.add_parser("list", help="print entries, newest first")
    data_options(listing)
    listing.add_argument("--patient", help="only entries about this patient's record")
    listing.add_argument("--user", help="only entries of this user")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(run=cmd_audit_list)
