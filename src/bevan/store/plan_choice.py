"""The choosing of a search's plan: list the matches, or walk the type in row order.

Kept apart from the reads themselves because the choice is a cost model (how many
rows a criterion drives, how a composite should lead), not a way of reading.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Select, func, select

from bevan.fhir.search import CompositeMatch, Criterion, SearchQuery
from bevan.store.plan_facts import PlanFacts
from bevan.store.raw import RawCursor
from bevan.store.search import SearchCompiler, narrow_chain
from bevan.store.shapes import ShapeCache

# A driving criterion with more index rows than a page should list is walked instead:
# the threshold depends on the type's size (see ReadSession._dense) within these bounds.
MIN_DENSE_MATCHES = 500
MAX_LISTED_MATCHES = 20_000
SQRT_WALK_STEP_COST = 2.5  # a walk step costs about six listing steps
# A composite's components have their index rows counted up to this many, to pick the
# one to lead; one whose leading component has fewer is listed without more ado. One
# whose every component has more is judged from a sample: how many of the first
# COMPOSITE_SAMPLE rows of its leading component match the rest, scaled to that
# component's rows, counted up to LEADING_ROWS_COUNTED (see _composite_walks).
DENSE_MATCHES = 5000
COMPOSITE_SAMPLE = 1000
LEADING_ROWS_COUNTED = 100_000


class PlanChoice:
    """How a read session chooses a search's plan (ReadSession inherits it): which
    component of each composite leads, and whether a page lists the driving criterion's
    matches or walks the type in row-key order."""

    connection: Connection
    facts: PlanFacts
    shapes: ShapeCache
    compiler: SearchCompiler
    # Composites reordered to lead with their fewest rows: whether those are few.
    _narrow_leads: dict[CompositeMatch, bool]

    @property
    def indexed(self) -> RawCursor:
        """The cursor for reads of the index tables (see ReadSession.indexed)."""
        raise NotImplementedError

    def _composites_lead_with_fewest(self, query: SearchQuery) -> SearchQuery:
        """Reorder each composite's components so that the one with the fewest index rows
        leads and the others are checked per row: `code$value` searches start from a
        narrow value range rather than from every row of a common code, and the reverse."""
        if not any(isinstance(c, CompositeMatch) for c in query.criteria):
            return query
        criteria = tuple(
            self._lead_with_fewest(query.resource_type, c) if isinstance(c, CompositeMatch) else c
            for c in query.criteria
        )
        return replace(query, criteria=criteria)

    def _lead_with_fewest(self, resource_type: str, composite: CompositeMatch) -> Criterion:
        alternatives = []
        most_led = 0
        for parts in composite.alternatives:
            counted = sorted(
                ((self._index_rows_up_to(resource_type, part), i) for i, part in enumerate(parts))
            )
            alternatives.append(tuple(parts[i] for _, i in counted))
            most_led = max(most_led, counted[0][0])
        led = replace(composite, alternatives=tuple(alternatives))
        self._narrow_leads[led] = most_led < DENSE_MATCHES
        return led

    def _index_rows_up_to(
        self, resource_type: str, part: Criterion, most: int = DENSE_MATCHES
    ) -> int:
        """Return how many index rows one component matches alone, up to most
        (remembered for a while: a common code leads many searches, each counting its
        thousands of rows again, while the values beside it change)."""
        parts = (resource_type, part, most)

        def count() -> int:
            probe = self.shapes.execute(
                self.indexed, "component rows", parts, self._component_count
            )
            return int(probe.fetchone()[0])

        return self.facts.rows_up_to(parts, count)

    def _component_count(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, part, limit = parts
        rows = self.compiler.component_rows(resource_type, part)
        return select(func.count()).select_from(rows.limit(limit).subquery())

    def _dense(self, query: SearchQuery, limit: int) -> bool:
        """Return True if the driving criterion matches more rows than a page should list:
        then pages walk the type in row-key order, testing each resource, and stop at a
        page's worth instead of listing every match.

        Listing costs about one step per match; walking about limit * size / matches
        (a page's worth at the matches' density), and a walk step, which tests one
        resource, costs about six listing steps (as chained and quantity searches
        walked and listed at a million resources showed: benchmarks/search.py). Walking
        wins once matches pass sqrt(6 * limit * size). Composites are judged otherwise (see
        _composite_walks).
        """
        driver = self.compiler.driver(query)
        if driver is None:
            return False
        if isinstance(driver, CompositeMatch) and self._narrow_leads.get(driver, False):
            # Its leading components have fewer rows than DENSE_MATCHES: list them, with
            # no need to count the matches first.
            return False
        size = self.facts.size(self.connection, query.resource_type)
        if isinstance(driver, CompositeMatch):
            return self._composite_walks(query.resource_type, driver, limit, size)
        threshold = self._dense_threshold(limit, size)
        if narrow_chain(driver):
            # Its matches lie together (one diary's slots), where a walk in row-key
            # order reaches them late: listed up to the most any criterion lists.
            threshold = MAX_LISTED_MATCHES

        def count_reaches() -> bool:
            parts = (query.resource_type, driver, threshold)
            probe = self.shapes.execute(self.indexed, "driving rows", parts, self._driving_count)
            return int(probe.fetchone()[0]) >= threshold

        return self.facts.dense((query.resource_type, driver, threshold), count_reaches)

    @staticmethod
    def _dense_threshold(limit: int, size: int) -> int:
        """Return how many matches make a driving criterion dense (see _dense)."""
        walked = int(SQRT_WALK_STEP_COST * math.sqrt(limit * size))
        return min(MAX_LISTED_MATCHES, max(MIN_DENSE_MATCHES, walked))

    def _composite_walks(
        self, resource_type: str, composite: CompositeMatch, limit: int, size: int
    ) -> bool:
        """Return True if a page of a composite whose every component has thousands of
        rows is found sooner by walking the type than by listing its matches.

        Listing checks every row of the leading component against the element's other
        components, each check costing about a walk step; walking tests about
        limit * size / matches resources. Counting the matches to choose would check
        every leading row too, costing about as much as listing them (heart rates over
        a bound at a million resources, benchmarks/search.py), so they are estimated from how many of the first COMPOSITE_SAMPLE leading rows match.
        """

        def estimate() -> bool:
            leading = matches = 0.0
            for parts in composite.alternatives:
                rows = self._index_rows_up_to(resource_type, parts[0], LEADING_ROWS_COUNTED)
                key = (resource_type, parts, COMPOSITE_SAMPLE)
                sampled = self.shapes.execute(
                    self.indexed, "composite sample", key, self._composite_sample
                ).fetchone()[0]
                leading += rows
                matches += rows * int(sampled) / max(1, min(rows, COMPOSITE_SAMPLE))
            return matches * leading > limit * size

        return self.facts.dense((resource_type, composite, limit, size), estimate)

    def _composite_sample(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, components, sample = parts
        return self.compiler.composite_sample(resource_type, components, sample)

    def _driving_count(self, parts: tuple[Any, ...]) -> Select[Any]:
        resource_type, driver, limit = parts
        rows = self.compiler.counted_rows(resource_type, driver)
        return select(func.count()).select_from(rows.limit(limit).subquery())
