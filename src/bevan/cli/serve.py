"""`bevan serve` and `bevan demo`: the FHIR API served, on its own or over a demo
population."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from bevan.cli.data import load_with_progress
from bevan.cli.options import open_store, settings_from


def cmd_serve(args: argparse.Namespace) -> int:
    from bevan.app import create_app, settle_heap

    settings = settings_from(args)
    in_use = port_in_use(settings.host, settings.port)
    if in_use is not None:
        print(
            f"bevan serve: cannot listen on {settings.host}:{settings.port}: {in_use}",
            file=sys.stderr,
        )
        return 1
    store = open_store(settings)
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

    from bevan.app import create_app, record_service, settle_heap
    from bevan.cli.data import coming_monday
    from bevan.security.tokens import TokenAuthority
    from bevan.synth import write_population
    from bevan.synth.bundles import population_files

    settings = replace(settings_from(args), request_log=False)  # keep the demo's advice in view
    in_use = port_in_use(settings.host, settings.port)
    if in_use is not None:
        print(
            f"bevan demo: cannot listen on {settings.host}:{settings.port}: {in_use}",
            file=sys.stderr,
        )
        return 1
    store = open_store(settings)
    settle_heap()
    service = record_service(settings, store)
    with service.reading() as session:
        existing = session.resource_counts().get("Patient", 0)
    if existing == 0:
        print(f"Generating {args.patients} synthetic patients (seed {args.seed}) ...", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            write_population(args.patients, args.seed, Path(scratch), diaries_from=coming_monday())
            files = population_files(Path(scratch))
            report = load_with_progress(service, files, "Loading demo population")
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
    from bevan.cli.demo_accounts import demo_sign_ins

    sign_ins = "".join(
        f"  {s.role.capitalize():10} {s.username} / {s.password}  ({s.about})\n"
        for s in demo_sign_ins(store.engine, service)
    )
    print(
        f"""
Bevan is serving the web app at http://{settings.host}:{settings.port}/
Sign in (new passwords each time the demo starts):
{sign_ins}
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
