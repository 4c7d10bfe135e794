"""The web app in a real browser (Debian's Chromium, driven by Playwright): signing in,
finding a patient, the banner and chart, break-glass and its review, a patient's
access log, refusals; every page checked by axe-core, and a walk by keyboard alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from bevan.web import presentation
from tests.web.conftest import PASSWORD, Clinic

playwright = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: what the pages answer on both engines is test_pages.py's to show;
    this module shows what the browser makes of it, which no engine changes."""
    return "sqlite"


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object, clinic: Clinic) -> Iterator[object]:
    context = chromium.new_context(base_url=clinic.root)  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    # A script or style the Content-Security-Policy blocks shows up as a console error;
    # a script that fails, as a page error. (A refused page's own 403 is no error.)
    tab.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


AXE = axe_playwright.Axe()


def accessible(tab: object) -> None:
    """Assert axe-core finds no violation on the page as shown (WCAG 2.2 AA rules)."""
    results = AXE.run(tab)
    assert results.violations_count == 0, results.generate_report()


def sign_in(tab: object, clinic: Clinic, role: str) -> None:
    tab.goto("/")  # type: ignore[attr-defined]
    tab.get_by_label("Username").fill(clinic.usernames[role])  # type: ignore[attr-defined]
    tab.get_by_label("Password").fill(PASSWORD)  # type: ignore[attr-defined]
    tab.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]


def test_a_clinician_signs_in_finds_a_patient_and_opens_their_record(
    page: object, clinic: Clinic
) -> None:
    tab = page
    tab.goto("/")  # type: ignore[attr-defined]
    accessible(tab)  # the sign-in page
    sign_in(tab, clinic, "clinician")
    tab.wait_for_url("**/patients")  # type: ignore[attr-defined]
    assert tab.locator("link[href$='nhsuk-frontend.min.css']").count() == 1  # type: ignore[attr-defined]
    accessible(tab)
    number = presentation.nhs_number(clinic.patient) or ""
    tab.get_by_label("NHS number").fill(f"{number[:3]} {number[3:6]} {number[6:]}")  # type: ignore[attr-defined]
    tab.get_by_role("button", name="Search").click()  # type: ignore[attr-defined]
    name = presentation.banner_name(clinic.patient)
    result = tab.get_by_role("link", name=name)  # type: ignore[attr-defined]
    result.wait_for()
    assert tab.url.endswith("/patients")  # type: ignore[attr-defined]  (htmx: no reload, no details in the URL)
    accessible(tab)
    result.click()
    banner = tab.get_by_role("region", name="Patient banner")  # type: ignore[attr-defined]
    banner.wait_for()
    assert name in banner.inner_text()
    assert f"{number[:3]} {number[3:6]} {number[6:]}" in banner.inner_text()
    charts = tab.locator("svg.bevan-chart[role=img]")  # type: ignore[attr-defined]
    assert charts.count() >= 1
    assert charts.first.bounding_box()["width"] > 200  # drawn, not an empty box
    accessible(tab)
    # The session survives a reload.
    tab.reload()  # type: ignore[attr-defined]
    banner.wait_for()
    tab.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]
    tab.get_by_role("heading", name="You have signed out").wait_for()  # type: ignore[attr-defined]
    accessible(tab)


def test_a_keyboard_alone_finds_a_patient_and_opens_their_record(
    page: object, clinic: Clinic
) -> None:
    tab = page
    sign_in(tab, clinic, "nurse")
    tab.wait_for_url("**/patients")  # type: ignore[attr-defined]
    keyboard = tab.keyboard  # type: ignore[attr-defined]
    keyboard.press("Tab")
    focused = tab.evaluate("document.activeElement.textContent")  # type: ignore[attr-defined]
    assert "Skip to main content" in focused
    keyboard.press("Enter")
    # From the main content, Tab reaches the name field first.
    keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.id") == "name"  # type: ignore[attr-defined]
    keyboard.type(clinic.patient["name"][0]["family"])
    keyboard.press("Enter")
    name = presentation.banner_name(clinic.patient)
    tab.get_by_role("link", name=name).wait_for()  # type: ignore[attr-defined]
    for _ in range(30):
        keyboard.press("Tab")
        if tab.evaluate("document.activeElement.textContent") == name:  # type: ignore[attr-defined]
            break
    else:
        pytest.fail("the result could not be reached with Tab")
    keyboard.press("Enter")
    tab.get_by_role("region", name="Patient banner").wait_for()  # type: ignore[attr-defined]


