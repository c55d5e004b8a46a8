"""URL monitors: radio and other http(s) streams, fetched by the server and decoded by ffmpeg.

Place in the pipeline: another transport beside the WebSocket. For each
monitor the server fetches the URL itself (``url_fetch.GuardedFetcher``) and
writes the bytes to an ``ffmpeg`` child that decodes them (MP3, AAC, Ogg,
...) to 16 kHz mono s16le on its stdout; those bytes go into a
``StreamSession`` exactly as a browser's frames do, so windows, batching,
plays and the log are shared code, not a second pipeline. This module
manages monitors (when they connect, back-off, leases, the store); what one
connection does is ``monitor_connection``.

Robustness: a stream that ends or fails (network, server restart) is
started again after an exponential back-off (1 s, 2 s, 4 s ... 60 s), reset
once a connection has lasted a minute. A monitor reads with back-pressure
(its session is not "realtime"): when compute is behind, ffmpeg's stdout
fills, ffmpeg stops reading its stdin, the fetcher stops reading the socket,
so memory stays bounded by the pipes.

Safety (server-side request forgery): ffmpeg never sees the URL and may
open nothing but its pipe (``-protocol_whitelist pipe``). The fetcher
resolves the host once per connection, checks every answer and connects to
those addresses only; each redirect is checked the same way; HLS is refused
unless ``--allow-hls-monitors``, and then every playlist and segment URL is
checked (see ``url_fetch`` and ``url_guard``). A refused monitor stays in
the "refused" state with the reason and is tried again after the back-off
(a URL's DNS or redirects may change).

Privacy: monitor URLs may carry stream keys, so listings show the full URL
only to requests with the admin token; others see ``scheme://host/…``.
Error messages name the host only.

Monitor names are unique (case-insensitive): plays are logged under the
name, so two monitors with one name could not be told apart.

Persistence: a monitor's definition (id, name, URL, creation time) is a row
of the plays store's ``monitors`` table (``plays.monitor_rows``: the SQLite
file by default, PostgreSQL with ``--store postgresql://...``), so every
server worker on one store knows every monitor, and monitors restart with
the server. Its live state (connection, counts, recent plays) stays in
memory here. The store's UNIQUE ``name_key`` is the final arbiter of names:
two workers adding one name at once get one monitor and one 409. A
``STATE/monitors.json`` left by an older release is imported into the store
on start, once, and renamed ``monitors.json.imported``.

Several workers (``web.workers``). In the server every monitor runs only on
the worker that holds its lease in the store: the manager is ``leased``, so
``load`` and ``add`` only make monitors known here (state "starting", or
"elsewhere" while another worker runs them) and the lease loop starts
(``start_leased``) and stops (``stop_leased``) them. Each leased monitor's
plays go through the ``web.handover`` mapping the lease loop gives it, so
a play of a dead worker continues as one play. A manager built without
``leased`` (tests, tools) starts every monitor itself, as one server did.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from ..config import ServerSettings
from ..decision.play import Play
from ..decision.recognizer import Recognizer
from ..errors import AudiocopyError
from ..plays.monitor_rows import MonitorRows, name_key
from ..plays.record import PlayRecord
from .batcher import Batcher
from .monitor_connection import read_once
from .stopping import cancel_until_done, stop_requested
from .url_fetch import GuardedFetcher
from .url_guard import AddressPolicy, Resolve, UrlRefused, check_url, redact_url

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
STABLE_AFTER_S = 60.0
MAX_NAME_CHARS = 100


class MonitorError(AudiocopyError):
    """A monitor cannot be added or found; ``code`` and ``status`` say why for the API."""

    def __init__(self, message: str, code: str = "monitor_error", status: int = 409):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class Monitor:
    """One monitored URL and what the Monitors page shows of it."""

    id: str
    name: str
    url: str
    state: str = "starting"  # starting | connected | waiting | refused | stopped | elsewhere (another worker)
    message: str = ""
    connected_since: float | None = None
    seconds: float = 0.0
    windows: int = 0
    plays: int = 0
    restarts: int = 0
    dropped: int = 0  # windows lost to overload (should stay 0: monitors wait instead)
    current: dict | None = None  # last window message
    recent_plays: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10))
    task: asyncio.Task | None = None
    #: Every play record of its stream goes through this before it is written (``web.handover``).
    record_map: Callable[[PlayRecord], PlayRecord] | None = None

    def to_json(self, *, show_url: bool) -> dict:
        """The API's view; ``show_url`` only for admin requests (the URL may hold a stream key)."""
        return {"id": self.id, "name": self.name, "url": self.url if show_url else redact_url(self.url),
                "url_redacted": not show_url, "state": self.state, "message": self.message,
                "connected_since": self.connected_since, "seconds": round(self.seconds, 1),
                "windows": self.windows, "plays": self.plays, "restarts": self.restarts, "dropped": self.dropped,
                "current": self.current, "recent_plays": list(self.recent_plays)}


