"""The web app over real HTTP: signing in through Bevan's own OAuth flow (authorization
code with PKCE), the session cookie, CSRF, the Content-Security-Policy and signing out;
search, the banner, the summary and its charts, break-glass and its review, a patient's
record and access log; every role refused what it may not see, with a page saying why;
every view audited. One module, so that its tests share one loaded server per engine."""

from __future__ import annotations

import re
from typing import Any

import httpx

from bevan.security.audit import summarise
from bevan.web import presentation
from tests.web.conftest import Clinic, csrf_of, sign_in, text_of


def _search(browser: httpx.Client, **fields: str) -> httpx.Response:
    form = browser.get("/patients")
    return browser.post("/patients", data={"csrf_token": csrf_of(form), **fields})


def _nhs_number(patient: dict[str, Any]) -> str:
    number = presentation.nhs_number(patient)
    assert number is not None
    return number


def test_a_clinician_finds_a_patient_by_name_nhs_number_spaced_or_not_and_birth_date(
    clinic: Clinic,
) -> None:
    browser = clinic.browser("clinician")
    patient = clinic.patient
    family = patient["name"][0]["family"]
    number = _nhs_number(patient)
    born = patient["birthDate"]
    link = f'href="/patients/{patient["id"]}"'
    searches = [
        {"name": family},
        {"nhs_number": number},
        {"nhs_number": f"{number[:3]} {number[3:6]} {number[6:]}"},
        {"birth-day": born[8:10], "birth-month": born[5:7], "birth-year": born[:4]},
    ]
    for fields in searches:
        found = _search(browser, **fields)
        assert found.status_code == 200, fields
        assert link in found.text, fields
    # Enough to pick the right person: name, birth date, gender, NHS number, address.
    shown = text_of(_search(browser, nhs_number=number))
    assert presentation.banner_name(patient) in shown
    assert presentation.day(born) in shown
    assert presentation.spaced_nhs_number(number) in shown
    assert patient["address"][0]["postalCode"] in shown


