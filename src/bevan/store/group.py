"""Group commit for writes: many callers' writes share one transaction and one commit.

A commit costs far more than the rows it holds: SQLite writes every changed B-tree page
to the WAL (one resource touches some twenty), PostgreSQL flushes its log. One writer
thread takes queued write functions in turn, runs each inside the open transaction under
its own savepoint (a failure undoes that caller's writes alone), and commits once the
queue is empty or the batch is full. Only then is each caller told its outcome, so an
acknowledged write is always a committed one.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bevan.store.record_store import RecordStore

T = TypeVar("T")
MAX_BATCH = 64

# A queued item: the function, the loop of the caller and the future it awaits.
_Item = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_STOP = object()


class GroupWriter:
    """Runs write functions on one thread, as many to a transaction as are waiting."""

    def __init__(self, store: RecordStore, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # How many write functions the writer thread has run (for operators and tests:
        # which writes shared the group commit).
        self.written = 0
        # Told each committed batch's size (the server's metrics count them).
        self.observe_batch: Callable[[int], object] | None = None

    async def run(self, function: Callable[[], T]) -> T:
        """Return function's result once the transaction it ran in has committed; raise
        what it raised (its writes undone) or what the commit raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_thread()
        self._queue.put((function, loop, future))
        return await future

    def stop(self) -> None:
        """Finish what is queued, then end the writer thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._work, name="bevan-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Item] = [first]  # type: ignore[list-item]
            outcomes: list[tuple[bool, Any]] = []
            try:
                with self.store.batch():
                    index = 0
                    while True:
                        function = batch[index][0]
                        self.written += 1
                        try:
                            outcomes.append((True, function()))
                        except BaseException as error:  # noqa: BLE001 - handed to its caller
                            outcomes.append((False, error))
                        index += 1
                        if index < len(batch):
                            continue
                        if len(batch) >= self.max_batch:
                            break
                        try:
                            following = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if following is _STOP:
                            stopping = True
                            break
                        batch.append(following)  # type: ignore[arg-type]
            except Exception as error:  # the commit failed: nothing in the batch is stored
                outcomes = [(False, error)] * len(batch)
            else:
                if self.observe_batch is not None:
                    self.observe_batch(len(batch))
            for (_, loop, future), outcome in zip(batch, outcomes, strict=True):
                loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return  # its caller has gone; the write stands
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


__all__: Sequence[str] = ("GroupWriter",)