def test_break_glass_then_review_by_a_privacy_officer(page: object, clinic: Clinic) -> None:
    tab = page
    other = clinic.other_patient["id"]
    sign_in(tab, clinic, "clinician")
    tab.wait_for_url("**/patients")  # type: ignore[attr-defined]
    tab.goto(f"/patients/{other}")  # type: ignore[attr-defined]
    tab.get_by_role("heading", name="You cannot see this page").wait_for()  # type: ignore[attr-defined]
    assert "no legitimate relationship" in tab.content()  # type: ignore[attr-defined]
    accessible(tab)
    tab.get_by_role("link", name="Break the glass").click()  # type: ignore[attr-defined]
    accessible(tab)
    tab.get_by_role("button", name="Open the record").click()  # type: ignore[attr-defined]
    tab.get_by_text("Enter the reason you need this record now").first.wait_for()  # type: ignore[attr-defined]
    accessible(tab)  # the form with its error
    tab.get_by_label("Why do you need this record now?").fill("collapsed in clinic, no record here")  # type: ignore[attr-defined]
    tab.get_by_role("button", name="Open the record").click()  # type: ignore[attr-defined]
    tab.get_by_text("Your access ends at").wait_for()  # type: ignore[attr-defined]
    accessible(tab)
    tab.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]

    sign_in(tab, clinic, "privacy-officer")
    tab.wait_for_url("**/break-glass/reviews")  # type: ignore[attr-defined]
    assert "collapsed in clinic, no record here" in tab.content()  # type: ignore[attr-defined]
    accessible(tab)


def test_a_patient_reads_their_record_and_who_has_looked_at_it(
    page: object, clinic: Clinic
) -> None:
    tab = page
    sign_in(tab, clinic, "patient")
    tab.wait_for_url("**/my-record")  # type: ignore[attr-defined]
    tab.get_by_role("heading", name="Your record").wait_for()  # type: ignore[attr-defined]
    accessible(tab)
    tab.get_by_role("link", name="See who has looked at your record").click()  # type: ignore[attr-defined]
    tab.get_by_role("heading", name="Who has looked at your record").wait_for()  # type: ignore[attr-defined]
    table = tab.locator("table.bevan-access-log")  # type: ignore[attr-defined]
    assert "Looked at your record" in table.inner_text()
    accessible(tab)
    tab.goto(f"/patients/{clinic.patient['id']}")  # type: ignore[attr-defined]
    tab.get_by_role("heading", name="You cannot see this page").wait_for()  # type: ignore[attr-defined]
    accessible(tab)


def test_a_receptionist_is_shown_why_a_clinical_record_is_refused(
    page: object, clinic: Clinic
) -> None:
    tab = page
    sign_in(tab, clinic, "receptionist")
    tab.wait_for_url("**/patients")  # type: ignore[attr-defined]
    response = tab.goto(f"/patients/{clinic.patient['id']}")  # type: ignore[attr-defined]
    assert response.status == 403
    heading = tab.get_by_role("heading", name="You cannot see this page")  # type: ignore[attr-defined]
    heading.wait_for()
    assert tab.locator(".bevan-reason").inner_text()  # type: ignore[attr-defined]
    assert presentation.banner_name(clinic.patient) not in tab.content()  # type: ignore[attr-defined]
    accessible(tab)
