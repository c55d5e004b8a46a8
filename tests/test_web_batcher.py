"""Micro-batching off the event loop: one recognizer call for many streams, bounded queues, drop-oldest,
back-pressure, and the event loop never decoding, resampling or scoring.

Sessions are real (``web.session`` with its ``StreamPipeline``); a fake
recognizer records each call and the thread it ran on, so these tests need
no model and run in milliseconds.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from audiocopy.config import AudioParams
from audiocopy.decision.detection import Candidate, Detection
from audiocopy.decision.stream import StreamDecision
from audiocopy.signal.audio import pcm_to_float
from audiocopy.signal.stream_resampler import StreamResampler
from audiocopy.web import pipeline as pipeline_mod
from audiocopy.web.batcher import Batcher
from audiocopy.web.pipeline import Input, StreamPipeline, decode_inputs
from audiocopy.web.protocol import StartRequest
from audiocopy.web.session import StreamSession

pytestmark = pytest.mark.asyncio

AUDIO = AudioParams()
RATE = AUDIO.sample_rate


class FakeRecognizer:
    """Matches "t" where a window starts with a positive sample; records calls, windows and threads."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.calls: list[int] = []
        self.windows: list[np.ndarray] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def detect_windows(self, windows, starts_s=None, states=None):
        self.threads.add(threading.current_thread().name)
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("boom")
        self.calls.append(len(windows))
        self.windows += list(windows)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [Detection("t" if w[0] > 0 else None, 1.0 if w[0] > 0 else -1.0, float(s),
                          candidates=(Candidate("t", 1.0 if w[0] > 0 else -1.0),)) for w, s in zip(windows, starts_s)]


class Sink:
    """A transport's callbacks: what the client would receive, and the plays logged."""

    def __init__(self):
        self.messages: list[dict] = []
        self.plays = []

    def record(self, item):
        """The session's ``record_play``: keeps the closed plays (open checkpoints and source counts go by)."""
        if getattr(item, "status", None) == "closed":
            self.plays.append(item)

    def emit(self, outgoing):
        for out in outgoing:
            assert json.loads(out.text) == out.body  # ready JSON text, made off the loop
            self.messages.append(out.body)

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    def starts(self) -> list[float]:
        return [m["start_s"] for m in self.of("window")]


def session(batcher, sink: Sink, *, rate: int = RATE, realtime: bool = True, fmt: str = "s16le") -> StreamSession:
    decision = StreamDecision("test", window_s=AUDIO.window_seconds, wall_start=0.0, threshold=1.5)
    return StreamSession(session_id="s", start=StartRequest(rate, fmt, 1, "test", realtime), audio=AUDIO,
                         batcher=batcher, decision=decision, emit=sink.emit, record_play=sink.record)


def pcm(seconds: float, rate: int = RATE, value: float = 0.5) -> bytes:
    return (np.full(int(round(seconds * rate)), value, dtype=np.float32) * 32767).astype("<i2").tobytes()


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(1, thread_name_prefix="compute")
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
    sinks = [Sink() for _ in range(5)]
    for sink in sinks:
        session(batcher, sink).feed(pcm(3.0))  # two windows each: 0.0 and 0.5
    await run_until(batcher, lambda: all(len(s.of("window")) == 2 for s in sinks))
    assert rec.calls == [10]
    assert all(s.starts() == [0.0, 0.5] and [m["seq"] for m in s.of("window")] == [0, 1] for s in sinks)
    assert all(m["match"] == "t" for s in sinks for m in s.of("window"))
    assert batcher.stats.batches == 1 and batcher.stats.max_batch_seen == 10 and batcher.stats.cycles == 1


async def test_batches_are_capped_and_order_kept(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_batch=4, max_pending_per_owner=100, linger_s=0)
    sink = Sink()
    session(batcher, sink).feed(pcm(7.0))  # ten windows
    await run_until(batcher, lambda: len(sink.of("window")) == 10)
    assert rec.calls == [4, 4, 2]
    assert sink.starts() == [i * 0.5 for i in range(10)]


async def test_live_stream_drops_its_oldest_windows_when_behind(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_pending_per_owner=3, linger_s=0)
    behind, other = Sink(), Sink()
    session(batcher, other).feed(pcm(2.5))
    session(batcher, behind).feed(pcm(5.5))  # seven windows arrive at once
    await run_until(batcher, lambda: len(behind.of("window")) == 3 and len(other.of("window")) == 1)
    (dropped,) = behind.of("dropped")
    assert dropped["start_s"] == [0.0, 0.5, 1.0, 1.5] and dropped["total_dropped"] == 4
    assert behind.starts() == [2.0, 2.5, 3.0]  # the newest audio is never the one dropped
    assert other.of("dropped") == []  # one stream's backlog costs only that stream
    assert batcher.stats.dropped == 4


