"""Overload: who loses windows when compute falls behind, and how every loss is counted.

A monitor (``web.monitors.MonitorSession``, not live) and live browser-like
streams share one app's batcher while every compute cycle is made slow (the
real cycle behind a sleep), so the live streams deliver audio far faster
than it is scored. The monitor must lose nothing (it waits instead), the
live streams must lose windows, oldest first, and ``/api/status`` must count
exactly the windows the streams were told they lost, per source kind.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from test_web_batcher import Sink, pcm
from test_web_fixtures import make_client, recognizer, settings  # noqa: F401

from audiocopy.web import batcher as batcher_mod
from audiocopy.web.batcher import FILE, LIVE, MONITOR, Batcher, BatcherStats, source_kind
from audiocopy.web.keys import BATCHER, RECOGNIZER
from audiocopy.web.monitor_connection import MonitorSession
from audiocopy.web.protocol import StartRequest
from audiocopy.web.session import StreamSession

pytestmark = pytest.mark.asyncio

#: Seconds each compute cycle sleeps before doing its work: the "slow server".
CYCLE_DELAY_S = 0.03


def _session(cls, app, name: str, sink: Sink, *, realtime: bool) -> StreamSession:
    rec = app[RECOGNIZER].current
    return cls(session_id=name, start=StartRequest(rec.audio.sample_rate, "s16le", 1, name, realtime),
               audio=rec.audio, batcher=app[BATCHER], decision=rec.stream_decision(name), emit=sink.emit,
               record_play=sink.plays.append)


def _windows(seconds: float, window_s: float, hop_s: float) -> int:
    return int((seconds - window_s) // hop_s) + 1 if seconds >= window_s else 0


async def test_monitor_loses_nothing_live_streams_are_dropped_and_status_counts_them(make_client, monkeypatch):
    real_cycle = batcher_mod.run_cycle

    def slow_cycle(rec, jobs, limits):
        time.sleep(CYCLE_DELAY_S)
        return real_cycle(rec, jobs, limits)

    monkeypatch.setattr(batcher_mod, "run_cycle", slow_cycle)
    client = await make_client(max_batch=4, max_pending=8, max_pending_per_stream=3, batch_linger_ms=0.0)
    app = client.server.app
    audio = app[RECOGNIZER].current.audio
    monitor_sink, live_sinks = Sink(), [Sink() for _ in range(3)]
    monitor = _session(MonitorSession, app, "radio", monitor_sink, realtime=False)
    lives = [_session(StreamSession, app, f"mic{i}", s, realtime=True) for i, s in enumerate(live_sinks)]
    steps = 30

    async def feed_monitor():
        for _ in range(steps):
            monitor.feed(pcm(0.5, audio.sample_rate))
            await monitor.wait_room()  # what web.monitors does after every read

    async def feed_live():
        for _ in range(steps):
            for st in lives:
                st.feed(pcm(0.5, audio.sample_rate))  # live audio is never held back
            await asyncio.sleep(0.002)

    await asyncio.wait_for(asyncio.gather(feed_monitor(), feed_live()), 30)
    stopped = await asyncio.wait_for(asyncio.gather(monitor.finish(), *(st.finish() for st in lives)), 30)
    expected = _windows(steps * 0.5, audio.window_seconds, audio.hop_seconds)
    m_stopped, live_stopped = stopped[0], stopped[1:]
    assert m_stopped["dropped"] == 0 and monitor_sink.of("dropped") == []
    assert m_stopped["windows"] == expected == len(monitor_sink.of("window"))
    assert [m["seq"] for m in monitor_sink.of("window")] == list(range(expected))  # no gap
    live_lost = [s["dropped"] for s in live_stopped]
    assert all(n > 0 for n in live_lost), live_lost  # overload really happened
    for sink, s in zip(live_sinks, live_stopped):
        told = [t for m in sink.of("dropped") for t in m["start_s"]]
        assert len(told) == s["dropped"] and told == sorted(told)  # oldest first, every loss reported
        assert s["windows"] + s["dropped"] == expected

    status = await (await client.get("/api/status")).json()
    b = status["batcher"]
    assert b["dropped_by_kind"] == {LIVE: sum(live_lost), FILE: 0, MONITOR: 0}
    assert b["dropped"] == sum(live_lost)
    assert b["streams_dropped"] == {LIVE: 3, FILE: 0, MONITOR: 0}


async def test_source_kinds():
    class Plain:
        realtime = True

    class Tool:
        realtime = False

    class Odd:
        realtime = True
        source_kind = "unknown"

    assert source_kind(Plain()) == LIVE and source_kind(Tool()) == FILE and source_kind(Odd()) == LIVE
    assert MonitorSession.source_kind == MONITOR


async def test_stats_count_windows_and_streams_per_kind():
    stats = BatcherStats()
    stats.count_drops(LIVE, 3, True)
    stats.count_drops(LIVE, 2, False)
    out = stats.to_json()
    assert out["dropped_by_kind"] == {LIVE: 5, FILE: 0, MONITOR: 0}
    assert out["streams_dropped"] == {LIVE: 1, FILE: 0, MONITOR: 0}


async def test_a_drop_of_a_stream_that_is_not_live_is_counted_and_logged(caplog):
    """Defence in depth: were the cycle ever to drop a monitor's window, the loss is counted, not silent."""
    from concurrent.futures import ThreadPoolExecutor

    from audiocopy.web.cycle import Outcome

    class Owner:
        realtime = False
        source_kind = MONITOR

        def deliver(self, outcome):
            self.got = outcome

    owner = Owner()
    with ThreadPoolExecutor(1) as pool:
        b = Batcher(lambda: None, pool)
        b._count_drops(owner, 2)  # the accounting step on its own
    assert b.stats.dropped_by_kind[MONITOR] == 2 and b.stats.streams_dropped[MONITOR] == 1
    assert "windows of a monitor stream were dropped" in caplog.text
    assert Outcome().dropped == 0
