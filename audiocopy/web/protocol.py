"""The streaming protocol's message shapes: parse what clients send, build what we answer.

Place in the pipeline: between the socket (``web.ws``) and a stream's state
(``web.session``). Everything about the wire format lives here, so that the
handler stays a small loop and ``docs/protocol.md`` has one module to match.
Nothing here touches sockets or the model, which makes every rule testable
with plain strings.

Client -> server: a ``start`` JSON text frame, binary PCM frames, ``stop``.
Server -> client: ``ready``, one ``window`` per analysed window, ``play``,
``dropped``, ``stopped`` and ``error``. Every message is a JSON object with a
``type``. Bad input raises ``ProtocolError(code, message)``; the handler
answers it with an ``error`` message and keeps the connection open unless
the error is fatal (``FATAL_CODES``).

Messages leave as ``Outgoing``: the fields and their JSON text together.
The text of the frequent ones (``window``, ``play``, ``dropped``) is made by
the compute worker (``web.cycle``), so the event loop only writes ready
text to sockets; in-process readers (URL monitors) read the fields.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import NamedTuple

from ..decision.detection import Detection
from ..decision.play import Play
from ..decision.stream import NowPlaying
from ..errors import ProtocolError
from ..signal.audio import PCM_FORMATS

#: Client sample rates accepted in ``start`` (Hz). Telephone audio up to
#: studio rates; soxr resamples any ratio, the bounds only reject nonsense.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 2
MAX_SOURCE_CHARS = 100
#: Longest ``source_token`` accepted (a real one, ``web.source_tokens``, has 43 characters).
MAX_SOURCE_TOKEN_CHARS = 200

# Error codes (the "code" field of an error message).
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
NOT_STARTED = "not_started"
ALREADY_STARTED = "already_started"
BAD_START = "bad_start"
UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
UNSUPPORTED_FORMAT = "unsupported_format"
UNSUPPORTED_CHANNELS = "unsupported_channels"
BAD_FRAME = "bad_frame"
MESSAGE_TOO_LARGE = "message_too_large"
FORBIDDEN_ORIGIN = "forbidden_origin"
TOO_MANY_STREAMS = "too_many_streams"
TOO_MANY_CONNECTIONS = "too_many_connections"
START_TIMEOUT = "start_timeout"
IDLE_TIMEOUT = "idle_timeout"
FORBIDDEN_SOURCE_TOKEN = "forbidden_source_token"
SOURCE_TOKEN_REQUIRED = "source_token_required"
SOURCE_RESERVED = "source_reserved"
INTERNAL_ERROR = "internal_error"
RECOGNIZER_FAILED = "recognizer_failed"

#: Codes after which the server closes the connection: the client may not
#: stream here at all (origin, capacity), not under the source it named
#: (stream tokens, ``web.source_tokens``), kept the connection without
#: streaming (timeouts) or the server itself failed.
FATAL_CODES = frozenset({FORBIDDEN_ORIGIN, TOO_MANY_STREAMS, TOO_MANY_CONNECTIONS, START_TIMEOUT, IDLE_TIMEOUT,
                         FORBIDDEN_SOURCE_TOKEN, SOURCE_TOKEN_REQUIRED, SOURCE_RESERVED, INTERNAL_ERROR})


@dataclass(frozen=True)
class StartRequest:
    """A validated ``start`` message.

    sample_rate: client rate in Hz; fmt: "s16le" or "f32le"; channels: 1 or 2
    (interleaved, averaged to mono). source: label stored with plays.
    source_token: the stream token the client sent (``web.source_tokens``),
    None without one; never shown in the request's repr, and dropped once
    checked. source_verified: set by the server, never by the client: the
    token proved ``source`` (the token's own name replaces the claimed one).
    realtime: True (default) for live audio, where the server drops the
    oldest windows when it falls behind; False for a client sending faster
    than real time (a file), which is slowed down instead (back-pressure)
    so that no window is lost.
    """

    sample_rate: int
    fmt: str
    channels: int = 1
    source: str = "live"
    realtime: bool = True
    source_token: str | None = field(default=None, repr=False)
    source_verified: bool = False

    @property
    def frame_bytes(self) -> int:
        """Bytes of one interleaved sample frame; binary messages are multiples of it."""
        return PCM_FORMATS[self.fmt].itemsize * self.channels


@dataclass(frozen=True)
class StopRequest:
    """A ``stop`` message: flush, report the last windows and plays, close."""


def parse_text(text: str) -> StartRequest | StopRequest:
    """Parse one client text frame; ``ProtocolError`` for anything malformed."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError(BAD_JSON, "text frames must be JSON objects") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_MESSAGE, "a message must be a JSON object with a \"type\"")
    kind = msg.get("type")
    if kind == "start":
        return parse_start(msg)
    if kind == "stop":
        return StopRequest()
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, "a message must be a JSON object with a string \"type\"")
    raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}; expected \"start\" or \"stop\"")


