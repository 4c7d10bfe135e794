"""Capture screenshots of the web app's main pages for docs/web.md, in Debian's Chromium.

    .venv/bin/python scripts/web_screenshots.py [--out docs/images] [--patients 60]

Starts a Bevan server on a temporary data directory with the demo's synthetic
population, signs in as the demo clinician and the demo patient, and saves a PNG of
each page.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import orjson
import uvicorn

from bevan.app import create_app
from bevan.cli.demo_accounts import demo_sign_ins
from bevan.config import Settings
from bevan.records.loader import load_files
from bevan.records.service import RecordService
from bevan.store.migrate import upgrade
from bevan.store.record_store import RecordStore
from bevan.synth import write_population
from bevan.synth.bundles import population_files

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def serve(data_dir: Path, patients: int, port: int) -> tuple[uvicorn.Server, RecordStore]:
    store = RecordStore.from_url(f"sqlite:///{data_dir / 'bevan.db'}")
    upgrade(store.engine)
    settings = Settings(data_dir=data_dir, port=port)
    records = RecordService(store, settings.base_url)
    with tempfile.TemporaryDirectory() as scratch:
        write_population(patients, 1948, Path(scratch))
        load_files(records, population_files(Path(scratch)))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data:
        server, store = serve(Path(data), args.patients, args.port)
        records = RecordService(store, f"http://127.0.0.1:{args.port}/fhir")
        sign_ins = {s.role: s for s in demo_sign_ins(store.engine, records)}
        root = f"http://127.0.0.1:{args.port}"
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM)

            def shoot(tab: object, name: str) -> None:
                tab.screenshot(path=str(args.out / f"web-{name}.png"), full_page=True)  # type: ignore[attr-defined]
                print(f"saved {args.out / f'web-{name}.png'}")

            for role in ("clinician", "patient"):
                context = browser.new_context(
                    base_url=root, viewport={"width": 1100, "height": 800}
                )
                tab = context.new_page()
                tab.goto("/")
                if role == "clinician":
                    shoot(tab, "sign-in")
                tab.get_by_label("Username").fill(sign_ins[role].username)
                tab.get_by_label("Password").fill(sign_ins[role].password)
                tab.get_by_role("button", name="Sign in").click()
                if role == "clinician":
                    tab.wait_for_url("**/patients")
                    patient_id = store_patient(store, sign_ins)
                    patient = records.read("Patient", patient_id)
                    family = orjson.loads(patient.content or b"{}")["name"][0]["family"]
                    tab.get_by_label("Name").fill(family)
                    tab.get_by_role("button", name="Search").click()
                    tab.locator("table.bevan-results").wait_for()
                    shoot(tab, "search")
                    tab.goto(f"/patients/{patient_id}")
                    tab.locator("svg.bevan-chart").first.wait_for()
                    shoot(tab, "summary")
                    tab.goto(f"/patients/{patient_id}/break-glass")
                    shoot(tab, "break-glass")
                else:
                    tab.wait_for_url("**/my-record")
                    shoot(tab, "my-record")
                    tab.goto("/my-record/access")
                    shoot(tab, "access-log")
                context.close()
            browser.close()
        server.should_exit = True
    return 0


def store_patient(store: RecordStore, sign_ins: dict) -> str:  # type: ignore[type-arg]
    from bevan.security.users import UserDirectory

    account = UserDirectory.on(store.engine).by_username(sign_ins["patient"].username)
    assert account is not None and account.patient_id
    return account.patient_id


if __name__ == "__main__":
    raise SystemExit(main())
