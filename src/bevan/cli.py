"""The `bevan` command: serve, demo, load, synth, token, db."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bevan.config import Settings

if TYPE_CHECKING:
    from bevan.records.loader import LoadReport
    from bevan.records.service import RecordService
    from bevan.store.record_store import RecordStore


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_environment(
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (env BEVAN_DATA_DIR; default ./bevan-data)"
    )
    parser.add_argument(
        "--database",
        help="database URL (env BEVAN_DATABASE_URL; default a SQLite file in the data directory)",
    )


def _open_store(settings: Settings) -> RecordStore:
    from bevan.store.migrate import upgrade
    from bevan.store.record_store import RecordStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = RecordStore.from_url(settings.resolved_database_url)
    upgrade(store.engine)
    store.analyse()
    return store


def cmd_serve(args: argparse.Namespace) -> int:
    from bevan.app import create_app, settle_heap

    settings = _settings(args)
    in_use = port_in_use(settings.host, settings.port)
    if in_use is not None:
        print(
            f"bevan serve: cannot listen on {settings.host}:{settings.port}: {in_use}",
            file=sys.stderr,
        )
        return 1
    store = _open_store(settings)
    print(
        f"Bevan FHIR API at http://{settings.host}:{settings.port}{settings.base_path}", flush=True
    )
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": args.log_level,
        "access_log": False,
        # The app reads forwarded headers itself, from trusted proxies only
        # (BEVAN_TRUSTED_PROXIES); uvicorn would believe any local peer's.
        "proxy_headers": False,
    }
    if args.workers > 1:
        from bevan.workers import serve

        # Each worker process builds its own app from the environment.
        store.close()
        os.environ["BEVAN_DATA_DIR"] = str(settings.data_dir)
        os.environ["BEVAN_DATABASE_URL"] = settings.resolved_database_url
        return serve(args.workers, options)

    import uvicorn

    app = create_app(settings, store)
    settle_heap()
    uvicorn.run(app, **options)
    return 0


def port_in_use(host: str, port: int) -> str | None:
    """Return why host:port cannot be listened on (in use, say), or None if it can.

    Asked before anything is created, so a second server on a busy port stops in one
    line instead of after opening (or making) a database.
    """
    import socket

    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, protocol) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as error:
        return error.strerror or str(error)
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    import uvicorn

    from bevan.app import create_app, settle_heap
    from bevan.records.service import RecordService
    from bevan.security.tokens import TokenAuthority
    from bevan.synth import write_population

    settings = replace(_settings(args), request_log=False)  # keep the demo's advice in view
    in_use = port_in_use(settings.host, settings.port)
    if in_use is not None:
        print(
            f"bevan demo: cannot listen on {settings.host}:{settings.port}: {in_use}",
            file=sys.stderr,
        )
        return 1
    store = _open_store(settings)
    settle_heap()
    service = RecordService(
        store, settings.base_url, referential_integrity=settings.referential_integrity
    )
    with service.reading() as session:
        existing = session.resource_counts().get("Patient", 0)
    if existing == 0:
        print(f"Generating {args.patients} synthetic patients (seed {args.seed}) ...", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            write_population(args.patients, args.seed, Path(scratch))
            files = sorted(Path(scratch).glob("*.json"))
            report = _load_with_progress(service, files, "Loading demo population")
            store.analyse()
        print(f"Loaded {report.total} resources ({report.stored.get('Patient', 0)} patients).")
    else:
        print(f"Using the {existing} patients already in {settings.resolved_database_url}")
    token = TokenAuthority.in_directory(settings.data_dir).issue("demo-user", "system")
    with service.reading() as session:
        from bevan.fhir.search import parse_search

        found = session.search(parse_search("Patient", "_count=1"), limit=1)
    patient_id = found[0].id if found else "<id>"
    base = f"http://{settings.host}:{settings.port}{settings.base_path}"
    print(
        f"""
Bevan is serving the FHIR API at {base}

Token (valid 24 hours):
  export TOKEN={token}

Try:
  curl {base}/metadata
  curl -H "Authorization: Bearer $TOKEN" {base}/Patient?_count=5
  curl -H "Authorization: Bearer $TOKEN" {base}/Patient/{patient_id}
