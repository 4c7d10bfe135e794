"""`python -m benchmarks NAME`: run a scenario, print its table, save it as JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from benchmarks import (
    booking,
    bundle_import,
    crud,
    export,
    search,
    subscriptions,
    views,
    virtual_ward,
    web_pages,
)
from benchmarks.options import RunOptions
from benchmarks.report import ScenarioResult

SCENARIOS: dict[str, Callable[[RunOptions], ScenarioResult]] = {
    "crud": crud.run,
    "import": bundle_import.run,
    "search": search.run,
    "subscriptions": subscriptions.run,
    "export": export.run,
    "virtual-ward": virtual_ward.run,
    "booking": booking.run,
    "views": views.run,
    "web": web_pages.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark a real Bevan server against a plain-SQLite baseline.",
    )
    parser.add_argument("name", choices=[*SCENARIOS, "all"], help="scenario to run")
    parser.add_argument("--quick", action="store_true", help="small data, under a minute each")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument(
        "--duration",
        type=float,
        help="timed seconds: crud (default 60; 10 quick), each search (10; 3 quick) and the "
        "search mix (60; 10 quick)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        help="concurrent clients (default 50 for crud, 20 for import and named searches, "
        "30 for the search mix)",
    )
    parser.add_argument(
        "--patients",
        type=int,
        help="import size (default 1,000, 200 quick; synthea 100, 14 quick); "
        "search data (default 90,000 = ~1M resources, 400 quick); "
        "export data (default 5,000, 400 quick)",
    )
    parser.add_argument(
        "--source",
        choices=("synth", "synthea"),
        default="synth",
        help="import data: `bevan synth` (default) or the Synthea sample replicated with fresh ids",
    )
    parser.add_argument(
        "--rate", type=float, help="subscriptions: writes sent per second (default 1,000)"
    )
    parser.add_argument("--seed", type=int, default=1948, help="bevan synth seed")
    parser.add_argument("--database", help="database URL (default a fresh SQLite file)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = RunOptions(
        quick=args.quick,
        workers=args.workers,
        duration=args.duration,
        clients=args.clients,
        database=args.database,
        patients=args.patients,
        seed=args.seed,
        source=args.source,
        rate=args.rate,
    )
    names = list(SCENARIOS) if args.name == "all" else [args.name]
    for name in names:
        result = SCENARIOS[name](options)
        print(result.table(), flush=True)
        print(f"\n(saved to {result.write_json()})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