async def test_total_waiting_windows_are_bounded(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_pending=4, max_pending_per_owner=10, linger_s=0)
    sinks = [Sink() for _ in range(3)]
    streams = [session(batcher, s) for s in sinks]
    for seconds in (2.5, 0.5, 0.5):  # three windows each, arriving in turn
        for st in streams:
            st.feed(pcm(seconds))
    await run_until(batcher, lambda: sum(len(s.of("window")) for s in sinks) == 4)
    assert [[t for m in s.of("dropped") for t in m["start_s"]] for s in sinks] == [[0.0, 0.5], [0.0, 0.5], [0.0]]
    assert [s.starts() for s in sinks] == [[1.0], [1.0], [0.5, 1.0]]
    assert batcher.pending == 0 and batcher.stats.dropped == 5


async def test_back_pressure_waits_instead_of_dropping(executor):
    rec = FakeRecognizer(delay_s=0.02)
    batcher = Batcher(lambda: rec, executor, max_batch=2, max_pending_per_owner=2, linger_s=0)
    sink = Sink()
    st = session(batcher, sink, realtime=False)
    task = asyncio.create_task(batcher.run())
    try:
        st.feed(pcm(2.0))
        for _ in range(12):
            st.feed(pcm(0.5))
            await st.wait_room()
            assert batcher.pending + st.pending_windows() <= 2 + 1
        stopped = await asyncio.wait_for(st.finish(), 5)
    finally:
        task.cancel()
    assert sink.of("dropped") == [] and sink.starts() == [i * 0.5 for i in range(12)]
    assert stopped["windows"] == 12 and stopped["dropped"] == 0 and sink.messages[-1] == stopped


