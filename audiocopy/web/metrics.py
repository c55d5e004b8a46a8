"""``/metrics``: the server's state and counters in Prometheus' text format (prometheus_client).

Place in the pipeline: beside the JSON status (``/api/status``), for a
Prometheus server to scrape. Each app has its own ``CollectorRegistry``
(never the library's global default), so two apps in one process, as in
the tests, never share a counter, and nothing is module state.

Two kinds of values:

* **Counted as they happen**, by listeners the app wires in
  (``web.app``): every compute cycle reports the windows it answered
  (``Batcher.cycle_listeners``), giving ``audiocopy_windows_answered_total``
  and the latency histogram, and every closed play passes the plays sink
  (``web.play_listeners``), giving ``audiocopy_plays_closed_total``.
* **Read at scrape time** from the objects that own them (``AppCollector``):
  streams and monitors by state, waiting and dropped windows (the batcher's
  ``BatcherStats``), webhook deliveries (``webhooks.WebhookStats``). These
  already exist for ``/api/status``; copying them into gauges on every
  change would be a second source of truth.

Window latency is measured from the moment the last sample of a window
reached the server (``pipeline.CutWindow.ready_at``) to the moment its
answer was handed to the stream's sender, right after its compute cycle: it
includes waiting for compute, scoring and deciding, not the client's
network.

Labels are bounded on purpose. Plays are labelled by the kind of source
(``ws``, ``monitor``, ``upload``: ``plays.record.SOURCE_KINDS``) and
dropped windows by the batcher's kind (``live``, ``file``, ``monitor``),
never by the free-form source name a client sends in ``start``: each
distinct label value is a time series kept forever by Prometheus, and any
client could create thousands. Per-source counts are in the plays store
(``/api/plays/sources``).

The endpoint needs no token (like ``/api/status``): it shows counts only,
no URL, source name or key.
"""
from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from ..plays.record import SOURCE_KINDS as PLAY_SOURCE_KINDS
from .batcher import SOURCE_KINDS as WINDOW_SOURCE_KINDS
from .cycle import CycleStats
from .keys import BATCHER, MONITORS, STREAMS
from .play_listeners import closed_play
from .webhooks import WEBHOOKS

log = logging.getLogger(__name__)

#: Window latency buckets (seconds): a live answer is due within a hop (0.5 s); beyond a few seconds the
#: stream is being dropped.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Monitor states (``monitors.Monitor.state``), each reported even at 0 so the series always exist.
MONITOR_STATES = ("starting", "connected", "waiting", "refused", "stopped", "elsewhere")


class ServerMetrics:
    """One app's registry, its event counters and the scrape-time collector (see the module docstring)."""

    def __init__(self, app: web.Application):
        self.registry = CollectorRegistry()
        self.windows_answered = Counter("audiocopy_windows_answered", "Windows scored and answered (rate() gives "
                                        "windows per second)", registry=self.registry)
        self.window_latency = Histogram("audiocopy_window_latency_seconds", "From a window's last sample reaching "
                                        "the server to its answer", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.plays_closed = Counter("audiocopy_plays_closed", "Plays closed, by kind of source",
                                    ["source_kind"], registry=self.registry)
        for kind in PLAY_SOURCE_KINDS:
            self.plays_closed.labels(kind)  # every series from the start, at 0
        self.registry.register(AppCollector(app))

    def on_cycle(self, stats: CycleStats) -> None:
        """Batcher listener (event loop, after the cycle's answers were handed over)."""
        try:
            now = time.monotonic()
            for ready_at in stats.answered_at:
                self.window_latency.observe(max(0.0, now - ready_at))
            self.windows_answered.inc(len(stats.answered_at))
        except Exception:  # counting must never disturb the batcher
            log.exception("could not count a cycle's windows")

    def on_record(self, item: object) -> None:
        """Plays-sink listener: count a closed play under its kind of source."""
        play = closed_play(item)
        if play is not None:
            kind = getattr(play, "source_kind", "ws")  # a bare ``Play`` is stored as an unverified "ws" play
            self.plays_closed.labels(kind if kind in PLAY_SOURCE_KINDS else "ws").inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) in the format ``accept`` asks for: Prometheus text 0.0.4 by default,
        OpenMetrics when the scraper asks for it. Runs on the event loop: the collector reads loop-owned state."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class AppCollector:
    """Values read from the app's objects at each scrape; absent parts (not started yet) are left out."""

    def __init__(self, app: web.Application):
        self._app = app

    def describe(self):
        return []  # nothing to check at registration: the families depend on what is running

    def collect(self):
        app = self._app
        streams = app.get(STREAMS)
        if streams is not None:
            g = GaugeMetricFamily("audiocopy_streams", "WebSocket connections: streaming (a valid start) or "
                                  "connected (no start yet)", labels=["state"])
            g.add_metric(["streaming"], len(streams))
            g.add_metric(["connected"], max(0, streams.connections - len(streams)))
            yield g
        monitors = app.get(MONITORS)
        if monitors is not None:
            g = GaugeMetricFamily("audiocopy_monitors", "URL monitors by state", labels=["state"])
            states = dict.fromkeys(MONITOR_STATES, 0)
            for m in monitors.monitors.values():
                states[m.state] = states.get(m.state, 0) + 1
            for state, n in states.items():
                g.add_metric([state], n)
            yield g
        yield from _batcher_families(app.get(BATCHER))
        yield from _webhook_families(app.get(WEBHOOKS))


def _batcher_families(batcher):
    if batcher is None:
        return
    c = CounterMetricFamily("audiocopy_windows_dropped", "Windows dropped because compute was behind, by kind of "
                            "stream", labels=["source_kind"])
    for kind in WINDOW_SOURCE_KINDS:
        c.add_metric([kind], batcher.stats.dropped_by_kind.get(kind, 0))
    yield c
    yield GaugeMetricFamily("audiocopy_windows_waiting", "Windows waiting for compute", value=batcher.pending)


def _webhook_families(dispatcher):
    if dispatcher is None:
        return
    s = dispatcher.stats
    yield CounterMetricFamily("audiocopy_webhook_failures", "Webhook delivery attempts that failed (each retry "
                              "counts)", value=s.failed_attempts)
    c = CounterMetricFamily("audiocopy_webhook_deliveries", "Webhook deliveries finished: delivered (2xx) or "
                            "given up after the last attempt", labels=["outcome"])
    c.add_metric(["delivered"], s.delivered)
    c.add_metric(["given_up"], s.given_up)
    yield c
    yield GaugeMetricFamily("audiocopy_webhook_outbox_pending", "Webhook deliveries waiting in the outbox",
                            value=s.pending)
    yield GaugeMetricFamily("audiocopy_webhooks", "Configured webhook receivers", value=len(dispatcher.webhooks))


#: The app's metrics (``web.app`` fills it).
METRICS = web.AppKey("metrics", ServerMetrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format (or OpenMetrics, negotiated by ``Accept``)."""
    body, content_type = request.app[METRICS].render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})
