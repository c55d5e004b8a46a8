"""Micro-batching: one recognizer call for many streams, bounded queues, drop-oldest, back-pressure.

A fake recognizer records each call, so these tests need no model and run
in milliseconds.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from audiocopy.decision.recognizer import Detection
from audiocopy.web.batcher import Batcher, PendingWindow

pytestmark = pytest.mark.asyncio


class FakeRecognizer:
    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def detect_windows(self, windows, starts_s=None, streams=None):
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("boom")
        self.calls.append(len(windows))
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        return [Detection("t" if w[0] > 0 else None, 1.0, float(s)) for w, s in zip(windows, starts_s)]


class Owner:
    def __init__(self):
        self.done: list[tuple[float, str | None]] = []
        self.dropped: list[float] = []
        self.reasons: list[str] = []

    def window_done(self, item, detection):
        self.done.append((item.start_s, detection.track))

    def windows_dropped(self, items, reason):
        self.dropped += [w.start_s for w in items]
        self.reasons.append(reason)


def window(owner, start_s, value=1.0):
    return PendingWindow(owner, start_s, np.full(8, value, dtype=np.float32))


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=True)


async def run_until(batcher, cond, timeout=5.0):
    task = asyncio.create_task(batcher.run())
    try:
        for _ in range(int(timeout / 0.01)):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_windows_of_all_streams_go_in_one_call(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_batch=64, linger_s=0.01)
    owners = [Owner() for _ in range(5)]
    for o in owners:
        batcher.submit(window(o, 0.0))
        batcher.submit(window(o, 0.5, value=-1.0))
    await run_until(batcher, lambda: all(len(o.done) == 2 for o in owners))
    assert rec.calls == [10]
    assert all(o.done == [(0.0, "t"), (0.5, None)] for o in owners)
    assert batcher.stats.batches == 1 and batcher.stats.max_batch_seen == 10


async def test_batches_are_capped(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_batch=4, max_pending_per_owner=100, linger_s=0)
    owner = Owner()
    for i in range(10):
        batcher.submit(window(owner, i * 0.5))
    await run_until(batcher, lambda: len(owner.done) == 10)
    assert rec.calls == [4, 4, 2]
    assert [s for s, _ in owner.done] == [i * 0.5 for i in range(10)]  # order kept


async def test_live_stream_drops_its_oldest_windows_when_behind(executor):
    batcher = Batcher(lambda: FakeRecognizer(), executor, max_pending_per_owner=3, linger_s=0)
    owner, other = Owner(), Owner()
    batcher.submit(window(other, 0.0))
    for i in range(6):
        batcher.submit(window(owner, i * 0.5))
    assert owner.dropped == [0.0, 0.5, 1.0] and owner.reasons == ["behind"] * 3
    assert other.dropped == []  # one stream's backlog costs only that stream
    assert batcher.pending == 4 and batcher.stats.dropped == 3


async def test_total_queue_is_bounded(executor):
    batcher = Batcher(lambda: FakeRecognizer(), executor, max_pending=4, max_pending_per_owner=10, linger_s=0)
    owners = [Owner() for _ in range(3)]
    for i in range(3):
        for o in owners:
            batcher.submit(window(o, i * 0.5))
    assert batcher.pending == 4
    assert [o.dropped for o in owners] == [[0.0, 0.5], [0.0, 0.5], [0.0]]  # globally oldest first


async def test_back_pressure_waits_instead_of_dropping(executor):
    rec = FakeRecognizer(delay_s=0.02)
    batcher = Batcher(lambda: rec, executor, max_batch=2, max_pending_per_owner=2, linger_s=0)
    owner = Owner()
    task = asyncio.create_task(batcher.run())
    try:
        for i in range(12):
            await batcher.wait_capacity(owner)
            assert batcher.pending < 2 + 1
            batcher.submit(window(owner, i * 0.5))
        await asyncio.wait_for(batcher.drain(owner), 5)
    finally:
        task.cancel()
    assert owner.dropped == [] and len(owner.done) == 12


async def test_cancel_forgets_a_gone_stream(executor):
    rec = FakeRecognizer()
    rec.gate.clear()  # hold the worker so windows stay queued
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    gone, kept = Owner(), Owner()
    for i in range(3):
        batcher.submit(window(gone, i * 0.5))
        batcher.submit(window(kept, i * 0.5))
    assert batcher.cancel(gone) == 3
    rec.gate.set()
    await run_until(batcher, lambda: len(kept.done) == 3)
    assert gone.done == [] and not batcher._queued and not batcher._in_flight  # no bookkeeping left behind


async def test_recognizer_failure_is_reported_and_worker_survives(executor):
    rec = FakeRecognizer(fail=True)
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    owner = Owner()
    batcher.submit(window(owner, 0.0))
    await run_until(batcher, lambda: owner.reasons == ["error"])
    rec.fail = False
    batcher.submit(window(owner, 0.5))
    await run_until(batcher, lambda: owner.done == [(0.5, "t")])


async def test_hot_swapped_recognizer_is_used_for_the_next_batch(executor):
    first, second = FakeRecognizer(), FakeRecognizer()
    current = [first]
    batcher = Batcher(lambda: current[0], executor, linger_s=0)
    owner = Owner()
    batcher.submit(window(owner, 0.0))
    await run_until(batcher, lambda: len(owner.done) == 1)
    current[0] = second
    batcher.submit(window(owner, 0.5))
    await run_until(batcher, lambda: len(owner.done) == 2)
    assert first.calls == [1] and second.calls == [1]