def test_a_search_never_puts_patient_details_in_the_address(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    number = _nhs_number(clinic.patient)
    page = browser.get("/patients")
    assert 'method="post"' in page.text
    found = browser.post("/patients", data={"csrf_token": csrf_of(page), "nhs_number": number})
    assert number not in str(found.url)


def test_a_search_does_not_find_patients_the_clinician_has_no_relationship_with(
    clinic: Clinic,
) -> None:
    browser = clinic.browser("clinician")
    found = _search(browser, nhs_number=_nhs_number(clinic.other_patient))
    assert found.status_code == 200
    assert "No patients found" in found.text
    assert clinic.other_patient["id"] not in found.text


def test_a_bad_search_says_what_to_fix(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    assert "Enter a name, an NHS number or a date of birth" in _search(browser).text
    wrong = _search(browser, nhs_number="123 456 7890")
    assert wrong.status_code == 400
    assert "not a valid NHS number" in wrong.text
    date = _search(browser, **{"birth-day": "31", "birth-month": "2", "birth-year": "1990"})
    assert "Enter the date of birth as day, month and year" in date.text
    partial = browser.post(
        "/patients",
        data={"csrf_token": csrf_of(browser.get("/patients")), "nhs_number": "12"},
        headers={"HX-Request": "true"},
    )
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="search-results"')
    assert "Enter the NHS number as 10 digits" in partial.text


def test_the_patient_banner_follows_the_common_user_interface(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    patient = clinic.patient
    page = browser.get(f"/patients/{patient['id']}")
    assert page.status_code == 200
    banner = re.search(r'<section class="bevan-banner.*?</section>', page.text, re.S)
    assert banner is not None
    shown = " ".join(re.sub(r"<[^>]+>", " ", banner.group(0)).split())
    name = patient["name"][0]
    expected = f"{name['family'].upper()}, {' '.join(name['given'])}"
    if name.get("prefix"):
        expected += f" ({' '.join(name['prefix'])})"
    assert shown.startswith(expected)
    born = patient["birthDate"]
    months = presentation.MONTHS[int(born[5:7]) - 1]
    assert re.search(rf"Born {born[8:10]}-{months}-{born[:4]} \(\d+y\)", shown)
    assert f"Gender {patient['gender'].capitalize()}" in shown
    number = _nhs_number(patient)
    assert f"NHS No. {number[:3]} {number[3:6]} {number[6:]}" in shown
    assert re.search(
        r"Allergies (Allergies recorded|No known allergies|Allergies not known)", shown
    )


def test_the_summary_shows_the_record_and_vital_sign_trends_as_charts(clinic: Clinic) -> None:
    browser = clinic.browser("nurse")
    page = browser.get(f"/patients/{clinic.patient['id']}")
    assert page.status_code == 200
    shown = text_of(page)
    for heading in ("Problems", "Medicines", "Allergies", "Latest vital signs"):
        assert heading in shown
    assert "Recent encounters" in shown and "Documents" in shown
    charts = re.findall(r'<svg class="bevan-chart".*?</svg>', page.text, re.S)
    assert charts, "no trend chart"
    # A chart, not a table: a drawn line through the readings, each a point with its value.
    assert all('role="img"' in c and "<path" in c and "<circle" in c for c in charts)
    with clinic.fhir() as fhir:
        readings = fhir.get(
            "/Observation",
            params={"subject": f"Patient/{clinic.patient['id']}", "category": "vital-signs"},
        ).json()
    assert readings["entry"], "the patient has vital signs"


def test_a_clinician_is_refused_a_record_they_have_no_relationship_with_and_may_break_the_glass(
    clinic: Clinic,
) -> None:
    browser = clinic.browser("clinician")
    other = clinic.other_patient["id"]
    refused = browser.get(f"/patients/{other}")
    assert refused.status_code == 403
    assert "no legitimate relationship" in text_of(refused)
    assert presentation.banner_name(clinic.other_patient) not in refused.text
    assert f'href="/patients/{other}/break-glass"' in refused.text

    form = browser.get(f"/patients/{other}/break-glass")
    assert "4 hours" in text_of(form)
    no_reason = browser.post(
        f"/patients/{other}/break-glass", data={"csrf_token": csrf_of(form), "reason": ""}
    )
    assert no_reason.status_code == 400
    assert "Enter the reason" in no_reason.text
    reason = "unconscious in the emergency department, no other record"
    opened = browser.post(
        f"/patients/{other}/break-glass", data={"csrf_token": csrf_of(form), "reason": reason}
    )
    assert opened.status_code == 303
    page = browser.get(f"/patients/{other}")
    assert page.status_code == 200
    shown = text_of(page)
    assert presentation.banner_name(clinic.other_patient) in shown
    assert "Emergency access" in shown and "Your access ends at" in shown
    assert reason in shown

    # The privacy officer sees it in the review queue and closes it.
    officer = clinic.browser("privacy-officer")
    queue = officer.get("/break-glass/reviews")
    assert queue.status_code == 200
    assert reason in queue.text
    grant = re.search(r'action="/break-glass/reviews/(\d+)".*?', queue.text, re.S)
    assert grant is not None
    number = grant.group(1)
    empty = officer.post(
        f"/break-glass/reviews/{number}", data={"csrf_token": csrf_of(queue), "outcome": ""}
    )
    assert empty.status_code == 400 and "Enter what you found and did" in empty.text
    closed = officer.post(
        f"/break-glass/reviews/{number}",
        data={"csrf_token": csrf_of(queue), "outcome": "Appropriate: emergency admission"},
    )
    assert closed.status_code == 303
    assert f'action="/break-glass/reviews/{number}"' not in officer.get("/break-glass/reviews").text


def test_each_role_is_refused_what_it_may_not_see_with_a_page_saying_why(clinic: Clinic) -> None:
    patient = clinic.patient["id"]
    receptionist = clinic.browser("receptionist")
    refused = receptionist.get(f"/patients/{patient}")
    assert refused.status_code == 403
    # The API's own reason: a receptionist's token grants no clinical record types.
    assert "do not allow search-type on allergyintolerance" in text_of(refused).lower()
    assert "Break the glass" not in refused.text
    assert receptionist.get(f"/patients/{patient}/break-glass").status_code == 403

    analyst = clinic.browser("analyst")
    for path in ("/patients", f"/patients/{patient}", "/my-record", "/break-glass/reviews"):
        page = analyst.get(path)
        assert page.status_code == 403, path
        assert "You cannot see this page" in page.text
        assert presentation.banner_name(clinic.patient) not in page.text

    own = clinic.browser("patient")
    for path in ("/patients", f"/patients/{patient}", "/break-glass/reviews"):
        assert own.get(path).status_code == 403, path

    clinician = clinic.browser("clinician")
    assert clinician.get("/break-glass/reviews").status_code == 403
    assert clinician.get("/my-record").status_code == 403


def test_a_patient_reads_their_own_record_in_plain_words(clinic: Clinic) -> None:
    browser = clinic.browser("patient")
    home = browser.get("/")
    assert home.headers["location"] == "/my-record"
    page = browser.get("/my-record")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Your record" in shown and "Medicines you take" in shown
    assert presentation.banner_name(clinic.patient) in shown
    assert "<svg" in page.text
    # Another patient's summary is not theirs to open.
    assert browser.get(f"/patients/{clinic.other_patient['id']}").status_code == 403


def test_a_patient_sees_who_has_looked_at_their_record_with_role_organisation_and_break_glass(
    clinic: Clinic,
) -> None:
    clinician = clinic.browser("clinician")
    assert clinician.get(f"/patients/{clinic.patient['id']}").status_code == 200
    browser = clinic.browser("patient")
    page = browser.get("/my-record/access")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Test clinician" in shown
    assert "Clinician" in shown
    assert clinic.practice in shown
    assert "Looked at your record" in shown


def test_page_views_are_audited_like_the_reads_they_stand_for(clinic: Clinic) -> None:
    browser = clinic.browser("nurse")
    patient = clinic.patient["id"]
    assert browser.get(f"/patients/{patient}").status_code == 200
    with clinic.fhir() as fhir:
        entries = fhir.get(
            "/AuditEvent", params={"patient": f"Patient/{patient}", "_count": "50"}
        ).json()["entry"]
    paths = [
        e["resource"]
        for e in entries
        if any(
            (d.get("type") or "") == "path" or "path" in str(d)
            for d in e["resource"].get("entity", [])
        )
    ]
    assert paths
    page_reads = [
        e["resource"]
        for e in entries
        if f"/patients/{patient}" in str(e["resource"])
        and e["resource"]["subtype"][0]["code"] == "read"
    ]
    assert page_reads, "the summary page's view is not in the audit trail"
    event = page_reads[0]
    assert event["outcome"] == "0"
    # A search page's entry carries its criteria, as the API's search entry does.
    clinician = clinic.browser("clinician")
    number = _nhs_number(clinic.patient)
    assert _search(clinician, nhs_number=number).status_code == 200
    with clinic.fhir() as fhir:
        searches = fhir.get(
            "/AuditEvent",
            params={"patient": f"Patient/{patient}", "_count": "10"},
        ).json()["entry"]
    queries = [summarise(e["resource"]).query or "" for e in searches]
    assert any(number in q and "identifier" in q for q in queries), queries
    assert any(
        a.get("role", [{}])[0].get("text") == "nurse" for a in event["agent"] if a.get("role")
    )


# --- signing in and out -------------------------------------------------------------


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(clinic: Clinic) -> None:
    with httpx.Client(base_url=clinic.root) as browser:
        home = browser.get("/")
        assert home.status_code == 303
        assert home.headers["location"] == "/sign-in"
        started = browser.get("/sign-in")
        target = started.headers["location"]
        assert target.startswith("/auth/authorize?")
        assert "code_challenge_method=S256" in target
        assert "code_challenge=" in target


def test_signing_in_sets_an_http_only_lax_cookie_that_survives_a_reload(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    cookie = next(c for c in browser.cookies.jar if c.name == "bevan_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    assert not cookie.secure  # plain http on this machine; https sets Secure
    # A new browser tab (a fresh client with the same cookie) is still signed in.
    with httpx.Client(base_url=clinic.root, cookies={"bevan_session": cookie.value or ""}) as tab:
        page = tab.get("/patients")
        assert page.status_code == 200
        assert "Find a patient" in page.text


def test_a_sign_in_callback_with_a_forged_state_signs_no_one_in(clinic: Clinic) -> None:
    with httpx.Client(base_url=clinic.root) as browser:
        browser.get("/sign-in")
        answer = browser.get("/sign-in/callback", params={"code": "x" * 43, "state": "forged"})
        assert answer.status_code == 400
        assert "You were not signed in" in answer.text
        assert "bevan_session" not in answer.headers.get("set-cookie", "")


def test_every_page_has_a_strict_content_security_policy(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    page = browser.get("/patients")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: every script is a file


def test_a_form_without_its_csrf_token_is_refused_with_a_reason(clinic: Clinic) -> None:
    browser = clinic.browser("clinician")
    refused = browser.post("/patients", data={"name": "Smith"})
    assert refused.status_code == 403
    assert "did not come from this site" in refused.text
    forged = browser.post("/patients", data={"name": "Smith", "csrf_token": "0" * 64})
    assert forged.status_code == 403


def test_signing_out_revokes_the_session_and_its_token(clinic: Clinic) -> None:
    browser = sign_in(clinic, "nurse")  # a session of its own, since it ends it
    cookie = browser.cookies["bevan_session"]
    token = _access_token(cookie)
    with httpx.Client(base_url=clinic.server.base_url) as api:
        before = api.get("/Patient", headers={"Authorization": f"Bearer {token}"})
        assert before.status_code == 200
    page = browser.get("/patients")
    out = browser.post("/sign-out", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303 and out.headers["location"] == "/signed-out"
    # The old cookie, replayed, signs no one in, and its token is revoked at the API.
    with httpx.Client(base_url=clinic.root, cookies={"bevan_session": cookie}) as replay:
        assert replay.get("/patients").headers.get("location") == "/sign-in"
    with httpx.Client(base_url=clinic.server.base_url) as api:
        after = api.get("/Patient", headers={"Authorization": f"Bearer {token}"})
        assert after.status_code == 401


def test_the_fhir_api_is_unchanged_beside_the_web_app(clinic: Clinic) -> None:
    with httpx.Client(base_url=clinic.root) as client:
        page = client.get("/no-such-page", headers={"Accept": "text/html"})
        assert page.status_code == 404 and "Page not found" in page.text
        api = client.get("/no-such-page", headers={"Accept": "application/fhir+json"})
        assert api.status_code == 404
        assert api.json()["resourceType"] == "OperationOutcome"
    with httpx.Client(base_url=clinic.server.base_url) as api:
        metadata = api.get("/metadata")
        assert metadata.status_code == 200
        assert metadata.json()["resourceType"] == "CapabilityStatement"


def _access_token(cookie: str) -> str:
    from bevan.web.sessions import WebSession

    session = WebSession.from_cookie(cookie)
    assert session is not None
    return session.access_token


def test_the_demo_prints_sign_ins_that_open_the_web_app(clinic: Clinic) -> None:
    from bevan.cli.demo_accounts import demo_sign_ins
    from bevan.security.users import UserDirectory

    made = demo_sign_ins(clinic.server.store.engine, clinic.server.records)
    sign_ins = {s.role: s for s in made}
    assert set(sign_ins) == {"clinician", "patient"}
    browsers = {}
    for role, first_page in (("clinician", "/patients"), ("patient", "/my-record")):
        browser = sign_in(clinic, role, sign_ins[role].username, sign_ins[role].password)
        assert browser.get("/").headers["location"] == first_page
        assert browser.get(first_page).status_code == 200
        browsers[role] = browser
    # The demo clinician cares for the demo patient: their practice is the patient's.
    account = UserDirectory.on(clinic.server.store.engine).by_username(sign_ins["patient"].username)
    assert account is not None and account.patient_id
    assert browsers["clinician"].get(f"/patients/{account.patient_id}").status_code == 200


def test_a_session_whose_access_token_has_expired_is_renewed_without_signing_in_again(
    clinic: Clinic,
) -> None:
    from bevan.security.tokens import TokenAuthority
    from bevan.web.sessions import WebSession

    browser = sign_in(clinic, "nurse")  # a session of its own: its refresh token rotates
    session = WebSession.from_cookie(browser.cookies["bevan_session"])
    assert session is not None and session.refresh_token
    expired = TokenAuthority.in_directory(clinic.server.data_dir).issue(
        "someone", "nurse", organisation=clinic.practice, lifetime=-60
    )
    stale = WebSession(session.id, expired, session.refresh_token)
    with httpx.Client(base_url=clinic.root, cookies={"bevan_session": stale.cookie()}) as tab:
        page = tab.get("/patients")
        assert page.status_code == 200
        renewed = WebSession.from_cookie(page.cookies["bevan_session"])
        assert renewed is not None
        assert renewed.access_token != expired and renewed.refresh_token != session.refresh_token
        # The form token belongs to the session, not to its tokens: it still works.
        assert renewed.id == session.id
        assert csrf_of(page) == csrf_of(browser.get("/patients"))
