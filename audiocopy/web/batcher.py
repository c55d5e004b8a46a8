"""Micro-batching across streams: the event loop schedules, the compute worker does the work.

Place in the pipeline: between the per-stream transports (``web.session``,
which only collect bytes) and the compute cycle (``web.cycle``), which
decodes, resamples, cuts, scores and decides for many streams at once in
the app's compute executor. The event loop's share per network
frame is an append and a comparison; per cycle it hands each stream's
collected bytes to the worker and writes the ready JSON text it gets back.

When a stream is due. A session knows, as a count of client samples, when
its next window will be complete (``Outcome.next_due``); the message that
reaches that count marks it due (``mark_due``). A free worker waits
``linger_s`` for other streams to come due and then runs one cycle for
the streams with windows still waiting and the due streams that are in no
other worker's cycle, about one batch (``max_batch`` windows) of them,
leftover windows first. Under load cycles run back to back and each takes
what arrived meanwhile, so batches grow with the load: that is what lets
two cores serve hundreds of streams. With more than one worker
(``web.app.COMPUTE_WORKERS``), cycles for different streams overlap; a
stream is never in two cycles, so its windows and plays stay in order. A
cycle starts beside a running one only when ``min_parallel`` streams wait:
a light load stays in one worker's larger, cheaper batches, and the second
core joins in when the load needs it.

Falling behind. Memory is bounded by two limits on waiting windows:
``max_pending_per_owner`` for each stream and ``max_pending`` overall. The
owners have a priority. A stream that is not live (a URL monitor, a file
sent faster than real time) never loses a window: it awaits ``wait_room``
before its next message is read, which slows its sender down
(back-pressure: ffmpeg's pipe or the client's TCP window fills). A live
browser stream is the one dropped when the server is behind: its oldest
windows first, and the overall limit is met by dropping live windows, never
a monitor's (``web.cycle``). The stream is told (``dropped``), and every
dropped window is counted per stream (its pipeline's ``windows_lost``, the
``stopped`` message, a monitor's ``dropped``) and in total per source kind
(``BatcherStats.dropped_by_kind``, shown by ``/api/status``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from ..decision.recognizer import Recognizer
from .cycle import CycleStats, Limits, Outcome, run_cycle
from .pipeline import Input, StreamPipeline

log = logging.getLogger(__name__)


#: Source kinds for drop accounting. Only live browser streams are ever dropped;
#: files and monitors wait instead (see module docstring).
LIVE, FILE, MONITOR = "live", "file", "monitor"
SOURCE_KINDS = (LIVE, FILE, MONITOR)


def source_kind(owner) -> str:
    """The kind of a stream for drop accounting: its own ``source_kind`` when it has one (a monitor's
    session), else live or file from its ``realtime`` flag."""
    kind = getattr(owner, "source_kind", None)
    if kind in SOURCE_KINDS:
        return kind
    return LIVE if owner.realtime else FILE


class Owner(Protocol):
    """A stream as the batcher sees it (implemented by ``web.session.StreamSession``)."""

    pipeline: StreamPipeline

    @property
    def realtime(self) -> bool:
        """Live audio (drop when behind) or not (back-pressure)."""

    def pending_windows(self) -> float:
        """Windows' worth of audio received and not yet handed to a cycle."""

    def take_input(self) -> Input:
        """Everything collected since the last cycle (called on the event loop)."""

    def deliver(self, outcome: Outcome) -> None:
        """A cycle's result for this stream (called on the event loop)."""


#: Streams that must be waiting before a cycle starts beside a running one.
#: A cycle costs a fixed part (one pass over the whole index, one encoder
#: and one FFT call) plus a part per window, so two workers that split a
#: light load into small batches pay more CPU per window than one (128
#: streams, 100-track fingerprint catalogue, 2 shared cores: mean batch 4.5
#: and 2.15 ms of scoring CPU per window with two free-running workers, 6.9
#: and 1.76 ms with one). Below this many, waiting streams join the running
#: worker's next cycle instead; under load the second worker takes its share.
MIN_PARALLEL = 8

#: Per-stage time totals of ``CycleStats`` kept by ``BatcherStats`` (seconds).
STAGE_TIMES = ("prep_s", "score_s", "decide_s", "prep_cpu_s", "score_cpu_s", "decide_cpu_s")


