"""URL monitors: radio and other http(s) streams read by ffmpeg, recognised like any stream.

Place in the pipeline: another transport beside the WebSocket. Each monitor
runs ``ffmpeg`` as a child process that decodes the URL (MP3, AAC, Ogg, HLS,
...) to 16 kHz mono s16le on its stdout; the bytes go into a
``StreamSession`` exactly as a browser's frames do, so windows, batching,
plays and the log are shared code, not a second pipeline.

Robustness: a stream that ends or fails (network, server restart) is
started again after an exponential back-off (1 s, 2 s, 4 s ... 60 s), reset
once a connection has lasted a minute. A monitor reads with back-pressure
(its session is not "realtime"): when compute is behind, ffmpeg's pipe
fills and ffmpeg waits, so nothing is dropped and memory stays bounded by
the pipe.

Safety: the URL is checked by ``security.check_monitor_url`` before every
(re)connection, and ffmpeg may only use the http/https/tcp/tls protocols,
so an HLS playlist cannot point it at ``file:`` or other protocols. Known
limits: ffmpeg resolves the host again itself and follows redirects, so a
hostile DNS server or redirect could still lead it to a private address;
run the server where that address space holds nothing sensitive, or behind
an egress firewall, if monitors take URLs from untrusted users.

Monitors are saved to ``STATE/monitors.json`` and restarted with the server.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from ..atomic_files import atomic_write_json
from ..config import ServerSettings
from ..decision.play import Play
from ..decision.recognizer import Recognizer
from ..errors import AudiocopyError, ProtocolError
from . import protocol
from .batcher import Batcher
from .security import UrlRefused, check_monitor_url
from .session import StreamSession

log = logging.getLogger(__name__)

MONITORS_FILE = "monitors.json"
READ_BYTES = 6400  # 0.2 s of 16 kHz s16le: small enough for prompt windows
MAX_BACKOFF_S = 60.0
STABLE_AFTER_S = 60.0
MAX_NAME_CHARS = 100


class MonitorError(AudiocopyError):
    """A monitor cannot be added or found."""


def ffmpeg_command(url: str, sample_rate: int) -> list[str]:
    """ffmpeg decoding ``url`` to mono s16le at ``sample_rate`` on stdout."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-protocol_whitelist", "http,https,tcp,tls",
            "-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", "10",
            "-rw_timeout", "15000000",  # microseconds without data before ffmpeg gives up
            "-i", url, "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "pipe:1"]


@dataclass
class Monitor:
    """One monitored URL and what the Monitors page shows of it."""

    id: str
    name: str
    url: str
    state: str = "starting"  # starting | connected | waiting | refused | stopped
    message: str = ""
    connected_since: float | None = None
    seconds: float = 0.0
    windows: int = 0
    plays: int = 0
    restarts: int = 0
    current: dict | None = None  # last window message
    recent_plays: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10))
    task: asyncio.Task | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "url": self.url, "state": self.state, "message": self.message,
                "connected_since": self.connected_since, "seconds": round(self.seconds, 1),
                "windows": self.windows, "plays": self.plays, "restarts": self.restarts,
                "current": self.current, "recent_plays": list(self.recent_plays)}


