"""One connection of a URL monitor: the fetched bytes through ffmpeg into a stream session, until it ends.

Place in the pipeline: the transport half of ``web.monitors``. The manager
there decides when a monitor connects (back-off, leases, stop); this module
is what one connection does. ``GuardedFetcher`` fetches the URL, checked and
pinned (``url_fetch``, ``url_guard``); its bytes go to an ``ffmpeg`` child
that may open nothing but its pipes and decodes them to 16 kHz mono s16le;
those samples go into a ``MonitorSession``, a ``StreamSession`` like a
browser's, so windows, batching, plays and the log are the same code.

Back-pressure. The session is not "realtime": when compute is behind,
``wait_room`` holds the reading of ffmpeg's stdout, ffmpeg stops reading its
stdin, the feeder stops reading the socket, and memory stays bounded by the
pipes. Nothing is dropped.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ..decision.recognizer import Recognizer
from ..errors import AudiocopyError, ProtocolError
from . import protocol
from .batcher import MONITOR, Batcher
from .session import StreamSession
from .url_fetch import GuardedFetcher, ffmpeg_pipe_command
from .url_guard import UrlRefused

if TYPE_CHECKING:
    from .monitors import Monitor

log = logging.getLogger(__name__)

READ_BYTES = 6400  # 0.2 s of 16 kHz s16le: small enough for prompt windows


class MonitorSession(StreamSession):
    """A monitor's stream: not live (back-pressure, never dropped), counted as a monitor by the batcher."""

    source_kind = MONITOR


# Long: one connection's lifetime (fetch, ffmpeg, session, clean-up) reads best in one place
async def read_once(monitor: Monitor, fetcher: GuardedFetcher, *, recognizer: Callable[[], Recognizer],
                    batcher: Batcher, record_play: Callable) -> None:
    """One connection: fetch (checked and pinned) into ffmpeg, read until the stream ends.

    monitor: its live state, updated here (state, message, counts).
    fetcher: an unopened ``GuardedFetcher`` with the monitor's address
    policy. recognizer: the server's current recognizer (read once the
    first bytes have arrived). batcher: the server's compute scheduler.
    record_play: where the session's play records go. Raises
    ``UrlRefused`` when the URL, a redirect or an HLS segment is refused;
    plays are closed at the end either way.
    """
    async with fetcher:
        chunks = fetcher.stream(monitor.url)
        try:
            first = await anext(chunks)  # every check of the first connection happens before ffmpeg starts
        except StopAsyncIteration:
            monitor.message = "stream ended"
            return
        current = recognizer()
        audio = current.audio
        proc = await asyncio.create_subprocess_exec(*ffmpeg_pipe_command(audio.sample_rate),
                                                    stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        errors: collections.deque[str] = collections.deque(maxlen=5)
        stderr_task = asyncio.create_task(_collect_lines(proc.stderr, errors))
        feeder = asyncio.create_task(_feed(proc.stdin, first, chunks))
        session = MonitorSession(session_id=f"monitor-{monitor.id}", start=protocol.StartRequest(
            audio.sample_rate, "s16le", 1, source=monitor.name, realtime=False), audio=audio,
            batcher=batcher, decision=current.stream_decision(monitor.name),
            emit=lambda messages: _on_messages(monitor, messages), record_play=record_play)
        monitor.state, monitor.message, monitor.connected_since = "connected", "", time.time()
        try:
            await _pump(proc, session, monitor)
        finally:
            if not session.closed:
                session.abandon()
            feeder.cancel()
            if proc.returncode is None:
                proc.kill()
            rc = await proc.wait()
            fed = (await asyncio.gather(feeder, return_exceptions=True))[0]
            await asyncio.gather(stderr_task, return_exceptions=True)
            await chunks.aclose()
    _report_end(monitor, rc, errors, fed)


async def _pump(proc: asyncio.subprocess.Process, session: StreamSession, monitor: Monitor) -> None:
    """ffmpeg's PCM into the session, with back-pressure, until ffmpeg ends."""
    carry = b""
    assert proc.stdout is not None
    try:
        while data := await proc.stdout.read(READ_BYTES):
            data, carry = _whole_frames(carry + data, 2)
            session.feed(data)
            monitor.seconds = session.seconds_in
            await session.wait_room()  # back-pressure: ffmpeg waits while compute is behind
        await session.finish()
    except ProtocolError as exc:  # pragma: no cover - whole frames are always fed
        log.error("monitor %s: %s", monitor.name, exc)


async def _feed(stdin: asyncio.StreamWriter | None, first: bytes, chunks: AsyncIterator[bytes]) -> None:
    """The fetched bytes into ffmpeg's stdin; closing it tells ffmpeg the stream has ended."""
    assert stdin is not None
    try:
        stdin.write(first)
        await stdin.drain()
        async for chunk in chunks:
            stdin.write(chunk)
            await stdin.drain()  # back-pressure from ffmpeg reaches the socket
    finally:
        stdin.close()


def _report_end(monitor: Monitor, rc: int, errors: collections.deque, fed: BaseException | None) -> None:
    """Why a connection ended: a refusal is raised (the monitor shows "refused"), the rest is a message."""
    if isinstance(fed, UrlRefused):
        raise fed  # a redirect or an HLS segment met later in the stream
    if isinstance(fed, AudiocopyError):
        monitor.message = str(fed)
    elif rc != 0:
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
        elif msg["type"] == "dropped":  # never sent to a monitor (it waits instead); counted, not ignored
            monitor.dropped += msg["windows"]
            log.error("monitor %s lost %d windows", monitor.name, msg["windows"])
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