@dataclass
class BatcherStats:
    """Counters since start (for /api/status and the load test); stage times as in ``CycleStats``."""

    cycles: int = 0
    batches: int = 0
    cut: int = 0
    windows: int = 0
    dropped: int = 0
    failed: int = 0
    max_batch_seen: int = 0
    times: dict = field(default_factory=lambda: dict.fromkeys(STAGE_TIMES, 0.0))
    #: Windows dropped per source kind (``SOURCE_KINDS``); sums to ``dropped``.
    dropped_by_kind: dict = field(default_factory=lambda: dict.fromkeys(SOURCE_KINDS, 0))
    #: Streams that lost at least one window, per source kind.
    streams_dropped: dict = field(default_factory=lambda: dict.fromkeys(SOURCE_KINDS, 0))

    def add(self, c: CycleStats) -> None:
        self.cycles += 1
        self.batches += 1 if c.windows or c.failed else 0
        self.cut += c.cut
        self.windows += c.windows
        self.dropped += c.dropped
        self.failed += c.failed
        self.max_batch_seen = max(self.max_batch_seen, c.windows)
        for k in STAGE_TIMES:
            self.times[k] += getattr(c, k)

    def count_drops(self, kind: str, windows: int, first: bool) -> None:
        """``windows`` dropped from one stream of ``kind``; ``first``: its first loss."""
        self.dropped_by_kind[kind] += windows
        self.streams_dropped[kind] += 1 if first else 0

    def to_json(self) -> dict:
        score_ms = 1000 * self.times["score_s"]
        return {"cycles": self.cycles, "batches": self.batches, "cut": self.cut, "windows": self.windows,
                "dropped": self.dropped, "dropped_by_kind": dict(self.dropped_by_kind),
                "streams_dropped": dict(self.streams_dropped),
                "failed": self.failed, "mean_batch": round(self.windows / self.batches, 2) if self.batches else 0.0,
                "max_batch": self.max_batch_seen,
                "mean_compute_ms": round(score_ms / self.batches, 2) if self.batches else 0.0,
                **{k: round(v, 6) for k, v in self.times.items()}}


