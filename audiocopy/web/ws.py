"""The ``/ws`` endpoint: one WebSocket = one live stream.

Place in the pipeline: the transport between a client (the Live page, the
``tools/stream.py`` script, the load test) and a ``StreamSession``. The
handler is deliberately a thin loop: admission (Origin, connections per
client address, the ``start``'s source name and stream token, see
``web.source_tokens``), message size, and dispatch of ``start`` / binary
PCM / ``stop``. Message formats are in ``web.protocol``, stream state in
``web.session``.

Slots and timeouts. A stream slot (``max_streams``) is taken by a valid
``start``, not by the handshake: sockets that connect and say nothing must
not lock real streams out. What they may hold is bounded instead: each
client address may keep ``connections_per_address`` connections open, a
connection must start within ``start_timeout_s`` and a started stream must
send audio at least every ``idle_timeout_s`` (``Deadline``); otherwise it is
told why (``start_timeout``, ``idle_timeout``, ``too_many_connections``) and
closed.

The event loop only moves bytes: a binary message is checked for size and
handed to ``StreamSession.feed`` (an append), and results come back from
the compute worker as ready JSON text. They go through a bounded
per-connection ``Outbox`` that one sender task writes to the socket. A
client that stops reading its results fills it and is disconnected,
instead of making the server buffer without limit. A stream that is not
live is not read further while its audio waits for compute (back-pressure).

Sizes. Messages above ``max_message_bytes`` (1 MiB by default) are answered
with a ``message_too_large`` error and ignored; the connection stays up.
aiohttp's own hard limit is set a few times higher, and a message beyond
*that* closes the connection (code 1009) before it is buffered.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid

from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import ProtocolError
from ..plays.base import PlaysLogError
from . import protocol
from .keys import BATCHER, IO_EXECUTOR, MONITORS, PLAYS, RECOGNIZER, SETTINGS, STREAMS
from .security import origin_allowed
from .session import StreamSession
from .source_tokens import SOURCE_TOKENS, authorise

log = logging.getLogger(__name__)

#: Results waiting to be written to one client before it counts as not reading.
MAX_OUTBOX = 1000
#: aiohttp's hard message limit relative to ours (see module docstring).
HARD_LIMIT_FACTOR = 4
HEARTBEAT_S = 30.0


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(max_msg_size=HARD_LIMIT_FACTOR * settings.max_message_bytes,
                               heartbeat=HEARTBEAT_S, compress=False)
    await ws.prepare(request)
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.allowed_origins,
                          settings.host_allowlist):
        log.warning("refused a stream from origin %r", request.headers.get("Origin"))
        await _refuse(ws, protocol.FORBIDDEN_ORIGIN, "this page's origin may not stream to this server",
                      WSCloseCode.POLICY_VIOLATION)
        return ws
    streams = request.app[STREAMS]
    if not streams.try_connect(ws, request.remote):
        log.warning("refused a connection from %s: %d already open", request.remote, streams.per_address)
        await _refuse(ws, protocol.TOO_MANY_CONNECTIONS, f"this address already has {streams.per_address} "
                      "connections open; close some and try again", WSCloseCode.TRY_AGAIN_LATER)
        return ws
    try:
        await _serve(request, ws)
    finally:
        streams.discard(ws)
    return ws


async def _refuse(ws: web.WebSocketResponse, code: str, message: str, close_code: int) -> None:
    await ws.send_str(protocol.outgoing(protocol.error(code, message)).text)
    await ws.close(code=close_code, message=code.encode())


#: WebSocket close code for each fatal error a stream can end with.
CLOSE_CODES = {protocol.TOO_MANY_STREAMS: WSCloseCode.TRY_AGAIN_LATER}


async def _serve(request: web.Request, ws: web.WebSocketResponse) -> None:
    settings = request.app[SETTINGS]
    max_bytes = settings.max_message_bytes
    outbox = Outbox(ws, MAX_OUTBOX)
    deadline = Deadline(ws, outbox, settings.start_timeout_s, protocol.START_TIMEOUT,
                        f"no valid \"start\" within {settings.start_timeout_s:g} s of connecting")
    session: StreamSession | None = None
    close_code, reason = WSCloseCode.OK, b""
    try:
        async for msg in ws:
            kind = msg.type
            if kind == WSMsgType.BINARY:  # the hot path: hundreds of streams x 10 messages a second
                data = msg.data
                try:
                    if len(data) > max_bytes:
                        raise _too_large(len(data), max_bytes)
                    if session is None:
                        raise ProtocolError(protocol.NOT_STARTED, "send a \"start\" message before audio")
                    session.feed(data)
                except ProtocolError as exc:
                    outbox.put([protocol.outgoing(protocol.error(exc.code, str(exc)))])
                    continue
                deadline.touch()
                if session.closed:
                    break
                if not session.realtime:
                    with deadline.paused():  # the server, not the client, is slow here
                        await session.wait_room()
                continue
            if kind == WSMsgType.ERROR:
                log.info("stream connection error: %s", ws.exception())
                break
            if kind != WSMsgType.TEXT:
                continue
            try:
                with deadline.paused():  # ``stop`` waits for every result
                    started = session
                    session = await _on_text(request, ws, msg.data, session, outbox)
                if started is None and session is not None:
                    deadline.restart(settings.idle_timeout_s, protocol.IDLE_TIMEOUT,
                                     f"no audio for {settings.idle_timeout_s:g} s")
            except ProtocolError as exc:
                outbox.put([protocol.outgoing(protocol.error(exc.code, str(exc)))])
                if exc.code in protocol.FATAL_CODES:
                    close_code, reason = CLOSE_CODES.get(exc.code, WSCloseCode.POLICY_VIOLATION), exc.code.encode()
                    break
            if session is not None and session.closed:
                break
    finally:
        deadline.cancel()
        if session is not None and not session.closed:
            session.abandon()
        await outbox.close()
        await ws.close(code=close_code, message=reason)


def _too_large(size: int, max_bytes: int) -> ProtocolError:
    return ProtocolError(protocol.MESSAGE_TOO_LARGE, f"a message may be at most {max_bytes} bytes, this one is "
                                                     f"{size}; send smaller frames")


async def _on_text(request: web.Request, ws: web.WebSocketResponse, text: str, session: StreamSession | None,
                   outbox: Outbox) -> StreamSession | None:
    """A text frame: ``start`` makes the session, ``stop`` finishes it; returns the session."""
    max_bytes = request.app[SETTINGS].max_message_bytes
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise _too_large(size, max_bytes)
    parsed = protocol.parse_text(text)
    if isinstance(parsed, protocol.StartRequest):
        if session is not None:
            raise ProtocolError(protocol.ALREADY_STARTED, "this stream has already started")
        return await _start_session(request, ws, parsed, outbox)
    if session is None:
        raise ProtocolError(protocol.NOT_STARTED, "nothing to stop: the stream has not started")
    await session.finish()
    return session


def _admit(app: web.Application, start: protocol.StartRequest) -> protocol.StartRequest:
    """``source_tokens.authorise`` against the store (stream tokens, every worker's monitor names).

    Blocking SQL: runs in the I/O pool. A store that fails refuses the
    stream (``internal_error``) rather than letting it pass unchecked.
    """
    try:
        return authorise(start, app[SOURCE_TOKENS], app[MONITORS].rows.names(),
                         required=app[SETTINGS].require_source_tokens)
    except PlaysLogError as exc:
        log.error("cannot check a stream's source: %s", exc)
        raise ProtocolError(protocol.INTERNAL_ERROR, "the server cannot check stream sources right now; try "
                            "again later") from None


async def _start_session(request: web.Request, ws: web.WebSocketResponse, start: protocol.StartRequest,
                   outbox: Outbox) -> StreamSession:
    """A valid ``start``: check its source, take a stream slot and make the session.

    The source is checked first (``source_tokens.authorise``: a token's
    own name, or a name nobody reserved), so a refused client takes no
    slot; then ``too_many_streams`` when no slot is free.
    """
    app = request.app
    settings = app[SETTINGS]
    streams = app[STREAMS]
    claimed = start.source
    try:
        start = await asyncio.get_running_loop().run_in_executor(app[IO_EXECUTOR], _admit, app, start)
    except ProtocolError as exc:
        log.warning("refused a stream from %s claiming source %r: %s", request.remote, claimed, exc.code)
        raise
    if not streams.try_add(ws):
        raise ProtocolError(protocol.TOO_MANY_STREAMS, f"the server already serves {streams.limit} streams; "
                            "try again later")
    recognizer = app[RECOGNIZER].current
    audio = recognizer.audio
    session = StreamSession(session_id=uuid.uuid4().hex[:12], start=start, audio=audio, batcher=app[BATCHER],
                            decision=recognizer.stream_decision(start.source), emit=outbox.put,
                            record_play=app[PLAYS].record)
    outbox.put([protocol.outgoing(protocol.ready(
        session=session.id, start=start, internal_rate=audio.sample_rate, window_s=audio.window_seconds,
        hop_s=audio.hop_seconds, tracks=len(recognizer.track_ids), engine=recognizer.engine.name,
        max_message_bytes=settings.max_message_bytes))])
    log.info("stream %s started: %s (%s), %d Hz %s x%d", session.id, start.source,
             "verified" if start.source_verified else "unverified", start.sample_rate, start.fmt, start.channels)
    return session


class Outbox:
    """Ready messages waiting to be written to one client, and the task that writes them.

    Results are produced by the compute worker, not by the socket loop, so
    they wait here; one sender task writes them in order with ``send_str``
    (the JSON text is made already). A client that stops reading fills the
    outbox past ``limit`` messages and is disconnected, instead of making
    the server buffer without limit.
    """

    def __init__(self, ws: web.WebSocketResponse, limit: int):
        self._ws = ws
        self._limit = limit
        self._items: collections.deque[str] = collections.deque()
        self._wake = asyncio.Event()
        self._done = False
        self._closing: asyncio.Task | None = None  # at most one close for a client that does not read
        self._task = asyncio.create_task(self._run())

    def put(self, messages: list[protocol.Outgoing]) -> None:
        """Queue messages for the client (called on the event loop)."""
        self._items.extend(m.text for m in messages)
        if len(self._items) > self._limit and self._closing is None and not self._ws.closed:
            log.warning("closing a stream whose client does not read its results")
            self._items.clear()
            self._closing = asyncio.ensure_future(
                self._ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"client not reading"))
        self._wake.set()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded by ``timeout_s``), then stop the sender."""
        self._done = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: it can lose a cancel (``web.stopping``)
                await self._task
        except Exception:  # a timeout or a dead socket must not block the handler's exit
            self._task.cancel()

    async def _run(self) -> None:
        ws, items = self._ws, self._items
        while True:
            await self._wake.wait()
            self._wake.clear()
            while items:
                text = items.popleft()
                if ws.closed:
                    continue
                try:
                    await ws.send_str(text)
                except (ConnectionResetError, RuntimeError) as exc:  # the client went away mid-send
                    log.debug("stopped sending to a closed stream: %s", exc)
            if self._done:
                return


class Deadline:
    """Closes a connection that keeps its socket but does not stream.

    Two phases: from the handshake the client has ``start_timeout_s`` to
    send a valid ``start`` (until then it holds no stream slot, but an open
    socket, a task and buffers); after it, every audio frame must come
    within ``idle_timeout_s`` of the previous one. aiohttp answers pings by
    itself, so a socket that sends nothing would otherwise live for ever.

    Cheap on the hot path: an audio frame only stores the time
    (``touch``); one timer per connection checks it when it fires and, if
    audio came meanwhile, sets itself for the new due time. While the
    *server* is the slow side (a batch stream waiting for compute, ``stop``
    waiting for results) the deadline is paused.
    """

    def __init__(self, ws: web.WebSocketResponse, outbox: Outbox, timeout_s: float, code: str, message: str):
        self._ws = ws
        self._outbox = outbox
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._holds = 0
        self._paused_at = 0.0
        self._closing: asyncio.Task | None = None
        self.restart(timeout_s, code, message)

    def restart(self, timeout_s: float, code: str, message: str) -> None:
        """A new phase: ``code``/``message`` end the connection after ``timeout_s`` without ``touch``."""
        self._timeout, self._code, self._message = timeout_s, code, message
        self.cancel()
        self.touch()
        self._handle = self._loop.call_at(self._last + timeout_s, self._fire)

    def touch(self) -> None:
        """The client did what was expected of it: the clock starts again."""
        self._last = self._loop.time()

    @contextlib.contextmanager
    def paused(self):
        """The server is the slow side for the duration: that time does not count (the rest still does)."""
        if not self._holds:
            self._paused_at = self._loop.time()
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                self._last += self._loop.time() - self._paused_at

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = self._loop.time()
        due = (now if self._holds else self._last) + self._timeout
        if due > now:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self._handle = None
        if self._closing is None and not self._ws.closed:
            log.info("closing a connection: %s", self._message)
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        self._outbox.put([protocol.outgoing(protocol.error(self._code, self._message))])
        await self._outbox.close(timeout_s=2.0)  # the error goes out before the close frame
        await self._ws.close(code=WSCloseCode.POLICY_VIOLATION, message=self._code.encode())
