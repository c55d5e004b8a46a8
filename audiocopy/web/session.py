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
``record_play`` (a closed play to be logged). Both are plain functions
called on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from ..config import AudioParams
from ..decision.play import Play
from ..decision.stream import StreamDecision
from ..errors import ProtocolError
from . import protocol
from .batcher import Batcher
from .cycle import Outcome
from .pipeline import Input, StreamPipeline

log = logging.getLogger(__name__)


class StreamSession:
    """Per-stream state on the event loop (see module docstring); a ``batcher.Owner``.

    session_id: opaque id shown to the client; start: its validated request.
    audio: the recognizer's audio parameters (internal rate, window, hop).
    decision: the stream's own ``StreamDecision``
        (``Recognizer.stream_decision``: the database's play threshold,
        decision parameters and track spectra).
    emit: called with a list of ``protocol.Outgoing`` messages for the client.
    record_play: called with each closed play.
    """

    def __init__(self, *, session_id: str, start: protocol.StartRequest, audio: AudioParams, batcher: Batcher,
                 decision: StreamDecision, emit: Callable[[list[protocol.Outgoing]], None],
                 record_play: Callable[[Play], None]):
        self.id = session_id
        self.start = start
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
        for p in outcome.plays:  # real plays are logged even when the client has gone
            self._record_play(p)
        if outcome.ended:
            if not self._ended.done():
                self._ended.set_result(None)
            if not self._final:  # ended without "stop": the stream failed or went away
                if not self.closed and outcome.messages:
                    self._emit(outcome.messages)
                self.closed = True
            elif outcome.messages and not self._abandon:
                self._emit(outcome.messages)
            return
        if outcome.messages and not self.closed:
            self._emit(outcome.messages)
        self._due_at = outcome.next_due
        if self.samples_in >= self._due_at:  # the window came in while the cycle ran
            self._due_at = 1 << 62
            self._batcher.mark_due(self)