class MonitorManager:
    """Starts, stops and persists URL monitors.

    recognizer: returns the current recognizer (audio parameters, play threshold, decision parameters).
    record_play: where closed plays go (the app's ``PlaySink.record``).
    rows: the store's ``monitors`` table (``plays.monitor_rows``); executor:
    where its blocking SQL runs (the app's I/O pool, never the event loop).
    resolve: the DNS lookup behind every URL check (default: the system's; tests inject a stub).
    leased: monitors run only when the lease loop says so (``web.workers``;
    module docstring); ``on_change`` is then called when one is added or
    removed here, so the loop claims or lets go of it at once.
    """

    def __init__(self, settings: ServerSettings, batcher: Batcher, recognizer: Callable[[], Recognizer],
                 record_play: Callable[[Play], None], *, rows: MonitorRows, executor: Executor,
                 resolve: Resolve | None = None, leased: bool = False):
        self.settings = settings
        self.policy = AddressPolicy.from_settings(settings)
        self._batcher = batcher
        self._recognizer = recognizer
        self._record_play = record_play
        self._resolve = resolve
        self.rows = rows
        self._executor = executor
        self.leased = leased
        self.on_change: Callable[[], None] = lambda: None
        self.monitors: dict[str, Monitor] = {}
        #: time.monotonic() when ``add`` had stored each monitor still unseen in a store snapshot (``sync``).
        self._added_at: dict[str, float] = {}
        #: time.monotonic() when ``remove`` had deleted each monitor a snapshot may still hold (``sync``).
        self._removed_at: dict[str, float] = {}

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(self) -> None:
        """Start the monitors of the store (after importing an older release's ``monitors.json``, once).

        Raises ``PlaysLogError`` when the store cannot be read: the server
        does not start without knowing its monitors.
        """
        await self._io(self.rows.import_legacy, self.settings.state_path)
        for row in (await self._io(self.rows.all))[: self.settings.max_monitors]:
            self._begin(Monitor(row.id, row.name, row.url))

    async def add(self, url: str, name: str | None) -> Monitor:
        """Validate, store and start a monitor; ``MonitorError``/``UrlRefused`` when not allowed.

        name: shown on the pages and logged with every play; default: the URL's
        host (never its path or query, which may hold a stream key), numbered
        when taken. An explicit name that is taken (in the store, by any
        worker, compared case-insensitively) is refused (409).
        """
        if await self._io(self.rows.count) >= self.settings.max_monitors:
            raise MonitorError(f"at most {self.settings.max_monitors} monitors (--max-monitors)", "monitor_limit")
        target = await check_url(url, self.policy, self._resolve)
        name = (name or "").strip()
        if name and (len(name) > MAX_NAME_CHARS or not name.isprintable()):
            raise MonitorError(f"monitor name: printable, at most {MAX_NAME_CHARS} characters",
                               "bad_monitor_name", 400)
        taken = {name_key(n) for n in await self._io(self.rows.names)}
        name = name or _free_name(target.host[:MAX_NAME_CHARS - 6], taken)
        # The insert is the check: the store's UNIQUE name_key also settles a
        # race with another worker adding the same name at this moment.
        row = await self._io(self.rows.add, uuid.uuid4().hex[:12], name, target.url)
        if row is None:
            raise MonitorError(f"a monitor named {name!r} exists already; choose another name",
                               "duplicate_monitor_name")
        self._added_at[row.id] = time.monotonic()
        monitor = Monitor(row.id, row.name, row.url)
        self._begin(monitor)
        self.on_change()
        return monitor

    async def remove(self, monitor_id: str) -> None:
        """Delete a monitor from the store and stop it here; ``MonitorError`` (404) when unknown."""
        removed = await self._io(self.rows.remove, monitor_id)
        monitor = self.monitors.pop(monitor_id, None)
        if monitor is None and not removed:
            raise MonitorError(f"no monitor {monitor_id!r}", "unknown_monitor", 404)
        self._removed_at[monitor_id] = time.monotonic()
        if monitor is not None:
            await self._stop(monitor)
        self.on_change()

    async def stored_names(self) -> list[str]:
        """Every monitor's name in the store, whichever worker runs it (names streams may not claim)."""
        return await self._io(self.rows.names)

    async def close(self) -> None:
        """Stop every monitor (server shutdown); they stay stored for the next start."""
        await asyncio.gather(*(self._stop(m) for m in self.monitors.values()), return_exceptions=True)

    # --- run by lease (``web.workers.MonitorRunner``) ---------------------------------

    def running(self) -> set[str]:
        """Ids of the monitors running here now."""
        return {mid for mid, m in self.monitors.items() if m.task is not None and not m.task.done()}

    async def start_leased(self, monitor_id: str, record_map: Callable[[PlayRecord], PlayRecord]) -> bool:
        """Start a monitor whose lease this worker took; False when the store has no such monitor."""
        # Read even when it is known here: the claim may come from a snapshot
        # older than its removal (here or by another worker).
        row = await self._io(self.rows.get, monitor_id)
        if row is None:
            return False
        monitor = self.monitors.get(monitor_id) or Monitor(row.id, row.name, row.url)
        if monitor_id in self.running():
            return True
        monitor.record_map, monitor.seconds, monitor.message = record_map, 0.0, ""
        self._start(monitor)
        return True

    async def stop_leased(self, monitor_id: str) -> None:
        """Stop a monitor whose lease this worker lost or gave up; it stays known (and stored)."""
        monitor = self.monitors.get(monitor_id)
        if monitor is not None:
            await self._stop(monitor)
            monitor.state, monitor.message, monitor.record_map = "elsewhere", "runs on another worker", None

    def stream_seconds(self, monitor_id: str) -> float:
        """Seconds of audio of the monitor's current connection here (0 when it is not running here)."""
        monitor = self.monitors.get(monitor_id)
        return monitor.seconds if monitor is not None and monitor.task is not None else 0.0

    def sync(self, rows: list[tuple[str, str, str]], holders: dict[str, str], *, read_at: float = math.inf) -> None:
        """Follow the store: know the monitors other workers added, forget removed ones, say who runs which.

        rows: (id, name, url) of every stored monitor; holders: monitor id
        -> the worker holding its live lease; read_at: ``time.monotonic()``
        when the reading of ``rows`` began. A monitor this worker added after
        that is missing from a snapshot older than its row, not removed, so
        it is kept (forgetting it made a monitor just added vanish from the
        list until the next heartbeat). Likewise a monitor this worker
        removed is still in a snapshot that began before the removal ended:
        it stays removed (bringing it back listed a deleted monitor, and the
        lease loop started it again).
        """
        stored = {mid for mid, _, _ in rows}
        for mid in stored & self._added_at.keys():
            del self._added_at[mid]  # seen in the store: from now on its absence means it was removed
        for mid in [m for m, t in self._removed_at.items() if t < read_at and m not in stored]:
            del self._removed_at[mid]  # a snapshot after the removal agrees: nothing stale is left to refuse
        rows = [r for r in rows if self._removed_at.get(r[0], -math.inf) < read_at]
        for mid in [m for m in self.monitors if m not in stored and m not in self.running()
                    and self._added_at.get(m, -math.inf) < read_at]:
            del self.monitors[mid]
            self._added_at.pop(mid, None)
        for mid, name, url in rows[: self.settings.max_monitors]:
            monitor = self.monitors.setdefault(mid, Monitor(mid, name, url))
            if mid not in self.running() and mid in holders:
                monitor.state, monitor.message = "elsewhere", f"runs on worker {holders[mid]}"

    def _begin(self, monitor: Monitor) -> None:
        """A monitor loaded or added here: started now, or (leased) when this worker gets its lease."""
        if self.leased:
            self.monitors[monitor.id] = monitor
        else:
            self._start(monitor)

    def _start(self, monitor: Monitor) -> None:
        self.monitors[monitor.id] = monitor
        monitor.task = asyncio.create_task(self._run(monitor), name=f"monitor-{monitor.id}")

    async def _stop(self, monitor: Monitor) -> None:
        task = monitor.task
        if task is not None:
            # A lost cancel must not keep a shutdown or a lost lease waiting
            # for a monitor that goes on retrying (``web.stopping``).
            await cancel_until_done(task)
        monitor.state = "stopped"

    def _recorder(self, monitor: Monitor) -> Callable:
        """``record_play`` for the monitor's session: its play records through ``monitor.record_map``."""
        def record(item):
            mapping = monitor.record_map
            return self._record_play(mapping(item) if mapping is not None and isinstance(item, PlayRecord)
                                     else item)
        return record

    async def _run(self, monitor: Monitor) -> None:
        failures = 0
        while True:
            t0 = time.monotonic()
            refused = False
            try:
                await self._read_once(monitor)
            except UrlRefused as exc:
                refused = True
                monitor.message = str(exc)
                log.warning("monitor %s refused: %s", monitor.name, exc)
            except (OSError, AudiocopyError) as exc:
                if stop_requested():  # the stop's cancel, come back as an error (``web.stopping``)
                    raise asyncio.CancelledError from exc
                monitor.message = str(exc)
                log.warning("monitor %s failed: %s", monitor.name, exc)
            failures = 0 if time.monotonic() - t0 > STABLE_AFTER_S else failures + 1
            delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
            # A refusal stays visible as "refused" through the wait; only a failure is "waiting".
            monitor.state, monitor.connected_since = ("refused" if refused else "waiting"), None
            monitor.message = (monitor.message + "; " if monitor.message else "") + f"trying again in {delay:.0f} s"
            monitor.restarts += 1
            await asyncio.sleep(delay)

    async def _read_once(self, monitor: Monitor) -> None:
        """One connection (``monitor_connection.read_once``); ``UrlRefused`` when it is refused."""
        fetcher = GuardedFetcher(self.policy, allow_hls=self.settings.allow_hls_monitors, resolve=self._resolve)
        await read_once(monitor, fetcher, recognizer=self._recognizer, batcher=self._batcher,
                        record_play=self._recorder(monitor))


def _free_name(base: str, taken: set[str]) -> str:
    """``base``, or "base (2)", "base (3)" ... : the first whose ``name_key`` is not in ``taken``."""
    n, name = 1, base
    while name_key(name) in taken:
        n += 1
        name = f"{base} ({n})"
    return name
