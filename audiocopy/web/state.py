"""Small pieces of shared server state, each with one job.

Place in the pipeline: held by the app (see ``web.keys``) and used by the
routes, the batcher and the monitors.

* ``RecognizerHolder``: the current recognizer. A catalog change loads a new
  one off the event loop and swaps the reference; the batcher reads it once
  per batch, so a reload takes effect between two batches, with no lock and
  no restart, and in-flight batches finish on the old model. It keeps the
  catalogue generation stamp it loaded and the last reload's error, so
  ``web.catalog_watch`` can see changes made outside the server.
* ``StreamRegistry``: open WebSocket connections and live streams, to
  enforce ``max_streams`` (counted from a valid ``start``) and the
  per-address connection cap, and to close them all on shutdown.
* ``PlaySink``: writes plays (open, updated, closed) and the sources'
  window counts to the plays store (``plays.base.PlayStore``: SQLite or
  PostgreSQL) in the I/O executor (never on the event
  loop) and remembers the writes still running, so a shutdown waits for
  them and no play is lost. Writes of one play may finish out of order on
  the pool; the store ignores an open update that arrives after a newer
  state (``plays.store``).
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
from concurrent.futures import Executor
from pathlib import Path

from ..decision.play import Play
from ..decision.recognizer import Recognizer
from ..engines import catalog
from ..engines.catalog import Generation
from ..plays.base import PlayStore
from ..plays.record import PlayRecord, SourceReport

log = logging.getLogger(__name__)


class RecognizerHolder:
    """The recognizer in use, replaceable at run time (see module docstring)."""

    def __init__(self, recognizer: Recognizer | None = None):
        self._current = recognizer
        self.generation = 0  # swaps so far
        #: The database's generation stamp the current recognizer was loaded at
        #: (``catalog.read_generation``; None: not known yet), the last reload's
        #: error (None after a success) and the stamp that reload failed at.
        self.stamp: Generation | None = None
        self.error: str | None = None
        self.failed_stamp: Generation | None = None

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
        """Load ``db`` again in ``executor`` and make it current.

        The stamp is read before the load, so a change made during the load
        leaves a newer stamp on disk and is picked up by the next check. Any
        failure leaves the old recognizer in place, is kept in ``error`` (for
        /api/status) and is raised.
        """
        loop = asyncio.get_running_loop()
        stamp = None
        try:
            stamp = await loop.run_in_executor(executor, catalog.read_generation, db)
            recognizer = await loop.run_in_executor(executor, Recognizer.open, db)
        except Exception as exc:
            self.error, self.failed_stamp = f"{type(exc).__name__}: {exc}", stamp
            raise
        self.swap(recognizer)
        self.stamp, self.error, self.failed_stamp = stamp, None, None
        log.info("recognizer reloaded: %d tracks (generation %d, catalogue generation %d)",
                 len(recognizer.track_ids), self.generation, stamp.number)
        return recognizer


class StreamRegistry:
    """Open WebSocket connections and the streams among them, against two limits.

    limit: started streams (``max_streams``); a connection takes a slot only
    with a valid ``start``, so sockets that never start hold none.
    per_address: open connections (started or not) from one client address.
    Every connection is kept, so shutdown can close them all.
    """

    def __init__(self, limit: int, per_address: int | None = None):
        self.limit = limit
        self.per_address = per_address
        self._items: set = set()
        self._connections: dict = {}  # connection -> client address
        self._per_address: collections.Counter = collections.Counter()

    def __len__(self) -> int:
        """Started streams."""
        return len(self._items)

    @property
    def connections(self) -> int:
        """Open connections, started or not."""
        return len(self._connections)

    def try_connect(self, item, address: str | None) -> bool:
        """Register a new connection from ``address``; False when that address has ``per_address`` open."""
        if self.per_address is not None and self._per_address[address] >= self.per_address:
            return False
        self._connections[item] = address
        self._per_address[address] += 1
        return True

    def try_add(self, item) -> bool:
        """Give ``item`` a stream slot unless the limit is reached; False when full."""
        if len(self._items) >= self.limit:
            return False
        self._items.add(item)
        return True

    def discard(self, item) -> None:
        """Forget a connection and free its slot (either may be absent)."""
        self._items.discard(item)
        if item in self._connections:
            address = self._connections.pop(item)
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    def items(self) -> list:
        """Every open connection and stream (for shutdown)."""
        return list(self._connections.keys() | self._items)


class PlaySink:
    """Logs plays and source counts from any stream without blocking the event loop."""

    def __init__(self, log_: PlayStore, executor: Executor):
        self.log = log_
        self._executor = executor
        self._pending: set[asyncio.Future] = set()

    def record(self, item: Play | PlayRecord | SourceReport) -> asyncio.Future:
        """Schedule one write (called on the event loop); returns its future, so a
        caller can hold back what it tells a client until the write has committed.

        item: a ``PlayRecord`` (open or closed; written under its key), a
        bare ``Play`` (stored with an unverified "ws" origin) or a stream's
        ``SourceReport`` (added to its source's counts).
        """
        if isinstance(item, SourceReport):
            write = functools.partial(self.log.note_source, item)
        elif isinstance(item, PlayRecord):
            write = functools.partial(self.log.write, item)
        else:
            write = functools.partial(self.log.add, item)
        fut = asyncio.get_running_loop().run_in_executor(self._executor, write)
        self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: asyncio.Future) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("could not write to the plays log: %s", fut.exception())

    async def flush(self) -> None:
        """Wait for every scheduled write."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