def parse_start(msg: dict) -> StartRequest:
    """Validate the fields of a ``start`` message (see ``StartRequest``)."""
    rate = msg.get("sample_rate")
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(UNSUPPORTED_SAMPLE_RATE, f"sample_rate must be an integer between {MIN_SAMPLE_RATE} "
                                                     f"and {MAX_SAMPLE_RATE} Hz, got {_short(rate)}")
    fmt = msg.get("format", "s16le")
    if fmt not in PCM_FORMATS:
        raise ProtocolError(UNSUPPORTED_FORMAT, f"format must be one of {sorted(PCM_FORMATS)}, got {_short(fmt)}")
    channels = msg.get("channels", 1)
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= MAX_CHANNELS:
        raise ProtocolError(UNSUPPORTED_CHANNELS, f"channels must be 1 or {MAX_CHANNELS}, got {_short(channels)}")
    source = msg.get("source", "live")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS \
            or not source.isprintable():
        raise ProtocolError(BAD_START, f"source must be a printable label of 1-{MAX_SOURCE_CHARS} characters")
    realtime = msg.get("realtime", True)
    if not isinstance(realtime, bool):
        raise ProtocolError(BAD_START, "realtime must be true or false")
    token = msg.get("source_token")
    # Never echo a token in an error: only its shape is described.
    if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= MAX_SOURCE_TOKEN_CHARS
                              or not token.isprintable()):
        raise ProtocolError(BAD_START, f"source_token must be a printable string of 1-{MAX_SOURCE_TOKEN_CHARS} "
                                       "characters (or left out)")
    return StartRequest(rate, fmt, channels, source.strip(), realtime, source_token=token)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(x: float, digits: int) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


# --- server -> client -------------------------------------------------------

class Outgoing(NamedTuple):
    """A server message ready to send: ``body`` (its fields) and ``text`` (its JSON)."""

    body: dict
    text: str


def outgoing(body: dict) -> Outgoing:
    """Serialise one message (compact JSON: hundreds of streams send two a second each)."""
    return Outgoing(body, json.dumps(body, separators=(",", ":")))


def ready(*, session: str, start: StartRequest, internal_rate: int, window_s: float, hop_s: float,
          tracks: int, engine: str, max_message_bytes: int) -> dict:
    """Sent once after a valid ``start``: the session id and what to expect.

    source is the name the stream's plays are logged under (a stream
    token's name when one was sent); source_verified says whether a token
    proved it.
    """
    return {"type": "ready", "session": session, "sample_rate": start.sample_rate, "format": start.fmt,
            "channels": start.channels, "source": start.source, "source_verified": start.source_verified,
            "realtime": start.realtime,
            "internal_rate": internal_rate, "window_s": window_s, "hop_s": hop_s, "tracks": tracks,
            "engine": engine, "max_message_bytes": max_message_bytes}


def window(*, seq: int, start_s: float, window_s: float, detection: Detection, now: NowPlaying | None,
           latency_ms: float) -> dict:
    """One analysed window.

    start_s/end_s: stream time of the window in seconds (from the first
    sample the client sent). match: the window's own answer, a track id or
    null (an explicit, calibrated "no match"). score: best margin (> 0
    exactly when match is set). candidates: best tracks with their margins.
    stream: the stream's answer ("now playing": the open play with the most
    evidence, with its track offset and time scale), or null; this is what
    the Live page shows, because it holds through weak windows. latency_ms:
    from the arrival of the window's last sample to this message.
    """
    return {"type": "window", "seq": seq, "start_s": round(start_s, 3), "end_s": round(start_s + window_s, 3),
            "match": detection.track, "score": _num(detection.score, 4),
            "candidates": [{"track": c.track, "score": _num(c.score, 4)} for c in detection.candidates],
            "stream": None if now is None else now.to_json(), "latency_ms": round(latency_ms, 1)}


def play(p: Play) -> dict:
    """A play that just closed (see ``decision.play.Play``); its log row id is not known yet."""
    body = p.to_json()
    body.pop("id", None)
    body.pop("open", None)
    return {"type": "play", **body}


def dropped(*, starts_s: list[float], total: int) -> dict:
    """Windows skipped because compute fell behind (oldest first)."""
    return {"type": "dropped", "windows": len(starts_s), "start_s": [round(s, 3) for s in starts_s],
            "total_dropped": total,
            "message": f"server is behind: skipped {len(starts_s)} window(s); results continue with newer audio"}


def stopped(*, windows: int, dropped_windows: int, plays: int, seconds: float) -> dict:
    """Final message after ``stop``: totals for the stream."""
    return {"type": "stopped", "windows": windows, "dropped": dropped_windows, "plays": plays,
            "seconds": round(seconds, 3)}


def error(code: str, message: str) -> dict:
    """An error; ``fatal`` tells the client whether the server will close."""
    return {"type": "error", "code": code, "message": message, "fatal": code in FATAL_CODES}
