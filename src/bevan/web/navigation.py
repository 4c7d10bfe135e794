"""The header's menu: one entry per area of the web app, shown to the roles it serves.

Each area is a page module under `web/pages/`. Areas still to come (recording vital
signs with NEWS2, the virtual-ward worklist, booking, statistics) take their place in
AREAS when their pages land, with the roles they serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAFF = frozenset({"clinician", "nurse", "receptionist"})


@dataclass(frozen=True)
class Area:
    text: str
    href: str
    roles: frozenset[str]


AREAS: tuple[Area, ...] = (
    Area("Find a patient", "/patients", STAFF),
    Area("Your record", "/my-record", frozenset({"patient"})),
    Area("Who has looked at your record", "/my-record/access", frozenset({"patient"})),
    Area("Break-glass reviews", "/break-glass/reviews", frozenset({"privacy-officer"})),
)


def navigation_for(role: str | None, path: str) -> list[dict[str, Any]]:
    """Return the header navigation items (nhsuk header `navigation.items`) for role."""
    if role is None:
        return []
    return [
        {"text": area.text, "href": area.href, "current": path == area.href}
        for area in AREAS
        if role in area.roles
    ]
