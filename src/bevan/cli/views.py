"""`bevan view run VIEW.json` and `bevan view conformance`: SQL on FHIR views from the
command line, over the data directory's record (or --database), and the official suite."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, BinaryIO

from bevan.cli.options import data_options, open_store, settings_from

DEFAULT_SUITE = Path("../shared/conformance/sql-on-fhir-v2/tests")


def _load_view(path: Path) -> Any:
    import base64

    import orjson

    document = orjson.loads(path.read_bytes())
    if isinstance(document, dict) and document.get("resourceType") == "Library":
        for attachment in document.get("content") or []:
            if isinstance(attachment, dict) and isinstance(attachment.get("data"), str):
                return orjson.loads(base64.b64decode(attachment["data"]))
    return document


def cmd_view_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bevan.analytics.stored_record import RecordSelection, read_stored, selection_query
    from bevan.analytics.view_definition import compile_view
    from bevan.analytics.view_output import format_named, write_rows
    from bevan.fhir.errors import FhirError
    from bevan.records.service import RecordService

    fmt = format_named(args.format)
    if fmt is None:
        print(f"bevan view run: no format {args.format!r}", file=sys.stderr)
        return 2
    if fmt == "parquet" and args.out is None and sys.stdout.isatty():
        print("bevan view run: Parquet is binary; give --out FILE", file=sys.stderr)
        return 2
    try:
        view = compile_view(_load_view(args.view))
        settings = settings_from(args)
        records = RecordService(open_store(settings), settings.base_url)
        selection = RecordSelection(
            view.resource, tuple(args.patient or ()), bool(args.patient), args.since
        )
        query = selection_query(records, selection)
        with records.reading() as session:
            total = session.resource_counts().get(view.resource, 0)
        bar = tqdm(
            total=total,
            desc=f"{view.name or args.view.name}",
            unit=" resources",
            file=sys.stderr,
            disable=args.quiet,
        )
        as_of, resources = read_stored(records, query, on_page=lambda page: bar.update(len(page)))
        rows = view.rows(resources)
        if args.limit is not None:
            rows = (row for _, row in zip(range(args.limit), rows, strict=False))
        out: BinaryIO = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
        try:
            count = write_rows(view, rows, fmt, out, header=not args.no_header)
        finally:
            if args.out:
                out.close()
            else:
                out.flush()
        bar.close()
    except FhirError as error:
        for issue in error.issues:
            where = f" at {', '.join(issue.expression)}" if issue.expression else ""
            print(f"bevan view run: {issue.diagnostics}{where}", file=sys.stderr)
        return 1
    print(f"{count} rows; as of {as_of.header()}", file=sys.stderr)
    return 0


def cmd_view_conformance(args: argparse.Namespace) -> int:
    from bevan.analytics.conformance import write_report

    if not args.tests.is_dir():
        print(f"bevan view conformance: no suite at {args.tests}", file=sys.stderr)
        return 2
    passed, total = write_report(args.tests, args.report)
    print(f"{passed} of {total} cases passed; report written to {args.report}")
    return 0 if passed == total else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bevan view run` and `bevan view conformance` to the command's subparsers."""
    view = commands.add_parser("view", help="SQL on FHIR views: run one, or the conformance suite")
    view_commands = view.add_subparsers(dest="view_command", required=True)

    run = view_commands.add_parser(
        "run", help="write a ViewDefinition's rows over the stored record"
    )
    data_options(run)
    run.add_argument("view", type=Path, help="a ViewDefinition (or a Library holding one), JSON")
    run.add_argument("--format", default="csv", help="csv (default), ndjson, json or parquet")
    run.add_argument("--out", type=Path, help="file to write (default standard output)")
    run.add_argument("--patient", action="append", help="only this patient's resources (repeat)")
    run.add_argument("--since", help="only resources changed since this instant")
    run.add_argument("--limit", type=int, help="at most this many rows")
    run.add_argument("--no-header", action="store_true", help="csv: no header line")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(run=cmd_view_run)

    conformance = view_commands.add_parser(
        "conformance", help="run the SQL on FHIR v2 suite and write its report"
    )
    conformance.add_argument(
        "--tests",
        type=Path,
        default=DEFAULT_SUITE,
        help=f"the suite's tests directory (default {DEFAULT_SUITE})",
    )
    conformance.add_argument(
        "--report", type=Path, default=Path("test_report.json"), help="where to write the report"
    )
    conformance.set_defaults(run=cmd_view_conformance)