async def test_abandoned_stream_is_forgotten_and_its_play_logged(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    gone, kept = Sink(), Sink()
    g, k = session(batcher, gone), session(batcher, kept)
    g.feed(pcm(5.0))
    await run_until(batcher, lambda: len(gone.of("window")) == 6)  # a play is open now
    rec.gate.clear()  # hold the worker so the next windows stay waiting
    g.feed(pcm(1.0))
    k.feed(pcm(3.0))
    task = asyncio.create_task(batcher.run())
    await asyncio.sleep(0.05)
    g.abandon()
    rec.gate.set()
    try:
        for _ in range(200):
            if len(kept.of("window")) == 2 and gone.plays:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert len(gone.of("window")) <= 8 and gone.of("stopped") == []
    assert [p.track for p in gone.plays] == ["t"] and gone.of("play") == []  # logged, not sent
    assert not batcher._due and not batcher._queued  # no bookkeeping left behind


async def test_recognizer_failure_is_reported_and_worker_survives(executor):
    rec = FakeRecognizer(fail=True)
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    sink = Sink()
    st = session(batcher, sink)
    st.feed(pcm(2.5))
    await run_until(batcher, lambda: sink.of("error"))
    assert sink.of("error")[0]["code"] == "recognizer_failed" and batcher.stats.failed == 1
    rec.fail = False
    st.feed(pcm(0.5))
    await run_until(batcher, lambda: sink.starts() == [0.5])


async def test_a_failing_stream_ends_alone(executor):
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    broken, fine = Sink(), Sink()
    b, f = session(batcher, broken), session(batcher, fine)

    def boom(detection):
        raise RuntimeError("a bug in the decision")

    b.pipeline.decision.update = boom
    b.feed(pcm(3.0))
    f.feed(pcm(3.0))
    await run_until(batcher, lambda: len(fine.of("window")) == 2 and b.closed)
    assert [m["code"] for m in broken.of("error")] == ["internal_error"] and broken.of("window") == []
    assert broken.of("error")[0]["fatal"] is True
    f.feed(pcm(0.5))  # the other stream goes on
    await run_until(batcher, lambda: len(fine.of("window")) == 3)
    assert not batcher._queued


async def test_hot_swapped_recognizer_is_used_for_the_next_cycle(executor):
    first, second = FakeRecognizer(), FakeRecognizer()
    current = [first]
    batcher = Batcher(lambda: current[0], executor, linger_s=0)
    sink = Sink()
    st = session(batcher, sink)
    st.feed(pcm(2.5))
    await run_until(batcher, lambda: len(sink.of("window")) == 1)
    current[0] = second
    st.feed(pcm(0.5))
    await run_until(batcher, lambda: len(sink.of("window")) == 2)
    assert first.calls == [1] and second.calls == [1]


class ConcurrentRecognizer(FakeRecognizer):
    """Also checks that no stream is ever in two calls at once, and counts calls running together."""

    def __init__(self, delay_s: float):
        super().__init__(delay_s)
        self.lock = threading.Lock()
        self.active: set[int] = set()
        self.running = self.most_running = 0

    def detect_windows(self, windows, starts_s=None, states=None):
        with self.lock:
            mine = {id(st) for st in states}
            assert not mine & self.active, "a stream is in two cycles at once"
            self.active |= mine
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return super().detect_windows(windows, starts_s, states)
        finally:
            with self.lock:
                self.active -= mine
                self.running -= 1


async def test_two_workers_score_other_streams_at_once_each_in_order():
    pool = ThreadPoolExecutor(2, thread_name_prefix="compute")
    rec = ConcurrentRecognizer(delay_s=0.05)
    batcher = Batcher(lambda: rec, pool, linger_s=0, workers=2, max_pending_per_owner=100, min_parallel=1)
    sinks = [Sink() for _ in range(4)]
    streams = [session(batcher, s) for s in sinks]
    task = asyncio.create_task(batcher.run())
    try:
        for step in range(10):  # streams come due one after another while cycles run
            for st in streams:
                st.feed(pcm(2.5 if step == 0 else 0.5))
                await asyncio.sleep(0.01)
        for _ in range(500):
            if all(len(s.of("window")) == 10 for s in sinks):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pool.shutdown(wait=True)
    assert all(s.starts() == [i * 0.5 for i in range(10)] for s in sinks)
    assert rec.most_running == 2 and sum(rec.calls) == 40


async def _fill_while_a_cycle_runs(batcher, rec, n_late: int) -> list[Sink]:
    """One stream's cycle is held at the recognizer; ``n_late`` streams come due meanwhile, then it is let go."""
    first = Sink()
    late = [Sink() for _ in range(n_late)]
    task = asyncio.create_task(batcher.run())
    try:
        rec.gate.clear()
        session(batcher, first).feed(pcm(2.5))
        for _ in range(200):  # the first cycle is in the recognizer
            if rec.running:
                break
            await asyncio.sleep(0.005)
        for sink in late:
            session(batcher, sink).feed(pcm(2.5))
        await asyncio.sleep(0.1)  # time for a second cycle to start, if it may
        started_beside = rec.most_running
        rec.gate.set()
        for _ in range(500):
            if all(len(s.of("window")) == 1 for s in [first, *late]):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(len(s.of("window")) == 1 for s in [first, *late])
    return started_beside


@pytest.mark.parametrize("n_late, parallel", [(2, False), (3, True), (6, True)])
async def test_a_second_cycle_starts_only_when_min_parallel_streams_wait(n_late, parallel):
    """Fewer than ``min_parallel`` waiting streams join the running worker's next cycle; that many start one beside it."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="compute")
    rec = ConcurrentRecognizer(delay_s=0.0)
    batcher = Batcher(lambda: rec, pool, linger_s=0, workers=2, min_parallel=3)
    try:
        most_running = await _fill_while_a_cycle_runs(batcher, rec, n_late)
    finally:
        rec.gate.set()
        pool.shutdown(wait=True)
    assert most_running == (2 if parallel else 1)
    if not parallel:  # the late streams waited for the first cycle, then went in one call together
        assert rec.calls == [1, n_late]


async def test_a_backlog_is_shared_by_both_workers_a_batch_each():
    """A cycle takes about one batch of streams, so the other worker has streams to take (not one cycle at a time)."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="compute")
    rec = ConcurrentRecognizer(delay_s=0.0)
    batcher = Batcher(lambda: rec, pool, linger_s=0, workers=2, max_batch=2, min_parallel=1)
    sinks = [Sink() for _ in range(6)]
    rec.gate.clear()
    for sink in sinks:
        session(batcher, sink).feed(pcm(2.5))
    task = asyncio.create_task(batcher.run())
    try:
        for _ in range(200):
            if rec.running == 2:
                break
            await asyncio.sleep(0.005)
        both_at_once = rec.running
        rec.gate.set()
        for _ in range(500):
            if all(len(s.of("window")) == 1 for s in sinks):
                break
            await asyncio.sleep(0.01)
    finally:
        rec.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pool.shutdown(wait=True)
    assert both_at_once == 2
    assert all(len(s.of("window")) == 1 for s in sinks) and max(rec.calls) <= 2 and sum(rec.calls) == 6


async def test_event_loop_never_decodes_resamples_or_scores(executor, monkeypatch):
    """The loop only moves bytes: PCM conversion, resampling and the recognizer run in the compute thread."""
    threads: dict[str, set] = {"decode": set(), "resample": set()}

    class SpyStream(StreamResampler):
        def push(self, x, *, last=False):
            threads["resample"].add(threading.current_thread().name)
            return super().push(x, last=last)

    def spy_pcm(*a, **kw):
        threads["decode"].add(threading.current_thread().name)
        return pcm_to_float(*a, **kw)

    monkeypatch.setattr(pipeline_mod, "StreamResampler", SpyStream)
    monkeypatch.setattr(pipeline_mod, "pcm_to_float", spy_pcm)
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, linger_s=0)
    sink = Sink()
    st = session(batcher, sink, rate=48000)
    task = asyncio.create_task(batcher.run())
    try:
        for _ in range(40):  # 4 s of 100 ms frames, as a browser sends them
            st.feed(pcm(0.1, 48000))
            await asyncio.sleep(0)
        await asyncio.wait_for(st.finish(), 5)
    finally:
        task.cancel()
    assert sink.starts() == [0.0, 0.5, 1.0, 1.5]
    loop_thread = threading.current_thread().name
    for what in (threads["decode"], threads["resample"], rec.threads):
        assert what and loop_thread not in what and all(name.startswith("compute") for name in what)