class Batcher:
    """Schedules compute cycles for all streams (see module docstring).

    recognizer: returns the recognizer to use for the next cycle (a
        callable, so a hot reload takes effect between cycles without a lock).
    executor: where cycles run (owned by the app, with at least ``workers``
        threads). max_batch: most windows per recognizer call; max_pending:
        most waiting windows in total (applied per cycle); max_pending_per_owner:
        most waiting windows per stream; linger_s: once a stream is due, wait
        this long for others. workers: cycles that may run at once, each for
        other streams (a stream is never in two cycles, so its windows stay
        in order); the engines' heavy parts release the GIL, so a second
        cycle uses a second core. min_parallel: streams that must be waiting
        before a cycle starts while another runs (``MIN_PARALLEL``).
    """

    def __init__(self, recognizer: Callable[[], Recognizer], executor: Executor, *, max_batch: int = 64,
                 max_pending: int = 256, max_pending_per_owner: int = 6, linger_s: float = 0.005, workers: int = 1,
                 min_parallel: int = MIN_PARALLEL):
        self._recognizer = recognizer
        self._executor = executor
        self.limits = Limits(max_batch, max_pending, max_pending_per_owner)
        self.linger_s = linger_s
        self.workers = max(1, workers)
        self.min_parallel = max(1, min_parallel)
        self._due: dict[Owner, None] = {}  # insertion-ordered set: streams with work for a next cycle
        self._queued: dict[Owner, int] = {}  # windows waiting in each stream's pipeline, after its last cycle
        self._busy: set[Owner] = set()  # streams in a running cycle
        self._cycles: set[asyncio.Task] = set()
        self._dropped_streams: weakref.WeakSet = weakref.WeakSet()  # streams that lost a window
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Condition()
        self.stats = BatcherStats()
        #: Called on the event loop with each cycle's ``CycleStats`` once its answers are handed over (metrics).
        self.cycle_listeners: list[Callable[[CycleStats], None]] = []

    @property
    def max_pending_per_owner(self) -> int:
        return self.limits.max_pending_per_owner

    @property
    def pending(self) -> int:
        """Windows waiting for compute (all streams, as of their last cycle)."""
        return sum(self._queued.values())

    def mark_due(self, owner: Owner) -> None:
        """``owner`` has work for a next cycle (new audio, ``stop``, or it went away)."""
        self._due[owner] = None
        self._wakeup.set()

    def has_room(self, owner: Owner) -> bool:
        """Whether a stream that is not live may send more without exceeding a limit."""
        mine = self._queued.get(owner, 0) + owner.pending_windows()
        return mine < self.limits.max_pending_per_owner and self.pending < self.limits.max_pending

    async def wait_room(self, owner: Owner) -> None:
        """Wait until ``owner`` may send more (back-pressure for streams that are not live)."""
        if self.has_room(owner):
            return
        self.mark_due(owner)  # what it sent must be worked on for room to appear
        async with self._changed:
            await self._changed.wait_for(lambda: self.has_room(owner))

    async def run(self) -> None:
        """The scheduler: whenever a worker is free and streams have work, start a cycle for them."""
        try:
            while True:
                while not self._can_start():
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if self.linger_s > 0 and not any(o in self._queued for o in self._due):
                    await asyncio.sleep(self.linger_s)  # fresh audio only: let other streams come due too
                owners = self._take_ready()
                if owners:
                    task = asyncio.create_task(self._cycle(owners))
                    self._cycles.add(task)
                    task.add_done_callback(self._cycle_done)
        finally:
            for task in list(self._cycles):
                task.cancel()

    def _cycle_done(self, task: asyncio.Task) -> None:
        self._cycles.discard(task)
        self._wakeup.set()  # a worker is free again

    def _can_start(self) -> bool:
        """Whether a worker is free and enough streams wait: one when no cycle runs, else ``min_parallel``."""
        if len(self._cycles) >= self.workers:
            return False
        need = self.min_parallel if self._cycles else 1
        ready = 0
        for o in itertools.chain(self._due, (o for o in self._queued if o not in self._due)):
            if o not in self._busy:
                ready += 1
                if ready >= need:
                    return True
        return False

    def _take_ready(self) -> list[Owner]:
        """Streams in no running cycle for the next one: about one batch of windows, leftover windows first.

        A cycle scores at most ``max_batch`` windows. Taking every ready
        stream would keep the ones whose windows do not fit busy until the
        cycle ends, so under load the other worker found no stream to take
        and cycles ran one at a time (measured: 0.86 cores of compute at 256
        streams on 2 free cores, windows dropped). Streams with windows left
        over from earlier cycles come first (they hold the oldest audio),
        then streams with fresh input, in the order they came due.
        """
        leftovers = [o for o in self._queued if o not in self._busy]
        fresh = [o for o in self._due if o not in self._busy and o not in self._queued]
        owners: list[Owner] = []
        windows = 0.0
        for o in itertools.chain(leftovers, fresh):
            if windows >= self.limits.max_batch:
                break
            owners.append(o)
            windows += self._queued.get(o, 0) + o.pending_windows()
        for o in owners:
            self._due.pop(o, None)
        return owners

    async def _cycle(self, owners: list[Owner]) -> None:
        loop = asyncio.get_running_loop()
        self._busy.update(owners)
        jobs = [(owner, owner.take_input()) for owner in owners]
        try:
            outcomes, cstats = await loop.run_in_executor(self._executor, run_cycle, self._recognizer(), jobs,
                                                          self.limits)
        except Exception:  # a bug in the cycle itself: report it, keep serving
            log.exception("compute cycle failed for %d streams", len(jobs))
            outcomes, cstats = {owner: _failed(owner) for owner, _ in jobs}, CycleStats()
        finally:
            self._busy.difference_update(owners)
        self.stats.add(cstats)
        for owner, outcome in outcomes.items():
            if outcome.dropped:
                self._count_drops(owner, outcome.dropped)
            if outcome.ended or not outcome.queued:
                self._queued.pop(owner, None)
            else:
                self._queued[owner] = outcome.queued
            try:
                owner.deliver(outcome)
            except Exception:  # one broken owner must not stop the others
                log.exception("a stream failed to take its results")
        async with self._changed:
            self._changed.notify_all()
        for listener in self.cycle_listeners:
            listener(cstats)

    def _count_drops(self, owner: Owner, windows: int) -> None:
        kind = source_kind(owner)
        if kind != LIVE:  # ``web.cycle`` drops live windows only: anything else is a broken promise
            log.error("%d windows of a %s stream were dropped", windows, kind)
        first = owner not in self._dropped_streams
        self._dropped_streams.add(owner)
        self.stats.count_drops(kind, windows, first)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Shutdown: wait (bounded) until every stream's last work, its plays included, is done."""
        deadline = time.monotonic() + timeout_s
        while (self._due or self._queued or self._cycles) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._due or self._queued:
            log.warning("shut down with %d streams still waiting for compute", len(set(self._due) | set(self._queued)))


def _failed(owner: Owner) -> Outcome:
    """The outcome for a stream whose cycle failed outright: its pipeline's state is unknown, so it ends."""
    from . import protocol

    owner.pipeline.ended = True
    return Outcome(messages=[protocol.outgoing(protocol.error(protocol.INTERNAL_ERROR,
                                                              "the server failed on this stream; see its log"))],
                   ended=True)
