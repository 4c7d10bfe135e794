"""`bevan load`, `bevan synth`, `bevan reindex` and `bevan db upgrade`: data in and
the schema kept current."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bevan.cli.options import open_store, settings_from

if TYPE_CHECKING:
    from bevan.config import Settings
    from bevan.records.loader import LoadReport
    from bevan.records.service import RecordService
    from bevan.store.record_store import RecordStore


def load_with_progress(
    service: RecordService, files: list[Path], label: str, *, partial: bool = False
) -> LoadReport:
    from tqdm import tqdm

    from bevan.records.loader import load_files

    with tqdm(desc=label, unit=" resources", file=sys.stderr) as bar:
        return load_files(service, files, bar.update, partial=partial)


def cmd_load(args: argparse.Namespace) -> int:
    from bevan.app import record_service, settle_heap
    from bevan.records.loader import expand_paths

    settings = settings_from(args)
    files = expand_paths(args.paths)
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        print(f"bevan load: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    store = open_store(settings)
    settle_heap()
    report = load_with_progress(
        record_service(settings, store),
        files,
        "Loading",
        partial=args.partial,
    )
    store.analyse()
    audit_load(settings, store, files, report)
    for line in report.refused:
        print(f"refused: {line}", file=sys.stderr)
    for line in report.unresolved:
        print(f"unresolved (kept): {line}", file=sys.stderr)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(report.stored.items()))
    print(f"Stored {report.total} resources ({summary or 'none'}); refused {len(report.refused)}.")
    return 1 if report.refused else 0


def audit_load(
    settings: Settings, store: RecordStore, files: list[Path], report: LoadReport
) -> None:
    """Record the load in the audit trail: one entry naming its files and its counts."""
    from bevan.fhir.dates import now_instant
    from bevan.security.audit import AuditRecord
    from bevan.security.audit_key import load_audit_key
    from bevan.security.trail import AuditTrail
    from bevan.store.audit import AuditLog

    counts = ", ".join(f"{n} {t}" for t, n in sorted(report.stored.items()))
    text = (
        f"bevan load of {', '.join(str(p) for p in files)}: stored {report.total} resources "
        f"({counts or 'none'}), {report.unchanged} of them already stored as they were; "
        f"refused {len(report.refused)}"
    )
    trail = AuditTrail(
        AuditLog(store.engine, store.write_lock, key=load_audit_key(settings.data_dir))
    )
    trail.record_sync(
        [
            AuditRecord(
                recorded=now_instant(),
                user_id="bevan-load",
                role="system",
                organisation=None,
                client_address=None,
                action="C",
                interaction="batch",
                outcome="0" if not report.refused else "4",
                outcome_text=text,
                http_status=200 if not report.refused else 422,
                query="files=" + ",".join(str(p) for p in files),
                method="LOAD",
                path="bevan load",
            )
        ]
    )


def cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.synth import write_population

    diaries_from = None if args.no_diaries else (args.diary_start or coming_monday())
    with tqdm(total=args.patients, desc="Generating", unit=" patients", file=sys.stderr) as bar:
        counts = write_population(
            args.patients,
            args.seed,
            args.out,
            ndjson=args.ndjson,
            progress=bar.update,
            diaries_from=diaries_from,
        )
    print(f"Wrote {sum(counts.values())} resources for {args.patients} patients to {args.out}")
    return 0


def coming_monday(today: date | None = None) -> date:
    """Return the first Monday after today: where a synthetic population's diaries start."""
    today = today or date.today()
    return today + timedelta(days=7 - today.weekday())


def cmd_reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.app import record_service
    from bevan.records.service import reindex

    settings = settings_from(args)
    store = open_store(settings)
    with tqdm(desc="Reindexing", unit=" resources", file=sys.stderr) as bar:
        done = reindex(
            record_service(settings, store),
            bar.update,
        )
    store.analyse()
    print(f"Reindexed {done} resources.")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bevan.store.engine import make_engine
    from bevan.store.migrate import upgrade

    settings = settings_from(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before, after = upgrade(make_engine(settings.resolved_database_url))
    if before == after:
        print(f"schema is already at revision {after}")
    else:
        print(f"schema upgraded from {before or 'an empty database'} to revision {after}")
    return 0
