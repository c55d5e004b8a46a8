"""Small pieces of shared server state, each with one job.

Place in the pipeline: held by the app (see ``web.keys``) and used by the
routes, the batcher and the monitors.

* ``RecognizerHolder``: the current recognizer. A catalog change loads a new
  one off the event loop and swaps the reference; the batcher reads it once
  per batch, so a reload takes effect between two batches, with no lock and
  no restart, and in-flight batches finish on the old model.
* ``StreamRegistry``: live WebSocket streams, to enforce ``max_streams`` and
  to close them all on shutdown.
* ``PlaySink``: writes closed plays to the SQLite log in the I/O executor
  (never on the event loop) and remembers the writes still running, so a
  shutdown waits for them and no play is lost.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from pathlib import Path

from ..decision.play import Play
from ..decision.recognizer import Recognizer
from ..plays.store import PlaysLog

log = logging.getLogger(__name__)


class RecognizerHolder:
    """The recognizer in use, replaceable at run time (see module docstring)."""

    def __init__(self, recognizer: Recognizer | None = None):
        self._current = recognizer
        self.generation = 0

    @property
    def current(self) -> Recognizer:
        if self._current is None:
            raise RuntimeError("the recognizer is not loaded yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def swap(self, recognizer: Recognizer) -> None:
        self._current = recognizer
        self.generation += 1

    async def reload(self, db: Path, executor: Executor) -> Recognizer:
        """Load ``db`` again in ``executor`` and make it current (``ModelError`` leaves the old one)."""
        loop = asyncio.get_running_loop()
        recognizer = await loop.run_in_executor(executor, Recognizer.open, db)
        self.swap(recognizer)
        log.info("recognizer reloaded: %d tracks (generation %d)", len(recognizer.track_ids), self.generation)
        return recognizer


class StreamRegistry:
    """Counts live streams against a limit and keeps their sockets for shutdown."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: set = set()

    def __len__(self) -> int:
        return len(self._items)

    def try_add(self, item) -> bool:
        """Register ``item`` unless the limit is reached; False when full."""
        if len(self._items) >= self.limit:
            return False
        self._items.add(item)
        return True

    def discard(self, item) -> None:
        self._items.discard(item)

    def items(self) -> list:
        return list(self._items)


class PlaySink:
    """Logs closed plays from any stream without blocking the event loop."""

    def __init__(self, log_: PlaysLog, executor: Executor):
        self.log = log_
        self._executor = executor
        self._pending: set[asyncio.Future] = set()

    def record(self, play: Play) -> None:
        """Schedule the write of one play (called on the event loop)."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self.log.add, play)
        self._pending.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("could not log a play: %s", fut.exception())

    async def flush(self) -> None:
        """Wait for every scheduled write."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
