"""The server's own round of ending lapsed offers: every so often, each offer whose
window has passed is ended and its slot offered to the next person waiting.

Each process of a `--workers` server runs its own round; they cannot end one offer
twice, because each ending re-reads the offer under its slot's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bevan.scheduling.waiting_list import expire_offers

if TYPE_CHECKING:
    from bevan.records.service import RecordService

log = logging.getLogger("bevan.scheduling")

Ended = list[dict[str, Any]]


async def end_lapsed_offers_every(
    seconds: float,
    service: RecordService,
    run_write: Callable[[Callable[[], Ended]], Awaitable[Ended]],
    audit: Callable[[Ended], Awaitable[None]],
) -> None:
    """Forever: end lapsed offers through run_write (the writer's queue), audit what
    ended, then wait seconds. A failed round is logged and tried again next time."""
    while True:
        try:
            ended = await run_write(lambda: expire_offers(service))
            if ended:
                await audit(ended)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ending lapsed slot offers failed; trying again in %s s", seconds)
        await asyncio.sleep(seconds)
