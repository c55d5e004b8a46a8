"""Micro-batching: due windows from every stream go to the recognizer in one call.

Place in the pipeline: between the per-stream state (``web.session``, which
cuts windows) and ``Recognizer.detect_windows``. Scoring 20 windows in one
batched call costs far less than 20 calls of one (the FFT, the stacked CNN
and the Python overhead are all paid per call), and it is the only way a
server on two cores keeps up with many live streams. So streams never call
the model: they ``submit`` windows, and one worker task takes whatever is
due, up to ``max_batch``, runs one recognizer call in the app's compute
executor (off the event loop; one thread, so model calls never compete with
each other) and hands each result back to the stream that owns the window.

Falling behind. Memory is bounded by two limits on waiting windows:
``max_pending_per_owner`` for each stream and ``max_pending`` overall. A live
stream that exceeds them loses its *oldest* waiting windows: for live audio a
late answer about old audio is worth less than a prompt one about new
audio. The owner is told (``windows_dropped``) and tells its client. A
stream that is not live (a file sent faster than real time, a URL monitor)
instead awaits ``wait_capacity`` before submitting, which slows its reader
down (back-pressure) and loses nothing.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..decision.detection import Detection
from ..decision.recognizer import Recognizer
from ..engines import StreamState

log = logging.getLogger(__name__)


class WindowOwner(Protocol):
    """What a stream implements to receive its windows' fate (called on the event loop)."""

    def window_done(self, item: "PendingWindow", detection: Detection) -> None:
        """The recognizer's answer for one of the owner's windows."""

    def windows_dropped(self, items: list["PendingWindow"], reason: str) -> None:
        """Windows that will never be answered; reason: "behind" or "error"."""


@dataclass(eq=False)
class PendingWindow:
    """One window waiting for compute.

    samples: (window_samples,) float32 at the recognizer's rate.
    start_s: stream time of its first sample, in seconds.
    ready_at: ``time.monotonic()`` when its last sample arrived (latency origin).
    state: the stream's ``StreamState`` (the engine's cache of work on the
        overlap of consecutive windows), or None.
    """

    owner: WindowOwner
    start_s: float
    samples: np.ndarray
    ready_at: float = field(default_factory=time.monotonic)
    state: StreamState | None = None


@dataclass
class BatcherStats:
    """Counters since start (for /api/status and the load test)."""

    batches: int = 0
    windows: int = 0
    dropped: int = 0
    failed: int = 0
    max_batch_seen: int = 0
    compute_s: float = 0.0

    def to_json(self) -> dict:
        return {"batches": self.batches, "windows": self.windows, "dropped": self.dropped, "failed": self.failed,
                "mean_batch": round(self.windows / self.batches, 2) if self.batches else 0.0,
                "max_batch": self.max_batch_seen,
                "mean_compute_ms": round(1000 * self.compute_s / self.batches, 2) if self.batches else 0.0}


class Batcher:
    """Collects windows from all streams and scores them in batches.

    recognizer: returns the recognizer to use for the next batch (a callable,
        so a hot reload takes effect between batches without a lock).
    executor: where the blocking model call runs (owned by the app).
    max_batch: most windows per call; max_pending: most waiting windows in
        total; max_pending_per_owner: most waiting windows per stream;
    linger_s: once a window is due, wait this long for others to join.
    """

    def __init__(self, recognizer: Callable[[], Recognizer], executor: Executor, *, max_batch: int = 64,
                 max_pending: int = 256, max_pending_per_owner: int = 6, linger_s: float = 0.005):
        self._recognizer = recognizer
        self._executor = executor
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_pending_per_owner = max_pending_per_owner
        self.linger_s = linger_s
        self._queue: collections.deque[PendingWindow] = collections.deque()
        self._queued: collections.Counter = collections.Counter()  # owner -> windows in _queue
        self._in_flight: collections.Counter = collections.Counter()  # owner -> windows being scored
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Condition()
        self.stats = BatcherStats()

    @property
    def pending(self) -> int:
        """Windows waiting for compute (all streams)."""
        return len(self._queue)

    def submit(self, item: PendingWindow) -> None:
        """Queue a window; drops the oldest ones when a limit is exceeded (see module doc)."""
        owner = item.owner
        if self._queued[owner] >= self.max_pending_per_owner:
            self._drop([self._pop_oldest_of(owner)])
        self._queue.append(item)
        self._queued[owner] += 1
        if len(self._queue) > self.max_pending:
            oldest = self._queue.popleft()
            _decrement(self._queued, oldest.owner)
            self._drop([oldest])
        self._wakeup.set()

    async def wait_capacity(self, owner: WindowOwner) -> None:
        """Wait until ``owner`` may submit without dropping (back-pressure)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._queued[owner] < self.max_pending_per_owner
                                         and len(self._queue) < self.max_pending)

    async def drain(self, owner: WindowOwner) -> None:
        """Wait until none of ``owner``'s windows is waiting or being scored."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._queued[owner] == 0 and self._in_flight[owner] == 0)

    def cancel(self, owner: WindowOwner) -> int:
        """Forget ``owner``'s waiting windows (it went away); returns how many."""
        n = self._queued.pop(owner, 0)
        if n:
            self._queue = collections.deque(w for w in self._queue if w.owner is not owner)
        return n


    def _pop_oldest_of(self, owner: WindowOwner) -> PendingWindow:
        for i, w in enumerate(self._queue):
            if w.owner is owner:
                del self._queue[i]
                _decrement(self._queued, owner)
                return w
        raise AssertionError("owner count out of sync with the queue")  # pragma: no cover

    def _drop(self, items: list[PendingWindow], reason: str = "behind") -> None:
        self.stats.dropped += len(items) if reason == "behind" else 0
        by_owner: dict[WindowOwner, list[PendingWindow]] = {}
        for w in items:
            by_owner.setdefault(w.owner, []).append(w)
        for owner, ws in by_owner.items():
            try:
                owner.windows_dropped(ws, reason)
            except Exception:  # one broken owner must not stop the others
                log.exception("owner failed to handle dropped windows")

    async def run(self) -> None:
        """The worker: forever take due windows, score them, hand results back."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.linger_s > 0 and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.linger_s)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            if not self._queue:
                self._wakeup.clear()
            if not batch:
                continue
            for w in batch:
                _decrement(self._queued, w.owner)
                self._in_flight[w.owner] += 1
            await self._notify()  # queue space freed: back-pressured streams may go on
            await self._score(loop, batch)
            for w in batch:
                _decrement(self._in_flight, w.owner)
            await self._notify()

    async def _score(self, loop: asyncio.AbstractEventLoop, batch: list[PendingWindow]) -> None:
        recognizer = self._recognizer()
        windows = np.stack([w.samples for w in batch])
        starts = np.array([w.start_s for w in batch])
        states = [w.state for w in batch]
        t0 = time.perf_counter()
        try:
            detections = await loop.run_in_executor(self._executor, recognizer.detect_windows, windows, starts,
                                                    states)
        except Exception:
            log.exception("recognizer failed on a batch of %d windows", len(batch))
            self.stats.failed += len(batch)
            self._drop(batch, reason="error")
            return
        self.stats.compute_s += time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.windows += len(batch)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        for w, det in zip(batch, detections):
            try:
                w.owner.window_done(w, det)
            except Exception:
                log.exception("owner failed to handle a window result")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _decrement(counter: collections.Counter, key) -> None:
    """Decrement, deleting the key at zero: ended streams must leave no entry behind."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
