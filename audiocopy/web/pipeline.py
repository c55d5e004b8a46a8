"""One stream's compute-side state: its PCM in, its windows and answers out as ready messages.

Place in the pipeline: the half of a stream that lives in the compute
worker. ``web.session`` (on the event loop) only collects a client's bytes;
``web.cycle`` (in the compute thread) hands them to this stream's
``StreamPipeline``, which owns everything per-stream that costs CPU:

* decoding PCM (``decode_inputs`` converts the bytes of every stream of a
  cycle that share a format in one call) and resampling with the stream's
  own ``signal.stream_resampler.StreamResampler`` (soxr's stream
  resampler). Resampling each network frame on its own would restart the
  filter at every frame edge (a click every 100 ms, and lost or duplicated
  samples from rounding); one stateful resampler per stream gives sample
  for sample what resampling the whole stream at once would, however the
  bytes were split into frames and cycles. soxr holds its last ~90 ms
  back, so the end of the window that a client's frame completes is
  computed ahead of it (``preview``, ``SlidingWindow.cut_with``): a 48 kHz
  browser's answer no longer waits for its next 100 ms frame;
* cutting windows (``SlidingWindow``) and queueing them for scoring, each
  with the moment its last sample reached the server (the latency origin);
* the stream's ``StreamState`` (the engine's cache of work on the overlap
  of consecutive windows) and its ``StreamDecision`` (windows -> plays);
* building the ``window``, ``play`` and ``dropped`` messages as JSON text;
* checkpoints of the plays in progress (``checkpoint``): a play is handed
  out for the store when it opens and then every ``CHECKPOINT_S`` seconds
  of stream time while it stays open, so a crash loses at most that much of
  its end (``plays.store`` recovers it at the next start). Checkpointing
  per stream rather than per window keeps the store's writes (and the
  decision's pitch measurement, which every snapshot of a play repeats) to
  a few per play and minute, however many windows a cycle answers.

Only the compute thread touches a pipeline, one cycle at a time, so none of
this needs a lock; the event loop reads its counters only after a cycle
has returned. The shared recognizer is never touched here.
"""
from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import AudioParams
from ..decision.play import Play
from ..decision.stream import StreamDecision
from ..engines import StreamState
from ..signal.audio import pcm_to_float
from ..signal.stream_resampler import StreamResampler
from ..signal.windows import SlidingWindow
from . import protocol

log = logging.getLogger(__name__)

#: Seconds of stream time between two checkpoints of a stream's open plays
#: (besides the one when a play opens): what a crash can cost of a play's end.
CHECKPOINT_S = 5.0


@dataclass(eq=False)
class CutWindow:
    """One window waiting for compute.

    samples: (window_samples,) float32 at the recognizer's rate.
    start_s: stream time of its first sample (s).
    ready_at: ``time.monotonic()`` when its last sample reached the server.
    """

    start_s: float
    samples: np.ndarray
    ready_at: float


@dataclass
class Input:
    """What the event loop collected for one stream since its last cycle.

    chunks: the binary messages (whole PCM frames), in order.
    arrivals: (client samples received up to and including a message, its
        ``time.monotonic()`` arrival), one per message.
    final: the client sent ``stop``: flush the resampler, answer every
        window, close the plays. abandon: the transport went away: forget
        waiting windows, close the plays without messages.
    """

    chunks: list[bytes] = field(default_factory=list)
    arrivals: list[tuple[int, float]] = field(default_factory=list)
    final: bool = False
    abandon: bool = False


