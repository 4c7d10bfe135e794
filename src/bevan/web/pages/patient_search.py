"""Finding a patient by name, NHS number (spaced or not) or date of birth.

The search is sent as a form (POST), never in the address: names, NHS numbers and
dates of birth do not belong in URLs, browser history or server logs. It runs as
`Patient?...` would for the same user: only patients they may see are found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode

import orjson
from starlette.responses import Response

from bevan.clinical.nhs_number import is_valid_nhs_number
from bevan.fhir.search import parse_search
from bevan.web import presentation as shown
from bevan.web.page_access import PageRequest
from bevan.web.patient_record import banner_of

RESULTS = 20


@dataclass
class SearchForm:
    name: str = ""
    nhs_number: str = ""
    day: str = ""
    month: str = ""
    year: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.name or self.nhs_number or self.day or self.month or self.year)


def search_form(page: PageRequest) -> Response:
    """GET /patients: the search form."""
    page.fhir.allow("Patient", "search-type")
    return page.render("patient_search.html", form=SearchForm(), results=None)


def search_patients(page: PageRequest) -> Response:
    """POST /patients: the patients matching the form, as the user may see them."""
    page.fhir.allow("Patient", "search-type")
    given = page.form
    form = SearchForm(
        name=given.get("name", "").strip(),
        nhs_number=given.get("nhs_number", "").strip(),
        day=given.get("birth-day", "").strip(),
        month=given.get("birth-month", "").strip(),
        year=given.get("birth-year", "").strip(),
    )
    pairs = _criteria(form)
    results = None
    if not form.errors:
        page.query = urlencode(pairs)
        query = parse_search("Patient", [*pairs, ("_count", str(RESULTS))])
        found = page.fhir.records.search(page.fhir.visible(query), visible=page.fhir.may_see)
        page.fhir.saw(found.matches)
        results = [
            banner_of(orjson.loads(v.content)) for v in found.matches if v.content is not None
        ]
    template = "patient_search_results.html" if page.is_partial() else "patient_search.html"
    status = 400 if form.errors else 200
    if page.is_partial():
        status = 200  # htmx swaps only successful answers; the errors are in the partial
    return page.render(template, status, form=form, results=results)


def _criteria(form: SearchForm) -> list[tuple[str, str]]:
    """Return the Patient search parameters for the form, noting errors on it."""
    pairs: list[tuple[str, str]] = []
    if form.empty:
        form.errors["name"] = "Enter a name, an NHS number or a date of birth"
        return pairs
    if form.name:
        if len(form.name) < 2:
            form.errors["name"] = "Enter at least 2 letters of the name"
        for word in form.name.replace(",", " ").split()[:3]:
            pairs.append(("name", word))
    if form.nhs_number:
        digits = "".join(c for c in form.nhs_number if c not in " -")
        if not (digits.isdigit() and len(digits) == 10):
            form.errors["nhs_number"] = "Enter the NHS number as 10 digits, like 943 476 5919"
        elif not is_valid_nhs_number(digits):
            form.errors["nhs_number"] = "This is not a valid NHS number: check the digits"
        else:
            pairs.append(("identifier", f"{shown.NHS_NUMBER_SYSTEM}|{digits}"))
    if form.day or form.month or form.year:
        try:
            born = date(int(form.year), int(form.month), int(form.day))
        except ValueError:
            form.errors["birth"] = "Enter the date of birth as day, month and year, like 15 3 1984"
        else:
            if born > date.today() or born.year < 1880:
                form.errors["birth"] = "The date of birth must be a real date in the past"
            else:
                pairs.append(("birthdate", born.isoformat()))
    return pairs