async def test_resampling_is_sample_exact_across_many_small_frames(executor):
    """Windows from frames of any size equal the windows of the whole signal resampled at once."""
    rate = 44100
    rng = np.random.default_rng(7)
    signal = (0.3 * rng.standard_normal(int(5.3 * rate))).astype(np.float32)
    data = (signal * 32767).astype("<i2").tobytes()
    rec = FakeRecognizer()
    batcher = Batcher(lambda: rec, executor, max_pending_per_owner=100, linger_s=0)
    sink = Sink()
    st = session(batcher, sink, rate=rate, realtime=False)
    task = asyncio.create_task(batcher.run())
    try:
        i = 0
        while i < len(data) // 2:
            n = int(rng.choice([1, 7, 441, 1000, 4410, 9999]))
            st.feed(data[2 * i:2 * (i + n)])
            i += n
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # let cycles cut some of it
        await asyncio.wait_for(st.finish(), 10)
    finally:
        task.cancel()
    whole = StreamResampler(rate, RATE).push(pcm_to_float(data, "s16le"), last=True)
    expected = [whole[k * AUDIO.hop_samples:k * AUDIO.hop_samples + AUDIO.window_samples]
                for k in range(1 + (len(whole) - AUDIO.window_samples) // AUDIO.hop_samples)]
    assert len(rec.windows) == len(expected) == 6
    for got, want in zip(rec.windows, expected):
        np.testing.assert_array_equal(got, want)


async def test_decode_inputs_batches_formats_and_keeps_each_stream_apart():
    rng = np.random.default_rng(3)
    items = []
    for fmt, channels, n in [("s16le", 1, 100), ("f32le", 1, 50), ("s16le", 2, 30), ("s16le", 1, 0),
                             ("s16le", 1, 77)]:
        x = rng.uniform(-1, 1, (n, channels)).astype(np.float32)
        raw = (x * 32767).astype("<i2").tobytes() if fmt == "s16le" else x.astype("<f4").tobytes()
        cut = len(raw) // 2 - len(raw) // 2 % (channels * (2 if fmt == "s16le" else 4))
        items.append((StartRequest(RATE, fmt, channels), Input([raw[:cut], raw[cut:]], [])))
    decoded = decode_inputs(items)
    for (start, inp), got in zip(items, decoded):
        np.testing.assert_array_equal(got, pcm_to_float(b"".join(inp.chunks), start.fmt, start.channels))


async def test_a_48khz_window_is_cut_with_the_frame_that_holds_its_end():
    """A browser's 100 ms frames at 48 kHz: the window 0-2.5 s is ready with frame 25, not a frame later."""
    decision = StreamDecision("t", window_s=2.5, wall_start=0.0, threshold=1.0)
    p = StreamPipeline(start=StartRequest(48000, "s16le"), audio=AUDIO, decision=decision)
    for k in range(25):
        p.ingest(np.zeros(4800, dtype=np.float32), [(4800 * (k + 1), 100.0 + k)])
        assert len(p.queue) == (1 if k == 24 else 0)
        assert p.next_due() == 120000 if k < 24 else p.next_due() == 144000
    assert p.queue[0].ready_at == 124.0


async def test_latency_origin_is_the_arrival_of_the_last_sample():
    decision = StreamDecision("t", window_s=2.5, wall_start=0.0, threshold=1.0)
    p = StreamPipeline(start=StartRequest(RATE, "s16le"), audio=AUDIO, decision=decision)
    frames = [(int(0.1 * RATE * (k + 1)), 100.0 + k) for k in range(30)]  # 100 ms frames at t = 100 + k
    p.ingest(np.zeros(30 * 1600, dtype=np.float32), frames)
    # The window 0.0-2.5 s ends in frame 24 (2.4-2.5 s), the one 0.5-3.0 s in frame 29.
    assert [(w.start_s, w.ready_at) for w in p.queue] == [(0.0, 124.0), (0.5, 129.0)]
    assert p.next_due() == int(3.5 * RATE)
