"""Windows out of audio: a sliding 2.5 s window for streams and files.

Place in the pipeline: between ``audio`` (a mono float32 signal) and
``features`` (a batch of windows). A file, a microphone over WebSocket and a
radio stream are all cut the same way: windows of ``window_samples`` every
``hop_samples``, each tagged with its start time in seconds from the start of
the stream. Overlapping windows (2.5 s every 0.5 s) mean a match is found
within half a second of the music reaching the window, and a fragment that
straddles a window boundary is still seen whole by a neighbour.
"""
from __future__ import annotations

import numpy as np

from ..config import AudioParams


def window_starts(n_samples: int, *, audio: AudioParams) -> np.ndarray:
    """Start sample of every full window in a signal of ``n_samples``.

    Windows step by ``audio.hop_samples``; the last window is aligned to the
    end of the signal when the hops do not land there exactly, so the tail is
    never ignored. Returns (n_windows,) int64; empty when the signal is
    shorter than one window.
    """
    w, h = audio.window_samples, audio.hop_samples
    if n_samples < w:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n_samples - w + 1, h, dtype=np.int64)
    if starts[-1] != n_samples - w:
        starts = np.append(starts, n_samples - w)
    return starts


def cut_windows(signal: np.ndarray, *, audio: AudioParams) -> tuple[np.ndarray, np.ndarray]:
    """All sliding windows of a whole signal.

    signal: (n,) float32 at ``audio.sample_rate``.
    Returns (windows, offsets_s): (n_windows, window_samples) float32 and
    (n_windows,) float64 start times in seconds.
    """
    starts = window_starts(signal.size, audio=audio)
    index = starts[:, None] + np.arange(audio.window_samples)[None, :]
    return signal[index].astype(np.float32, copy=False), starts / audio.sample_rate


class SlidingWindow:
    """Incremental windowing of a live stream.

    Push chunks of any size with ``push``; it returns every window that became
    complete, each with its start time. Memory is bounded: only the last
    ``window_samples`` (plus the chunk being pushed) are kept.
    """

    def __init__(self, audio: AudioParams):
        self.audio = audio
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._next_start = 0  # absolute sample index of the next window

    @property
    def samples_seen(self) -> int:
        """Total samples pushed so far."""
        return self._buffer_start + self._buffer.size

    def push(self, chunk: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Append (n,) float32 samples; return [(start_s, window), ...] now due."""
        self._buffer = np.concatenate([self._buffer, np.asarray(chunk, dtype=np.float32)])
        out = []
        w, h = self.audio.window_samples, self.audio.hop_samples
        while self._next_start + w <= self.samples_seen:
            lo = self._next_start - self._buffer_start
            out.append((self._next_start / self.audio.sample_rate, self._buffer[lo:lo + w].copy()))
            self._next_start += h
        self._drop_unneeded()
        return out

    def missing(self) -> int:
        """Samples still to push before the next window is complete (>= 1)."""
        return self._next_start + self.audio.window_samples - self.samples_seen

    def cut_with(self, tail: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """The windows that ``tail`` (provisional samples after the ones pushed) completes, as ``push``.

        The tail is not kept: later windows are cut from the real samples
        when they are pushed, and the windows returned here are not cut
        again. Used for a live stream's samples its resampler still holds
        back (``signal.stream_resampler``).
        """
        tail = np.asarray(tail, dtype=np.float32)
        w, h = self.audio.window_samples, self.audio.hop_samples
        out = []
        while 0 < self._next_start + w - self.samples_seen <= tail.size:
            lo = self._next_start - self._buffer_start
            need = self._next_start + w - self.samples_seen
            out.append((self._next_start / self.audio.sample_rate,
                        np.concatenate([self._buffer[lo:], tail[:need]])))
            self._next_start += h
        self._drop_unneeded()
        return out

    def _drop_unneeded(self) -> None:
        """Drop samples no future window can need."""
        drop = self._next_start - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
