"""Does this read leave the event loop? A read that may be long is tried on the loop
first, within the store's read budget, unless its kind keeps overrunning: one object
per app, which remembers the kinds that do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from bevan.store.budget import OverBudget, ReadBudget, time_budget

T = TypeVar("T")

# A kind of read (its path without ids, and its parameter names) that has overrun the
# budget in more than one try in OVERRUN_SHARE goes straight to a thread for a while,
# once it has overrun the store's ReadBudget.judged_after times: trying it on the loop
# again would most likely waste the budget, and hold up every other request for it.
# Tries are remembered, the older halved away (see ReadBudget for why each engine
# judges after a different number of overruns).
SLOW_READ_SECONDS = 30.0
OVERRUN_SHARE = 10
REMEMBERED_TRIES = 64
MAX_REMEMBERED_SLOW_READS = 1000


class LoopReadPolicy:
    """Decides, and learns, which reads are tried on the event loop within budget.

    A read that may be long is first tried on the loop: most searches finish well inside
    the budget, and for them the trip to a thread and back costs more than the search
    itself (benchmarks/search.py, by name prefix, shows the difference). One that does
    not finish is interrupted, having stored nothing, and run again on a thread.
    """

    def __init__(self, budget: ReadBudget) -> None:
        self.budget = budget
        self.slow_until: dict[tuple[Any, ...], float] = {}
        # Per kind of read: [tries on the loop, of which overran].
        self.tries: dict[tuple[Any, ...], list[int]] = {}

    def try_on_the_loop(self, request: Request, read: Callable[[], T]) -> T | None:
        """Return read's answer if it comes within the budget of database work, else
        None (it stored nothing; run it again off the loop)."""
        if request.method != "GET":
            return None
        kind = read_kind(request)
        now = time.monotonic()
        if self.slow_until.get(kind, 0.0) > now:
            return None
        try:
            with time_budget(self.budget.seconds):
                answer = read()
        except OverBudget as overrun:
            # One that ran out counting facts for its plan is not counted: its run on a
            # thread remembers them, and the next try has no need to count.
            if not overrun.learning and self._note_try(kind, True):
                if len(self.slow_until) >= MAX_REMEMBERED_SLOW_READS:
                    self.slow_until.clear()
                self.slow_until[kind] = now + SLOW_READ_SECONDS
            return None
        self._note_try(kind, False)
        return answer

    def _note_try(self, kind: tuple[Any, ...], overran: bool) -> bool:
        """Count a try of kind on the loop; return True if it overruns too often to try."""
        tries = self.tries.get(kind)
        if tries is None:
            if len(self.tries) >= MAX_REMEMBERED_SLOW_READS:
                self.tries.clear()
            tries = self.tries[kind] = [0, 0]
        tries[0] += 1
        tries[1] += overran
        if tries[0] >= REMEMBERED_TRIES:
            tries[0] //= 2
            tries[1] //= 2
        return tries[1] >= self.budget.judged_after and tries[1] * OVERRUN_SHARE > tries[0]


def read_kind(request: Request) -> tuple[Any, ...]:
    """Return what a read is, without its values: its route, the path parameters other
    than ids (the resource type), and the names of its query parameters."""
    route = getattr(request.scope.get("route"), "path", request.scope.get("path"))
    path = tuple(sorted((k, v) for k, v in request.path_params.items() if k != "id"))
    names = tuple(sorted({name for name, _ in request.query_params.multi_items()}))
    return (route, path, names)
