"""/metrics: Prometheus text that the official parser reads, with counts that match what was streamed.

Audio goes through the test app's /ws exactly as in ``test_web_ws``; the
numbers on /metrics must then agree with the stream's own ``stopped``
message (windows, drops, plays). Two apps in one process keep separate
registries.
"""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from synth import pattern
from test_web_fixtures import (  # noqa: F401
    CLIENT_RATE,
    SlowRecognizer,
    make_client,
    recognizer,
    s16le,
    settings,
    start_stream,
    stream_pcm,
)

pytestmark = pytest.mark.asyncio

FAMILIES = {"audiocopy_streams": "gauge", "audiocopy_monitors": "gauge", "audiocopy_windows_answered": "counter",
            "audiocopy_window_latency_seconds": "histogram", "audiocopy_windows_dropped": "counter",
            "audiocopy_windows_waiting": "gauge", "audiocopy_plays_closed": "counter",
            "audiocopy_webhook_failures": "counter", "audiocopy_webhook_deliveries": "counter",
            "audiocopy_webhook_outbox_pending": "gauge", "audiocopy_webhooks": "gauge"}


async def scrape(client) -> tuple[dict, dict]:
    """(family name -> type, (sample name, sorted labels) -> value) from /metrics, via the client's parser."""
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(await resp.text()))
    types = {f.name: f.type for f in families}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    return types, values


def pulses_after_silence() -> np.ndarray:
    silence = np.zeros(3 * CLIENT_RATE, dtype=np.float32)
    return np.concatenate([silence, pattern("pulses", 6, CLIENT_RATE)])  # 9 s: 14 windows, one play


async def test_metrics_parse_and_count_a_streamed_play(make_client):
    client = await make_client()
    types, values = await scrape(client)
    assert {name: types.get(name) for name in FAMILIES} == FAMILIES
    openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await openmetrics.text()).endswith("# EOF\n")
    assert values[("audiocopy_windows_answered_total", ())] == 0
    assert values[("audiocopy_window_latency_seconds_count", ())] == 0
    async with client.ws_connect("/ws") as ws, client.ws_connect("/ws") as idle:
        await start_stream(ws)
        _, during = await scrape(client)
        assert during[("audiocopy_streams", (("state", "streaming"),))] == 1
        assert during[("audiocopy_streams", (("state", "connected"),))] == 1  # ``idle`` sent no start
        messages = await stream_pcm(ws, s16le(pulses_after_silence()))
        await idle.close()
    stopped = messages[-1]
    assert stopped["windows"] == 14 and stopped["plays"] == 1 and stopped["dropped"] == 0
    _, values = await scrape(client)
    assert values[("audiocopy_windows_answered_total", ())] == 14
    assert values[("audiocopy_window_latency_seconds_count", ())] == 14
    assert 0 < values[("audiocopy_window_latency_seconds_sum", ())] < 14 * 30
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in values.items()
                     if name == "audiocopy_window_latency_seconds_bucket")
    assert buckets[-1] == (float("inf"), 14) and all(a[1] <= b[1] for a, b in pairwise(buckets))
    assert values[("audiocopy_plays_closed_total", (("source_kind", "ws"),))] == 1
    assert values[("audiocopy_plays_closed_total", (("source_kind", "monitor"),))] == 0
    assert values[("audiocopy_plays_closed_total", (("source_kind", "upload"),))] == 0
    for kind in ("live", "file", "monitor"):
        assert values[("audiocopy_windows_dropped_total", (("source_kind", kind),))] == 0
    for state in ("starting", "connected", "waiting", "refused", "stopped"):
        assert values[("audiocopy_monitors", (("state", state),))] == 0
    assert values[("audiocopy_streams", (("state", "streaming"),))] == 0
    assert values[("audiocopy_webhook_failures_total", ())] == 0
    # Labels are kinds of source, never the name a client chose (which would be unbounded).
    assert not any("test" in dict(labels).values() for _, labels in values)


async def test_dropped_windows_are_counted_by_source_kind(make_client, recognizer):
    client = await make_client(recognizer_=SlowRecognizer(recognizer), max_pending_per_stream=2, max_batch=2)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000, realtime=True)
        messages = await stream_pcm(ws, s16le(pattern("pulses", 10, 16000)), frame_bytes=32000)
    stopped = messages[-1]
    assert stopped["dropped"] > 0
    _, values = await scrape(client)
    assert values[("audiocopy_windows_dropped_total", (("source_kind", "live"),))] == stopped["dropped"]
    assert values[("audiocopy_windows_dropped_total", (("source_kind", "file"),))] == 0
    assert values[("audiocopy_windows_answered_total", ())] == stopped["windows"]


async def test_two_apps_in_one_process_keep_separate_counters(make_client, tmp_path):
    busy = await make_client()
    quiet = await make_client(state_dir=tmp_path / "other-state")
    async with busy.ws_connect("/ws") as ws:
        await start_stream(ws)
        await stream_pcm(ws, s16le(pulses_after_silence()))
    _, busy_values = await scrape(busy)
    _, quiet_values = await scrape(quiet)
    assert busy_values[("audiocopy_windows_answered_total", ())] == 14
    assert quiet_values[("audiocopy_windows_answered_total", ())] == 0
    assert quiet_values[("audiocopy_plays_closed_total", (("source_kind", "ws"),))] == 0
