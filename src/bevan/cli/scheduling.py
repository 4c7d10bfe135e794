"""`bevan slots generate`, `bevan waitlist expire-offers` and `bevan waitlist stats`:
a diary filled from a template, lapsed offers ended once, and who waits how long."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bevan.cli.options import data_options, open_store, settings_from


def cmd_slots_generate(args: argparse.Namespace) -> int:
    from bevan.app import record_service
    from bevan.fhir.errors import FhirError
    from bevan.scheduling.slot_generation import generate_slots, template_from

    settings = settings_from(args)
    store = open_store(settings)
    pairs: list[tuple[str, Any]] = [("start", args.start), ("days", str(args.days))]
    pairs += [("session", session) for session in args.session or ()]
    pairs += [("minutes", str(args.minutes)), ("weekdays", args.weekdays)]
    pairs.append(("patientBookable", "false" if args.practice_only else "true"))
    try:
        made = generate_slots(
            record_service(settings, store), args.schedule, template_from(pairs, "--")
        )
    except FhirError as error:
        print(f"bevan slots generate: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Made {len(made)} free slots in Schedule/{args.schedule}.")
    return 0


def cmd_waitlist_expire_offers(args: argparse.Namespace) -> int:
    from bevan.app import record_service
    from bevan.scheduling.diary import patient_of
    from bevan.scheduling.waiting_list import OFFER_ENDED_REASON, expire_offers
    from bevan.security.audit_key import load_audit_key
    from bevan.security.service_audit import SCHEDULER, service_update
    from bevan.security.trail import AuditTrail
    from bevan.store.audit import AuditLog

    settings = settings_from(args)
    store = open_store(settings)
    try:
        ended = expire_offers(record_service(settings, store))
        trail = AuditTrail(
            AuditLog(store.engine, store.write_lock, key=load_audit_key(settings.data_dir))
        )
        if ended:
            trail.record_sync(
                [
                    service_update(
                        SCHEDULER,
                        (f"Task/{task['id']}", str((task.get("focus") or {}).get("reference"))),
                        patient_of(task),
                        OFFER_ENDED_REASON,
                        settings.base_url,
                    )
                    for task in ended
                ]
            )
    finally:
        store.close()
    print(f"Ended {len(ended)} lapsed offers; their slots went to the next person waiting.")
    return 0


def cmd_waitlist_stats(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from bevan.app import record_service
    from bevan.scheduling.waiting_list import waiting_list_statistics

    settings = settings_from(args)
    store = open_store(settings)
    try:
        found = waiting_list_statistics(record_service(settings, store))
    finally:
        store.close()
    print(json.dumps([asdict(each) for each in found], indent=2))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bevan slots` and `bevan waitlist` to the command's subparsers."""
    slots = commands.add_parser("slots", help="a diary's slots")
    slot_commands = slots.add_subparsers(dest="slots_command", required=True)
    generate = slot_commands.add_parser(
        "generate", help="make free slots in a Schedule from a template (default: a week)"
    )
    data_options(generate)
    generate.add_argument("--schedule", required=True, help="the Schedule's id")
    generate.add_argument("--start", required=True, help="the first day, YYYY-MM-DD")
    generate.add_argument("--days", type=int, default=7, help="how many days (default 7)")
    generate.add_argument(
        "--session",
        action="append",
        help="HH:MM-HH:MM, repeatable (default 09:00-12:00 and 14:00-17:00, Europe/London)",
    )
    generate.add_argument("--minutes", type=int, default=15, help="slot length (default 15)")
    generate.add_argument("--weekdays", default="mon,tue,wed,thu,fri")
    generate.add_argument(
        "--practice-only", action="store_true", help="slots patients may not book themselves"
    )
    generate.set_defaults(run=cmd_slots_generate)

    waitlist = commands.add_parser("waitlist", help="waiting lists")
    waitlist_commands = waitlist.add_subparsers(dest="waitlist_command", required=True)
    expire = waitlist_commands.add_parser(
        "expire-offers", help="end lapsed slot offers once and offer their slots to the next"
    )
    data_options(expire)
    expire.set_defaults(run=cmd_waitlist_expire_offers)
    stats = waitlist_commands.add_parser(
        "stats", help="per service: people waiting, median wait, offers open, slots wasted"
    )
    data_options(stats)
    stats.set_defaults(run=cmd_waitlist_stats)


__all__ = ["register"]
