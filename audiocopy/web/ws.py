"""The ``/ws`` endpoint: one WebSocket = one live stream.

Place in the pipeline: the transport between a client (the Live page, the
``tools/stream.py`` script, the load test) and a ``StreamSession``. The
handler is deliberately a thin loop: admission (Origin, stream limit),
message size, and dispatch of ``start`` / binary PCM / ``stop``. Message
formats are in ``web.protocol``, stream state in ``web.session``.

Sending. Results are produced by the batcher, not by this loop, so they go
through a bounded per-connection queue that one sender task writes to the
socket. A client that stops reading its results fills the queue and is
disconnected, instead of making the server buffer without limit.

Sizes. Messages above ``max_message_bytes`` (1 MiB by default) are answered
with a ``message_too_large`` error and ignored; the connection stays up.
aiohttp's own hard limit is set a few times higher, and a message beyond
*that* closes the connection (code 1009) before it is buffered.
"""
from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import ProtocolError
from . import protocol
from .keys import BATCHER, PLAYS, RECOGNIZER, SETTINGS, STREAMS
from .security import origin_allowed
from .session import StreamSession, new_decision

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
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.allowed_origins):
        log.warning("refused a stream from origin %r", request.headers.get("Origin"))
        await _refuse(ws, protocol.FORBIDDEN_ORIGIN, "this page's origin may not stream to this server",
                      WSCloseCode.POLICY_VIOLATION)
        return ws
    streams = request.app[STREAMS]
    if not streams.try_add(ws):
        await _refuse(ws, protocol.TOO_MANY_STREAMS,
                      f"the server already serves {streams.limit} streams; try again later", WSCloseCode.TRY_AGAIN_LATER)
        return ws
    try:
        await _serve(request, ws)
    finally:
        streams.discard(ws)
    return ws


async def _refuse(ws: web.WebSocketResponse, code: str, message: str, close_code: int) -> None:
    await ws.send_json(protocol.error(code, message))
    await ws.close(code=close_code, message=code.encode())


async def _serve(request: web.Request, ws: web.WebSocketResponse) -> None:
    app = request.app
    settings = app[SETTINGS]
    outbox: asyncio.Queue[dict | None] = asyncio.Queue(MAX_OUTBOX)
    closing: list[asyncio.Task] = []  # at most one close for a client that does not read

    def emit(msg: dict) -> None:
        try:
            outbox.put_nowait(msg)
        except asyncio.QueueFull:
            if not closing and not ws.closed:
                log.warning("closing a stream whose client does not read its results")
                closing.append(asyncio.ensure_future(
                    ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"client not reading")))

    sender = asyncio.create_task(_send_loop(ws, outbox))
    session: StreamSession | None = None
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                log.info("stream connection error: %s", ws.exception())
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            size = len(msg.data) if msg.type == WSMsgType.BINARY else len(msg.data.encode("utf-8"))
            if size > settings.max_message_bytes:
                emit(protocol.error(protocol.MESSAGE_TOO_LARGE, f"a message may be at most "
                                    f"{settings.max_message_bytes} bytes, this one is {size}; send smaller frames"))
                continue
            try:
                if msg.type == WSMsgType.BINARY:
                    if session is None:
                        raise ProtocolError(protocol.NOT_STARTED, "send a \"start\" message before audio")
                    await session.feed(msg.data)
                    continue
                parsed = protocol.parse_text(msg.data)
                if isinstance(parsed, protocol.StartRequest):
                    if session is not None:
                        raise ProtocolError(protocol.ALREADY_STARTED, "this stream has already started")
                    session = _start_session(request, parsed, emit)
                elif session is None:
                    raise ProtocolError(protocol.NOT_STARTED, "nothing to stop: the stream has not started")
                else:
                    await session.finish()
                    break
            except ProtocolError as exc:
                emit(protocol.error(exc.code, str(exc)))
    finally:
        if session is not None and not session.closed:
            session.abandon()
        if outbox.full():  # make room for the end marker: nothing more will be sent anyway
            outbox.get_nowait()
        outbox.put_nowait(None)
        try:
            await asyncio.wait_for(sender, timeout=5.0)
        except Exception:  # a timeout or a dead socket must not block the handler's exit
            sender.cancel()
        await ws.close()


def _start_session(request: web.Request, start: protocol.StartRequest, emit) -> StreamSession:
    app = request.app
    settings = app[SETTINGS]
    recognizer = app[RECOGNIZER].current
    audio = recognizer.audio
    session = StreamSession(session_id=uuid.uuid4().hex[:12], start=start, audio=audio, batcher=app[BATCHER],
                            decision=new_decision(recognizer, start.source), emit=emit, record_play=app[PLAYS].record)
    emit(protocol.ready(session=session.id, start=start, internal_rate=audio.sample_rate,
                        window_s=audio.window_seconds, hop_s=audio.hop_seconds, tracks=len(recognizer.track_ids),
                        engine=recognizer.engine.name, max_message_bytes=settings.max_message_bytes))
    log.info("stream %s started: %s, %d Hz %s x%d", session.id, start.source, start.sample_rate, start.fmt,
             start.channels)
    return session


async def _send_loop(ws: web.WebSocketResponse, outbox: asyncio.Queue) -> None:
    while (msg := await outbox.get()) is not None:
        if ws.closed:
            continue
        try:
            await ws.send_json(msg)
        except (ConnectionResetError, RuntimeError) as exc:  # the client went away mid-send
            log.debug("stopped sending to a closed stream: %s", exc)
