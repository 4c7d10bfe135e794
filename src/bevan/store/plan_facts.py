"""PlanFacts: what search plans need to know about the data, remembered for a while.

Apart from the sessions because one PlanFacts outlives them all: it is the store's
memory of counts that are costly to ask again on every search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import Connection, func, select

from bevan.store.budget import learning
from bevan.store.schema import resource

MAX_REMEMBERED_DENSITIES = 10_000


class PlanFacts:
    """What search plans need to know about the data, remembered for a while: how many
    resources of each type are stored (recounted every few minutes: plans need the
    order of magnitude), whether a driving criterion has more matches than a page
    should list, and how many index rows (up to a bound) a composite's component has
    (each asked again after a minute). Every answer picks a plan, never the results,
    and asking costs a query."""

    def __init__(self, max_age: float = 300.0, density_age: float = 60.0) -> None:
        self.max_age = max_age
        self.density_age = density_age
        self._counts: dict[str, tuple[int, float]] = {}
        self._answers: dict[Hashable, tuple[Any, float]] = {}

    def size(self, connection: Connection, resource_type: str) -> int:
        now = time.monotonic()
        known = self._counts.get(resource_type)
        if known is not None and now - known[1] < self.max_age:
            return known[0]
        statement = select(func.count()).where(resource.c.resource_type == resource_type)
        with learning():
            count = int(connection.execute(statement).scalar_one())
        self._counts[resource_type] = (count, now)
        return count

    def dense(self, key: Hashable, count_reaches: Callable[[], bool]) -> bool:
        """Return the remembered answer for key, else count_reaches() (and remember it)."""
        return bool(self._recall(("dense", key), count_reaches))

    def rows_up_to(self, key: Hashable, count: Callable[[], int]) -> int:
        """Return the remembered row count for key, else count() (and remember it)."""
        return int(self._recall(("rows", key), count))

    def _recall(self, key: Hashable, ask: Callable[[], Any]) -> Any:
        now = time.monotonic()
        known = self._answers.get(key)
        if known is not None and now - known[1] < self.density_age:
            return known[0]
        with learning():
            answer = ask()
        if len(self._answers) >= MAX_REMEMBERED_DENSITIES:
            self._answers.clear()
        self._answers[key] = (answer, now)
        return answer
