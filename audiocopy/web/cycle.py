"""One compute cycle: the audio of every due stream in, one batched recognizer call, ready messages out.

Place in the pipeline: the body of the compute worker. The batcher
(``web.batcher``, on the event loop) picks the streams that have something
to do and runs ``run_cycle`` in the app's compute executor; what
comes back is, per stream, JSON text to write to its socket and plays to
log. Everything that costs CPU per frame or per window happens here, off
the event loop, in four stages timed separately (``CycleStats``):

1. prep: decode every stream's PCM (one conversion per format for all
   streams), resample per stream, cut windows;
2. drop: a live stream more than ``max_pending_per_owner`` windows behind
   loses its oldest ones (and ``max_pending`` bounds all streams together):
   for live audio a late answer about old audio is worth less than a prompt
   one about new audio. Streams that are not live (files, monitors) are
   never dropped; the event loop stops reading them instead;
3. score: up to ``max_batch`` waiting windows, oldest first, in one
   ``Recognizer.detect_windows`` call, so the engine's per-call costs are
   paid once per cycle, not once per window (one pass over the whole
   index, one encoder and one FFT call). 100-track fingerprint catalogue,
   NumPy encoder, one BLAS thread, 48 kHz streams replayed through
   ``run_cycle`` on 2 shared cores: 1.9 ms of CPU per live window in
   batches of 6 (prep, score and decide), 1.5 in batches of 32;
4. decide: each stream's decision on its windows in stream order, and the
   messages built as JSON text.

A stream's windows that do not fit in the batch wait for the next cycle.
A failure of the recognizer costs the windows of that batch (their streams
get a ``recognizer_failed`` error), never the worker; a bug in one stream's
audio or decision ends that stream (``internal_error``), not the others.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..decision.play import Play
from . import protocol
from .pipeline import CutWindow, Input, StreamPipeline, decode_inputs

log = logging.getLogger(__name__)


class CycleOwner(Protocol):
    """A stream as a cycle sees it (``web.session.StreamSession``)."""

    pipeline: StreamPipeline

    @property
    def realtime(self) -> bool:
        """Live audio (drop when behind) or not (back-pressure)."""


@dataclass(frozen=True)
class Limits:
    """How much one cycle scores and how far behind a live stream may fall (see module docstring)."""

    max_batch: int = 64
    max_pending: int = 256
    max_pending_per_owner: int = 6


@dataclass
class Outcome:
    """What one cycle did for one stream, handed back to the event loop.

    messages: for the client, in order; plays: closed plays to log.
    open_plays: plays still in progress, due for a checkpoint in the store
    (``StreamPipeline.checkpoint``). queued: windows still waiting;
    dropped: windows of this stream dropped in this cycle (live streams
    only, see ``_drop``); next_due: the client sample count after which the
    next window is complete; ended: the stream is closed.
    """

    messages: list[protocol.Outgoing] = field(default_factory=list)
    plays: list[Play] = field(default_factory=list)
    open_plays: list[Play] = field(default_factory=list)
    queued: int = 0
    dropped: int = 0
    next_due: int = 0
    ended: bool = False


@dataclass
class CycleStats:
    """Time of each stage in the compute thread (s) and window counts of one cycle.

    ``*_s`` are wall seconds; ``*_cpu_s`` the compute thread's own CPU
    seconds (``time.thread_time``: on a busy machine wall time also counts
    waiting for a core; the engines' helper threads are in neither).
    """

    prep_s: float = 0.0
    score_s: float = 0.0
    decide_s: float = 0.0
    prep_cpu_s: float = 0.0
    score_cpu_s: float = 0.0
    decide_cpu_s: float = 0.0
    cut: int = 0  # windows cut by prep
    windows: int = 0  # windows scored
    dropped: int = 0
    failed: int = 0
    answered_at: list = field(default_factory=list)  # ``ready_at`` of each window answered (``web.metrics``)


def run_cycle(recognizer, jobs: list[tuple[CycleOwner, Input]], limits: Limits) -> tuple[dict, CycleStats]:
    """One cycle (runs in the compute thread).

    recognizer: the ``Recognizer`` for this cycle (read once: a hot reload
    takes effect between cycles). jobs: every stream with new input or
    waiting windows, with its ``Input`` (possibly empty).
    Returns ({owner: Outcome}, stats).
    """
    stats = CycleStats()
    outcomes = {owner: Outcome() for owner, _ in jobs}
    t0, c0 = time.perf_counter(), time.thread_time()
    stats.cut = _prep(jobs, outcomes)
    stats.dropped = _drop(jobs, outcomes, limits)
    t1, c1 = time.perf_counter(), time.thread_time()
    batch = _take_batch([o for o, _ in jobs if not o.pipeline.ended], limits.max_batch)
    detections = _score(recognizer, batch, outcomes, stats)
    t2, c2 = time.perf_counter(), time.thread_time()
    for (owner, item), det in zip(batch, detections or ()):
        if owner.pipeline.ended:  # its decision failed on an earlier window of this batch
            continue
        try:
            owner.pipeline.answer(item, det, outcomes[owner].messages, outcomes[owner].plays)
            stats.answered_at.append(item.ready_at)
        except Exception:  # a bug in one stream's decision must not stop the others
            log.exception("the stream decision failed on one stream")
            _fail(owner, outcomes[owner])
    for owner, outcome in outcomes.items():
        p = owner.pipeline
        if p.finishing and not p.queue and not p.ended:
            p.close(outcome.messages, outcome.plays, emit=True)
        outcome.open_plays = p.checkpoint()
        outcome.queued, outcome.next_due, outcome.ended = len(p.queue), p.next_due(), p.ended
    stats.prep_s, stats.score_s, stats.decide_s = t1 - t0, t2 - t1, time.perf_counter() - t2
    stats.prep_cpu_s, stats.score_cpu_s, stats.decide_cpu_s = c1 - c0, c2 - c1, time.thread_time() - c2
    return outcomes, stats


def _prep(jobs: list[tuple[CycleOwner, Input]], outcomes: dict) -> int:
    """Decode, resample and cut; close abandoned streams. Returns the windows cut."""
    todo = []
    for owner, inp in jobs:
        p = owner.pipeline
        if p.ended:
            continue
        if inp.abandon:
            p.close(outcomes[owner].messages, outcomes[owner].plays, emit=False)
        elif inp.chunks or (inp.final and not p.finishing):
            todo.append((owner, inp))
    decoded = decode_inputs([(owner.pipeline.start, inp) for owner, inp in todo])
    cut_before = sum(owner.pipeline.windows_cut for owner, _ in todo)
    for (owner, inp), samples in zip(todo, decoded):
        try:
            owner.pipeline.ingest(samples, inp.arrivals, last=inp.final)
        except Exception:  # a bug in one stream's audio path must not stop the others
            log.exception("could not prepare the audio of one stream")
            _fail(owner, outcomes[owner])
        if inp.final:
            owner.pipeline.finishing = True
    return sum(owner.pipeline.windows_cut for owner, _ in todo) - cut_before


def _fail(owner: CycleOwner, outcome: Outcome) -> None:
    """End a stream the server failed on: its plays so far are logged, the client is told (fatal error)."""
    p = owner.pipeline
    try:
        p.close(outcome.messages, outcome.plays, emit=False)
    except Exception:
        log.exception("could not close the plays of a failed stream")
        p.ended = True
    outcome.messages.append(protocol.outgoing(protocol.error(
        protocol.INTERNAL_ERROR, "the server failed on this stream; see its log")))


def _drop(jobs: list[tuple[CycleOwner, Input]], outcomes: dict, limits: Limits) -> int:
    """Apply the per-stream and the overall limit to live streams; returns the windows dropped.

    Only live streams lose windows, oldest first: a stream that is not live
    (a monitor, a file) holds its windows, and the overall limit is met by
    dropping live windows in its place, so a live crowd can never push a
    monitor's audio out. What each stream lost is in its ``Outcome.dropped``.
    """
    live = [o for o, _ in jobs if o.realtime and not o.pipeline.ended]
    dropped: dict = {}
    for owner in live:
        excess = len(owner.pipeline.queue) - limits.max_pending_per_owner
        if excess > 0:
            dropped[owner] = excess
    total = sum(len(o.pipeline.queue) for o, _ in jobs) - sum(dropped.values())
    if total > limits.max_pending:
        # The globally oldest windows of live streams go first.
        waiting = sorted((w.ready_at, i, k) for k, owner in enumerate(live)
                         for i, w in enumerate(list(owner.pipeline.queue)[dropped.get(owner, 0):]))
        for _, _, k in waiting[:total - limits.max_pending]:
            owner = live[k]
            dropped[owner] = dropped.get(owner, 0) + 1
    total_dropped = 0
    for owner, n in dropped.items():
        msg = owner.pipeline.drop_oldest(n)
        if msg is not None:
            outcomes[owner].dropped = msg.body["windows"]
            total_dropped += msg.body["windows"]
            outcomes[owner].messages.append(msg)
    return total_dropped


def _take_batch(owners: list[CycleOwner], max_batch: int) -> list[tuple[CycleOwner, CutWindow]]:
    """Up to ``max_batch`` waiting windows, oldest first; each stream's in stream order."""
    waiting = [(w.ready_at, k, i, owner) for k, owner in enumerate(owners)
               for i, w in enumerate(owner.pipeline.queue)]
    if len(waiting) > max_batch:
        waiting.sort(key=lambda t: (t[0], t[1], t[2]))  # a stream's windows are in order of readiness
        waiting = waiting[:max_batch]
    taken: dict = {}
    for _, _, _, owner in waiting:
        taken[owner] = taken.get(owner, 0) + 1
    return [(owner, owner.pipeline.queue.popleft()) for owner, n in taken.items() for _ in range(n)]


def _score(recognizer, batch: list[tuple[CycleOwner, CutWindow]], outcomes: dict,
           stats: CycleStats) -> list | None:
    """One recognizer call for the batch; None (and errors to the streams) when it fails."""
    if not batch:
        return None
    windows = np.stack([w.samples for _, w in batch])
    starts = np.array([w.start_s for _, w in batch])
    states = [owner.pipeline.state for owner, _ in batch]
    try:
        detections = recognizer.detect_windows(windows, starts, states)
    except Exception:
        log.exception("recognizer failed on a batch of %d windows", len(batch))
        counts: dict = {}
        for owner, _ in batch:
            counts[owner] = counts.get(owner, 0) + 1
        for owner, n in counts.items():
            outcomes[owner].messages.append(owner.pipeline.failed(n))
        stats.failed = len(batch)
        return None
    stats.windows = len(batch)
    return detections
