"""One stream's state: client PCM in, windows to the batcher, messages and plays out.

Place in the pipeline: the per-connection layer between a transport (a
WebSocket in ``web.ws``, an ffmpeg pipe in ``web.monitors``) and the shared
``Batcher``. It owns everything that belongs to one stream and nothing that
is shared: the streaming resampler, the ``SlidingWindow``, the engine's
``StreamState`` (its cache of work on overlapping windows), the
``StreamDecision`` that turns windows into plays, and the counters. The
model is never touched here.

Resampling. Browsers capture at 44.1 or 48 kHz; the recognizer works at
``AudioParams.sample_rate``. Resampling each network frame on its own would
restart the resampler's filter at every frame edge (a click every 100 ms,
and lost or duplicated samples from rounding), so each stream keeps one
``soxr.ResampleStream`` whose filter state runs across frames; its output is
sample-for-sample what resampling the whole stream at once would give.

A session reports through two callbacks given by its transport: ``emit``
(a protocol message for the client) and ``record_play`` (a closed play to
be logged). Both are plain functions called on the event loop.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..config import AudioParams
from ..decision.detection import Detection
from ..decision.play import Play
from ..decision.stream import StreamDecision
from ..engines import StreamState
from ..errors import BadAudio, ProtocolError
from ..signal.audio import pcm_to_float
from ..signal.windows import SlidingWindow
from . import protocol
from .batcher import Batcher, PendingWindow

log = logging.getLogger(__name__)


def new_decision(recognizer, source: str) -> StreamDecision:
    """A stream's ``StreamDecision`` with the recognizer's play threshold and parameters, starting now."""
    return StreamDecision(source, window_s=recognizer.audio.window_seconds, wall_start=time.time(),
                          threshold=recognizer.play_threshold, params=recognizer.params)


class StreamSession:
    """Per-stream state (see module docstring); implements ``batcher.WindowOwner``.

    session_id: opaque id shown to the client; start: its validated request.
    audio: the recognizer's audio parameters (internal rate, window, hop).
    decision: the stream's own ``StreamDecision`` (made with the
        recognizer's play threshold and decision parameters).
    emit: called with each message for the client (a dict).
    record_play: called with each closed play.
    """

    def __init__(self, *, session_id: str, start: protocol.StartRequest, audio: AudioParams, batcher: Batcher,
                 decision: StreamDecision, emit: Callable[[dict], None], record_play: Callable[[Play], None]):
        self.id = session_id
        self.start = start
        self.audio = audio
        self._batcher = batcher
        self._emit = emit
        self._record_play = record_play
        self._window = SlidingWindow(audio)
        # Lets the engine reuse its work on the 2 s that consecutive windows
        # share; it lives and dies with the stream.
        self._state = StreamState()
        self._resampler = None
        if start.sample_rate != audio.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(start.sample_rate, audio.sample_rate, 1, dtype="float32",
                                                  quality="HQ")
        self.plays = decision
        self.samples_in = 0  # client-rate sample frames received
        self.windows_cut = 0
        self.windows_answered = 0
        self.windows_lost = 0
        self.plays_closed = 0
        self.last_detection: Detection | None = None
        self.closed = False

    @property
    def seconds_in(self) -> float:
        """Seconds of audio received so far."""
        return self.samples_in / self.start.sample_rate

    async def feed(self, data: bytes) -> None:
        """Take one binary PCM message.

        data: interleaved frames in the format of ``start``; its length must
        be a whole number of frames. Raises ``ProtocolError`` (``bad_frame``)
        otherwise, having used none of it.
        """
        if not data:
            return
        if len(data) % self.start.frame_bytes:
            raise ProtocolError(protocol.BAD_FRAME,
                                f"binary message of {len(data)} bytes is not a whole number of "
                                f"{self.start.channels}-channel {self.start.fmt} frames "
                                f"({self.start.frame_bytes} bytes each); frames must not be split across messages")
        try:
            samples = pcm_to_float(data, self.start.fmt, self.start.channels)
        except BadAudio as exc:  # pragma: no cover - the length check above already rules this out
            raise ProtocolError(protocol.BAD_FRAME, exc.reason) from None
        self.samples_in += samples.size
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        await self._push(samples)

    async def finish(self) -> dict:
        """End of stream: analyse what is left, wait for every answer, close plays.

        Returns the ``stopped`` message (also emitted). A trailing part
        shorter than one hop is not analysed: no full window ends there.
        """
        if self._resampler is not None:
            await self._push(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self._resampler = None
        await self._batcher.drain(self)
        self._close_plays(self.plays.finish())
        self.closed = True
        msg = protocol.stopped(windows=self.windows_answered, dropped_windows=self.windows_lost,
                               plays=self.plays_closed, seconds=self.seconds_in)
        self._emit(msg)
        return msg

    def abandon(self) -> None:
        """The transport went away: forget waiting windows, log the plays in progress."""
        if self.closed:
            return
        self.closed = True
        self._batcher.cancel(self)
        self._close_plays(self.plays.finish(), emit=False)

    async def _push(self, samples: np.ndarray) -> None:
        for start_s, window in self._window.push(samples):
            if not self.start.realtime:
                await self._batcher.wait_capacity(self)
            if self.closed:
                return
            self.windows_cut += 1
            self._batcher.submit(PendingWindow(self, start_s, window, state=self._state))

    # --- batcher.WindowOwner --------------------------------------------------

    def window_done(self, item: PendingWindow, detection: Detection) -> None:
        if self.closed:
            return
        self.windows_answered += 1
        self.last_detection = detection
        latency_ms = 1000 * (time.monotonic() - item.ready_at)
        update = self.plays.update(detection)
        self._emit(protocol.window(seq=int(round(item.start_s / self.audio.hop_seconds)), start_s=item.start_s,
                                   window_s=self.audio.window_seconds, detection=detection, now=update.now,
                                   latency_ms=latency_ms))
        self._close_plays(list(update.closed))

    def windows_dropped(self, items: list[PendingWindow], reason: str) -> None:
        if self.closed:
            return
        self.windows_lost += len(items)
        if reason == "error":
            self._emit(protocol.error(protocol.RECOGNIZER_FAILED,
                                      f"the recognizer failed on {len(items)} window(s); see the server log"))
        else:
            self._emit(protocol.dropped(starts_s=[w.start_s for w in items], total=self.windows_lost))

    def _close_plays(self, plays: list[Play], *, emit: bool = True) -> None:
        for p in plays:
            self.plays_closed += 1
            self._record_play(p)
            if emit:
                self._emit(protocol.play(p))
