"""One stream on the event loop: collect the client's bytes, hand them to the batcher, pass results on.

Place in the pipeline: the per-connection layer between a transport (a
WebSocket in ``web.ws``, an ffmpeg pipe in ``web.monitors``) and the
``Batcher``. The event loop only moves bytes, so a session's loop side is
deliberately small: ``feed`` checks a binary message's length, appends it
with its arrival time and, when the message completes the next window,
marks the stream due. Everything that costs CPU (decoding, resampling,
windows, the engine's per-stream cache, the stream decision, message JSON)
is in the stream's ``StreamPipeline``, which only the compute worker
touches (``web.pipeline``, ``web.cycle``). The model is never touched here.

A session reports through two callbacks given by its transport: ``emit``
(a list of ready ``protocol.Outgoing`` messages for the client) and
``record_play`` (what the plays store keeps; the app's ``PlaySink.record``).
Both are plain functions called on the event loop. ``record_play`` gets:

* each play as a ``plays.record.PlayRecord``: when it opens, at every
  checkpoint while it is open (``web.pipeline``), and when it closes, all
  under the same key, so the store holds every play in progress and a
  crash loses at most the last few seconds of one;
* the stream's ``plays.record.SourceReport``: its first when the first
  cycle returns, then every ``SOURCE_REPORT_S`` seconds of audio and at the
  end, each with the windows answered and dropped since the previous one,
  so every dropped window is counted in the store's record of its source.

Every play and report carries the stream's ``PlayOrigin``: a monitor's
session (id ``MONITOR_SESSION_PREFIX`` + the monitor's id, given by
``web.monitors``) is a "monitor" source with that monitor's id, any other a
"ws" source. A stream's source name is proven only by a stream token, so a
"ws" origin is verified only when its start request says it was.

Write before telling. ``record_play`` returns the write's future (or None);
a cycle's messages reach the client only once that cycle's play writes
have committed, and always in cycle order. A client told that a play
opened or closed can then rely on the store having it, even if the server
is killed the next instant (``tools/fault_inject.py`` found exactly that
race when the messages went out first).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..config import AudioParams
from ..decision.stream import StreamDecision
from ..errors import ProtocolError
from ..plays.record import PlayOrigin, PlayRecord, SourceReport
from . import protocol
from .batcher import Batcher
from .cycle import Outcome
from .pipeline import Input, StreamPipeline

log = logging.getLogger(__name__)

#: Session ids of URL monitors start with this, followed by the monitor's id (``web.monitors``).
MONITOR_SESSION_PREFIX = "monitor-"
#: Seconds of audio between two reports of a stream's window counts to the store.
SOURCE_REPORT_S = 10.0


def origin_of(session_id: str, start: protocol.StartRequest) -> PlayOrigin:
    """Where a session's audio comes from (see the module docstring).

    A monitor's audio is read by the server itself from a URL the admin
    set, under the name the admin gave: its origin is verified. A client's
    is verified only when its ``start`` proved the source name with a
    stream token (``StartRequest.source_verified``, set only by
    ``web.source_tokens.authorise``).
    """
    if session_id.startswith(MONITOR_SESSION_PREFIX):
        return PlayOrigin("monitor", monitor_id=session_id[len(MONITOR_SESSION_PREFIX):], verified=True)
    return PlayOrigin("ws", verified=getattr(start, "source_verified", False) is True)


class StreamSession:
    """Per-stream state on the event loop (see module docstring); a ``batcher.Owner``.

    session_id: opaque id shown to the client; start: its validated request.
    audio: the recognizer's audio parameters (internal rate, window, hop).
    decision: the stream's own ``StreamDecision``
        (``Recognizer.stream_decision``: the database's play threshold,
        decision parameters and track spectra).
    emit: called with a list of ``protocol.Outgoing`` messages for the client.
    record_play: called with each ``PlayRecord`` (open, updated, closed) and
        each ``SourceReport`` of the stream (module docstring).
    origin: where the audio comes from (default: ``origin_of`` the session
        id and start request).
    """

    def __init__(self, *, session_id: str, start: protocol.StartRequest, audio: AudioParams, batcher: Batcher,
                 decision: StreamDecision, emit: Callable[[list[protocol.Outgoing]], None],
                 record_play: Callable[[PlayRecord | SourceReport], None], origin: PlayOrigin | None = None):
        self.id = session_id
        self.start = start
        self.origin = origin if origin is not None else origin_of(session_id, start)
        self.audio = audio
        self.pipeline = StreamPipeline(start=start, audio=audio, decision=decision)
        self._batcher = batcher
        self._emit = emit
        self._record_play = record_play
        self._frame_bytes = start.frame_bytes
        self._window_in = audio.hop_samples * start.sample_rate / audio.sample_rate  # client samples per hop
        self._chunks: list[bytes] = []
        self._arrivals: list[tuple[int, float]] = []
        self._taken = 0  # client samples handed to the worker so far
        self._due_at = self.pipeline.next_due()
        self._final = False
        self._abandon = False
        self._ended = asyncio.get_running_loop().create_future()
        self.samples_in = 0  # client-rate sample frames received
        self.closed = False
        self._reported: tuple[int, int] | None = None  # (answered, lost) windows in the last source report
        self._reported_s = 0.0  # seconds of audio received at that report
        self._gate: asyncio.Future | None = None  # messages waiting for their cycle's play writes

    @property
    def realtime(self) -> bool:
        return self.start.realtime

    @property
    def seconds_in(self) -> float:
        """Seconds of audio received so far."""
        return self.samples_in / self.start.sample_rate

    def feed(self, data: bytes) -> None:
        """Take one binary PCM message (on the event loop: bookkeeping only).

        data: interleaved frames in the format of ``start``; its length must
        be a whole number of frames. Raises ``ProtocolError`` (``bad_frame``)
        otherwise, having used none of it.
        """
        if not data or self.closed or self._final:
            return
        if len(data) % self._frame_bytes:
            raise ProtocolError(protocol.BAD_FRAME,
                                f"binary message of {len(data)} bytes is not a whole number of "
                                f"{self.start.channels}-channel {self.start.fmt} frames "
                                f"({self._frame_bytes} bytes each); frames must not be split across messages")
        self.samples_in += len(data) // self._frame_bytes
        self._chunks.append(data)
        self._arrivals.append((self.samples_in, time.monotonic()))
        if self.samples_in >= self._due_at:
            self._due_at = 1 << 62  # until the worker says when the next window is complete
            self._batcher.mark_due(self)

    def pending_windows(self) -> float:
        """Windows' worth of audio received but not yet handed to the worker."""
        return (self.samples_in - self._taken) / self._window_in

    async def wait_room(self) -> None:
        """Back-pressure for a stream that is not live: return once it may send more."""
        await self._batcher.wait_room(self)

    async def finish(self) -> dict:
        """End of stream: analyse what is left, wait for every answer, close plays.

        Returns the ``stopped`` message (also emitted). A trailing part
        shorter than one hop is not analysed: no full window ends there.
        """
        if not self.closed and not self._final:
            self._final = True
            self._batcher.mark_due(self)
        await asyncio.shield(self._ended)
        self.closed = True
        if self._gate is not None:  # the last plays' messages go before ``stopped``
            await asyncio.shield(self._gate)
        p = self.pipeline
        msg = protocol.stopped(windows=p.windows_answered, dropped_windows=p.windows_lost, plays=p.plays_closed,
                               seconds=self.seconds_in)
        self._emit([protocol.outgoing(msg)])
        return msg

    def abandon(self) -> None:
        """The transport went away: forget waiting audio and windows, log the plays in progress."""
        if self.closed:
            return
        self.closed = True
        self._abandon = True
        self._chunks, self._arrivals = [], []
        self._batcher.mark_due(self)

    # --- batcher.Owner ----------------------------------------------------------

    def take_input(self) -> Input:
        chunks, arrivals = self._chunks, self._arrivals
        self._chunks, self._arrivals = [], []
        self._taken = self.samples_in
        return Input(chunks, arrivals, final=self._final, abandon=self._abandon)

    def deliver(self, outcome: Outcome) -> None:
        # Open plays first: a play that closed in this cycle is in ``plays``
        # only. Real plays are logged even when the client has gone.
        writes = [self._record_play(PlayRecord.of(p, self.origin)) for p in [*outcome.open_plays, *outcome.plays]]
        writes = [w for w in writes if w is not None]
        self._report_source(final=outcome.ended)
        if outcome.ended:
            if not self._final:  # ended without "stop": the stream failed or went away
                if not self.closed and outcome.messages:
                    self._emit_after(writes, outcome.messages)
                self.closed = True
            elif outcome.messages and not self._abandon:
                self._emit_after(writes, outcome.messages)
            if not self._ended.done():
                self._ended.set_result(None)
            return
        if outcome.messages and not self.closed:
            self._emit_after(writes, outcome.messages)
        self._due_at = outcome.next_due
        if self.samples_in >= self._due_at:  # the window came in while the cycle ran
            self._due_at = 1 << 62
            self._batcher.mark_due(self)

    def _emit_after(self, writes: list, messages: list) -> None:
        """Emit ``messages`` once ``writes`` (this cycle's play writes) are done, after earlier messages."""
        if not writes and self._gate is None:
            self._emit(messages)
            return
        previous = self._gate

        async def emit_when_written() -> None:
            if previous is not None:
                await previous
            # A failed write is logged by the sink; the client still gets its answer.
            await asyncio.gather(*writes, return_exceptions=True)
            self._emit(messages)

        gate = self._gate = asyncio.ensure_future(emit_when_written())
        gate.add_done_callback(lambda done: self._gate_done(done))

    def _gate_done(self, done: asyncio.Future) -> None:
        if self._gate is done:
            self._gate = None
        if not done.cancelled() and done.exception() is not None:
            log.error("could not send a stream's messages: %s", done.exception())

    def _report_source(self, *, final: bool) -> None:
        """Hand the store this stream's window counts since the last report, when due (module docstring)."""
        first = self._reported is None
        if not (first or final or self.seconds_in - self._reported_s >= SOURCE_REPORT_S):
            return
        p = self.pipeline
        answered, lost = self._reported or (0, 0)
        self._reported, self._reported_s = (p.windows_answered, p.windows_lost), self.seconds_in
        if first or p.windows_answered > answered or p.windows_lost > lost:
            self._record_play(SourceReport(self.start.source, self.origin, answered=p.windows_answered - answered,
                                           dropped=p.windows_lost - lost, started=first))