def decode_inputs(items: list[tuple[protocol.StartRequest, Input]]) -> list[np.ndarray]:
    """Mono float32 samples of each input's chunks, converted per format in one call.

    items: (the stream's start request, its input). Inputs of one format and
    channel count are joined and converted together, then split again: one
    NumPy pass instead of one per stream. Returns one (n,) array per item.
    """
    out: list[np.ndarray | None] = [None] * len(items)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (start, inp) in enumerate(items):
        groups.setdefault((start.fmt, start.channels), []).append(i)
    for (fmt, channels), members in groups.items():
        parts = [b"".join(items[i][1].chunks) for i in members]
        samples = pcm_to_float(b"".join(parts), fmt, channels)
        frame_bytes = items[members[0]][0].frame_bytes
        bounds = np.cumsum([len(p) // frame_bytes for p in parts])[:-1]
        for i, piece in zip(members, np.split(samples, bounds)):
            out[i] = piece
    return out  # type: ignore[return-value]


class StreamPipeline:
    """Per-stream compute state (see the module docstring).

    start: the stream's validated ``start`` (client rate, format, realtime).
    audio: the recognizer's audio parameters (internal rate, window, hop).
    decision: the stream's own ``StreamDecision``.
    """

    def __init__(self, *, start: protocol.StartRequest, audio: AudioParams, decision: StreamDecision):
        self.start = start
        self.audio = audio
        self.decision = decision
        self.state = StreamState()
        self.queue: collections.deque[CutWindow] = collections.deque()
        self._window = SlidingWindow(audio)
        self._resampler = None
        if start.sample_rate != audio.sample_rate:
            self._resampler = StreamResampler(start.sample_rate, audio.sample_rate)
        self._arrivals: collections.deque[tuple[int, float]] = collections.deque()
        self.samples_in = 0  # client-rate sample frames ingested
        self.windows_cut = 0
        self.windows_answered = 0
        self.windows_lost = 0
        self.plays_closed = 0
        self.finishing = False
        self.ended = False
        self._decided_s: float | None = None  # stream time of the latest window decided
        self._checkpoint_s: float | None = None  # ... when open plays were last handed out
        self._opened = False  # a play opened since then

    # --- audio in --------------------------------------------------------------

    def ingest(self, samples: np.ndarray, arrivals: list[tuple[int, float]], *, last: bool = False) -> None:
        """Take decoded client samples (n,) float32; queue every window now complete.

        arrivals: as in ``Input``. last: end of stream (flush the resampler).
        """
        self.samples_in += samples.size
        self._arrivals.extend(arrivals)
        resampler = self._resampler
        if resampler is not None:
            samples = resampler.push(samples, last=last)
            if last:
                self._resampler = None
        windows = self._window.push(samples) if samples.size else []
        if resampler is not None and not last:
            # The window the client's samples complete, with what the resampler still holds back computed now.
            tail = resampler.preview(self._window.missing())
            if tail is not None:
                windows += self._window.cut_with(tail)
        for start_s, window in windows:
            self.windows_cut += 1
            self.queue.append(CutWindow(start_s, window, self._arrival_of_end(start_s)))

    def _arrival_of_end(self, start_s: float) -> float:
        """When the client sample holding this window's end reached the server."""
        end_s = start_s + self.audio.window_seconds
        needed = math.ceil(end_s * self.start.sample_rate - 1e-6)
        # Later windows end later: messages before this one are never needed again.
        while len(self._arrivals) > 1 and self._arrivals[0][0] < needed:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else time.monotonic()

    def next_due(self) -> int:
        """Client samples after which the next window is complete (the event loop's wake-up mark).

        Computed for an ideal resampler, which ``StreamResampler.preview``
        makes of soxr: a window is cut once the client sample at its end is
        in. Should the preview still lack one, any further message is due.
        """
        end_internal = self.windows_cut * self.audio.hop_samples + self.audio.window_samples
        due = math.ceil(end_internal * self.start.sample_rate / self.audio.sample_rate)
        return due if due > self.samples_in else self.samples_in + 1

    # --- answers out ---------------------------------------------------------------

    def drop_oldest(self, n: int) -> protocol.Outgoing | None:
        """Forget the ``n`` oldest waiting windows (compute is behind); the ``dropped`` message."""
        starts = [self.queue.popleft().start_s for _ in range(min(n, len(self.queue)))]
        if not starts:
            return None
        self.windows_lost += len(starts)
        return protocol.outgoing(protocol.dropped(starts_s=starts, total=self.windows_lost))

    def failed(self, n: int) -> protocol.Outgoing:
        """``n`` windows the recognizer failed on; the error message."""
        self.windows_lost += n
        return protocol.outgoing(protocol.error(protocol.RECOGNIZER_FAILED,
                                                f"the recognizer failed on {n} window(s); see the server log"))

    def answer(self, item: CutWindow, detection, out: list[protocol.Outgoing], plays: list[Play]) -> None:
        """The stream decision for one scored window, in stream order; appends messages and closed plays."""
        self.windows_answered += 1
        update = self.decision.update(detection)
        self._decided_s = item.start_s
        self._opened = self._opened or bool(update.opened)
        latency_ms = 1000 * (time.monotonic() - item.ready_at)
        out.append(protocol.outgoing(protocol.window(
            seq=int(round(item.start_s / self.audio.hop_seconds)), start_s=item.start_s,
            window_s=self.audio.window_seconds, detection=detection, now=update.now, latency_ms=latency_ms)))
        self._closed(list(update.closed), out, plays, emit=True)

    def checkpoint(self) -> list[Play]:
        """The plays in progress, when due for the store (see the module docstring); else [].

        Called once per cycle, after the windows of the cycle were decided.
        Due when a play opened since the last checkpoint or ``CHECKPOINT_S``
        of stream time passed. A failure is logged and skipped: the play is
        still written when it closes.
        """
        t = self._decided_s
        if self.ended or t is None:
            return []
        if not self._opened and self._checkpoint_s is not None and t - self._checkpoint_s < CHECKPOINT_S:
            return []
        try:
            plays = self.decision.open_plays()
        except Exception:
            log.exception("could not take a checkpoint of a stream's open plays")
            return []
        self._opened = False
        if plays:
            self._checkpoint_s = t
        return plays

    def close(self, out: list[protocol.Outgoing], plays: list[Play], *, emit: bool) -> None:
        """End of the stream: close every play in progress (messages only when ``emit``)."""
        self.queue.clear()
        self._resampler = None
        self._closed(self.decision.finish(), out, plays, emit=emit)
        self.ended = True

    def _closed(self, closed: list[Play], out: list[protocol.Outgoing], plays: list[Play], *, emit: bool) -> None:
        for p in closed:
            self.plays_closed += 1
            plays.append(p)
            if emit:
                out.append(protocol.outgoing(protocol.play(p)))