""",
        flush=True,
    )
    app = create_app(settings, store)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0


def _load_with_progress(service: RecordService, files: list[Path], label: str) -> LoadReport:
    from tqdm import tqdm

    from bevan.records.loader import load_files

    with tqdm(desc=label, unit=" resources", file=sys.stderr) as bar:
        return load_files(service, files, bar.update)


def cmd_load(args: argparse.Namespace) -> int:
    from bevan.app import settle_heap
    from bevan.records.loader import expand_paths
    from bevan.records.service import RecordService

    settings = _settings(args)
    store = _open_store(settings)
    settle_heap()
    files = expand_paths(args.paths)
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        print(f"bevan load: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = _load_with_progress(
        RecordService(
            store, settings.base_url, referential_integrity=settings.referential_integrity
        ),
        files,
        "Loading",
    )
    store.analyse()
    for line in report.refused:
        print(f"refused: {line}", file=sys.stderr)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(report.stored.items()))
    print(f"Stored {report.total} resources ({summary or 'none'}); refused {len(report.refused)}.")
    return 1 if report.refused else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.synth import write_population

    with tqdm(total=args.patients, desc="Generating", unit=" patients", file=sys.stderr) as bar:
        counts = write_population(
            args.patients, args.seed, args.out, ndjson=args.ndjson, progress=bar.update
        )
    print(f"Wrote {sum(counts.values())} resources for {args.patients} patients to {args.out}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.records.service import RecordService, reindex

    settings = _settings(args)
    store = _open_store(settings)
    with tqdm(desc="Reindexing", unit=" resources", file=sys.stderr) as bar:
        done = reindex(
            RecordService(
                store, settings.base_url, referential_integrity=settings.referential_integrity
            ),
            bar.update,
        )
    store.analyse()
    print(f"Reindexed {done} resources.")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from bevan.security.tokens import TokenAuthority, TokenError

    settings = _settings(args)
    try:
        token = TokenAuthority.in_directory(settings.data_dir).issue(
            args.subject or f"{args.role}-token",
            args.role,
            scope=args.scope,
            lifetime=args.lifetime,
            organisation=args.organisation,
            patient_id=args.patient,
            device_id=args.device,
        )
    except TokenError as error:
        print(f"bevan token create: {error}", file=sys.stderr)
        return 2
    print(
        f"# a {args.role} token for the server whose key is in {settings.data_dir}", file=sys.stderr
    )
    print(token)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bevan.store.engine import make_engine
    from bevan.store.migrate import upgrade

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before, after = upgrade(make_engine(settings.resolved_database_url))
    if before == after:
        print(f"schema is already at revision {after}")
    else:
        print(f"schema upgraded from {before or 'an empty database'} to revision {after}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bevan.security.tokens import ROLES

    parser = argparse.ArgumentParser(
        prog="bevan", description="Bevan: an open electronic patient record on FHIR R4."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the FHIR API")
    _data_options(serve)
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
    _data_options(demo)
    demo.add_argument("--host", default=None)
    demo.add_argument("--port", type=int, default=None)
    demo.add_argument("--patients", type=int, default=500)
    demo.add_argument("--seed", type=int, default=1948)
    demo.set_defaults(run=cmd_demo)

    load = commands.add_parser(
        "load", help="load transaction/batch Bundles (.json) and NDJSON (.ndjson)"
    )
    _data_options(load)
    load.add_argument("paths", nargs="+", type=Path, help="files or directories")
    load.set_defaults(run=cmd_load)

    reindex = commands.add_parser("reindex", help="rebuild every resource's search index rows")
    _data_options(reindex)
    reindex.set_defaults(run=cmd_reindex)

    synth = commands.add_parser("synth", help="write a synthetic NHS population as FHIR")
    synth.add_argument("--patients", type=int, required=True)
    synth.add_argument("--seed", type=int, default=1948)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--ndjson", action="store_true", help="one NDJSON file per resource type")
    synth.set_defaults(run=cmd_synth)

    token = commands.add_parser("token", help="bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new bearer token as the last line")
    _data_options(create)
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
    _data_options(up)
    up.set_defaults(run=cmd_db_upgrade)

    from bevan.cli_audit import register as register_audit

    register_audit(commands)

    from bevan.cli_security import register as register_security

    register_security(commands)

    from bevan.cli_backup import register as register_backup

    register_backup(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