class MonitorManager:
    """Starts, stops and persists URL monitors.

    recognizer: returns the current recognizer (audio parameters, play threshold, decision parameters).
    record_play: where closed plays go (the app's ``PlaySink.record``).
    """

    def __init__(self, settings: ServerSettings, batcher: Batcher, recognizer: Callable[[], Recognizer],
                 record_play: Callable[[Play], None], *, resolve=None):
        self.settings = settings
        self._batcher = batcher
        self._recognizer = recognizer
        self._record_play = record_play
        self._resolve = resolve
        self.monitors: dict[str, Monitor] = {}
        self.path = settings.state_path / MONITORS_FILE

    async def load(self) -> None:
        """Start the monitors saved by a previous run (bad entries are logged and skipped)."""
        if not self.path.exists():
            return
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            entries = [(str(m["id"]), str(m["name"]), str(m["url"])) for m in saved]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring unreadable %s (%s)", self.path, exc)
            return
        for mid, name, url in entries[: self.settings.max_monitors]:
            self._start(Monitor(mid, name, url))

    async def add(self, url: str, name: str | None) -> Monitor:
        """Validate and start a monitor; ``MonitorError``/``UrlRefused`` when not allowed."""
        if len(self.monitors) >= self.settings.max_monitors:
            raise MonitorError(f"at most {self.settings.max_monitors} monitors (--max-monitors)")
        url = await check_monitor_url(url, allow_private=self.settings.allow_private_monitors,
                                      resolve=self._resolve)
        name = (name or "").strip() or url.split("//", 1)[-1][:MAX_NAME_CHARS]
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise MonitorError(f"monitor name: printable, at most {MAX_NAME_CHARS} characters")
        monitor = Monitor(uuid.uuid4().hex[:12], name, url)
        self._start(monitor)
        self._save()
        return monitor

    async def remove(self, monitor_id: str) -> None:
        monitor = self.monitors.pop(monitor_id, None)
        if monitor is None:
            raise MonitorError(f"no monitor {monitor_id!r}")
        await self._stop(monitor)
        self._save()

    async def close(self) -> None:
        """Stop every monitor (server shutdown); they stay saved for the next start."""
        await asyncio.gather(*(self._stop(m) for m in self.monitors.values()), return_exceptions=True)

    def _start(self, monitor: Monitor) -> None:
        self.monitors[monitor.id] = monitor
        monitor.task = asyncio.create_task(self._run(monitor), name=f"monitor-{monitor.id}")

    async def _stop(self, monitor: Monitor) -> None:
        if monitor.task is not None:
            monitor.task.cancel()
            await asyncio.gather(monitor.task, return_exceptions=True)
        monitor.state = "stopped"

    def _save(self) -> None:
        data = [{"id": m.id, "name": m.name, "url": m.url} for m in self.monitors.values()]
        atomic_write_json(self.path, data)

    async def _run(self, monitor: Monitor) -> None:
        failures = 0
        while True:
            t0 = time.monotonic()
            try:
                await check_monitor_url(monitor.url, allow_private=self.settings.allow_private_monitors,
                                        resolve=self._resolve)
                await self._read_once(monitor)
            except UrlRefused as exc:
                monitor.state, monitor.message = "refused", str(exc)
                log.warning("monitor %s refused: %s", monitor.name, exc)
            except (OSError, AudiocopyError) as exc:
                monitor.message = str(exc)
                log.warning("monitor %s failed: %s", monitor.name, exc)
            failures = 0 if time.monotonic() - t0 > STABLE_AFTER_S else failures + 1
            delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
            monitor.state, monitor.connected_since = "waiting", None
            monitor.message = (monitor.message + "; " if monitor.message else "") + f"reconnecting in {delay:.0f} s"
            monitor.restarts += 1
            await asyncio.sleep(delay)

    async def _read_once(self, monitor: Monitor) -> None:
        """One ffmpeg run: read until the stream ends; plays are closed at the end."""
        recognizer = self._recognizer()
        audio = recognizer.audio
        proc = await asyncio.create_subprocess_exec(*ffmpeg_command(monitor.url, audio.sample_rate),
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        errors: collections.deque[str] = collections.deque(maxlen=5)
        stderr_task = asyncio.create_task(_collect_lines(proc.stderr, errors))
        session = StreamSession(session_id=f"monitor-{monitor.id}", start=protocol.StartRequest(
            audio.sample_rate, "s16le", 1, source=monitor.name, realtime=False), audio=audio,
            batcher=self._batcher, decision=recognizer.stream_decision(monitor.name),
            emit=lambda messages: _on_messages(monitor, messages), record_play=self._record_play)
        monitor.state, monitor.message, monitor.connected_since = "connected", "", time.time()
        carry = b""
        try:
            assert proc.stdout is not None
            while data := await proc.stdout.read(READ_BYTES):
                data, carry = _whole_frames(carry + data, 2)
                session.feed(data)
                monitor.seconds = session.seconds_in
                await session.wait_room()  # back-pressure: ffmpeg waits while compute is behind
            await session.finish()
        except ProtocolError as exc:  # pragma: no cover - whole frames are always fed
            log.error("monitor %s: %s", monitor.name, exc)
        finally:
            if not session.closed:
                session.abandon()
            if proc.returncode is None:
                proc.kill()
            rc = await proc.wait()
            await asyncio.gather(stderr_task, return_exceptions=True)
        if rc != 0:
            monitor.message = "ffmpeg: " + (errors[-1] if errors else f"exit status {rc}")
        else:
            monitor.message = "stream ended"


def _whole_frames(data: bytes, frame_bytes: int) -> tuple[bytes, bytes]:
    """Split ``data`` into whole frames and the remainder a pipe read may cut off."""
    cut = len(data) - len(data) % frame_bytes
    return data[:cut], data[cut:]


def _on_messages(monitor: Monitor, messages: list[protocol.Outgoing]) -> None:
    for out in messages:
        msg = out.body
        if msg["type"] == "window":
            monitor.windows += 1
            monitor.current = {k: msg[k] for k in ("start_s", "end_s", "match", "score")}
        elif msg["type"] == "play":
            monitor.plays += 1
            monitor.recent_plays.appendleft({k: msg[k] for k in ("track", "start_s", "end_s", "confidence",
                                                                  "started_at")})


async def _collect_lines(stream: asyncio.StreamReader | None, sink: collections.deque) -> None:
    """Drain a child's stderr (a full pipe would stall it), keeping the last lines."""
    if stream is None:
        return
    while line := await stream.readline():
        text = line.decode("utf-8", "replace").strip()
        if text:
            sink.append(text)
