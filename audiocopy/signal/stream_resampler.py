"""Resampling a live stream to the internal rate, with the samples soxr still holds back computed early.

Place in the pipeline: the first step of a live stream's compute side
(``web.pipeline``), between its decoded client PCM (a browser's 48 kHz, a
phone's 44.1 kHz) and the window cutter (``signal.windows``). Files go
through ``signal.audio.resample`` instead, which sees the whole signal.

The problem. soxr's stream resampler is exact and cheap (0.06 ms for 0.5 s
of 48 kHz audio), but it hands its output back in internal blocks (about
1,500 output samples at 48 -> 16 kHz, 92 ms) after its filter's delay. A
browser sends 100 ms frames and a window ends every 0.5 s on a frame's
edge, so the last samples of every window came out only with the next
frame: each answer waited 100 ms longer than its audio did.

The fix. ``StreamResampler.push`` returns soxr's exact output as before,
and ``preview`` computes the samples soxr still owes, directly from the
input received so far: a band-limited (windowed-sinc) polyphase FIR filter
evaluated at each output sample's own position on the input's time axis
(the ratio is exact, rates over their greatest common divisor: 48 -> 16 kHz
is 1/3, 44.1 -> 16 kHz is 160/441). The window cutter completes a window
with them (``SlidingWindow.cut_with``) and keeps waiting for soxr's real
samples, which every later window uses. A preview costs about 0.05 ms per
window; filtering the whole stream that way would cost 0.3-0.5 ms per
0.5 s, five to ten times soxr, which is why it only fills the gap.

Quality of a preview. The filter's -6 dB point is the lower Nyquist
frequency (8 kHz at 16 kHz out) and its transition band is 1.5 kHz wide
(7.25 to 8.75 kHz, from ``ZERO_CROSSINGS`` and ``KAISER_BETA``): flat to
0.003 dB up to 7.25 kHz, where the highest feature band ends
(``FeatureParams``: 72 semitone bands from 110 Hz), and at least 72 dB down
from 8.75 kHz, so nothing folds into a band. Every polyphase branch has
unit gain at 0 Hz. The last ``half`` input samples' worth of a preview
(1.5 ms) would need input that has not arrived: it is taken as silence,
where the STFT's Hann window gives a window's edge almost no weight. A
window completed by a preview gives the same band levels as the exact one
to within 1e-3 (``tests/test_stream_resampler.py``).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: The preview filter's -6 dB point as a fraction of the output's Nyquist frequency when
#: downsampling (the transition band straddles it: see the module docstring) ...
PASSBAND = 1.0
#: ... and of the input's when upsampling, where nothing may reach past it (images of the input).
UPSAMPLING_PASSBAND = 0.92
#: Zero crossings of the sinc kept on each side of the filter's centre (the
#: filter's length, hence its transition band's width: 1.5 kHz at 16 kHz out).
ZERO_CROSSINGS = 24
#: Kaiser window shape: 7.0 gives 72 dB of stop-band attenuation with this length.
KAISER_BETA = 7.0
#: Seconds of input kept for previews: more than soxr ever holds back (~0.1 s).
HISTORY_S = 0.25


def _branches(up: int, half: int, cutoff: float) -> np.ndarray:
    """The polyphase filter: (up, 2 * half) float32 taps, one row per output phase.

    Row ``p``, tap ``j`` weighs the input sample ``j`` places after the
    first one an output of phase ``p`` reads; the filter's argument there is
    ``p / up + half - 1 - j`` input samples (see ``StreamResampler.preview``).
    cutoff: in cycles per input sample.
    """
    t = np.arange(up)[:, None] / up + (half - 1 - np.arange(2 * half))[None, :]
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (t / half) ** 2, 0, 1))) * (np.abs(t) < half)
    taps = 2 * cutoff * np.sinc(2 * cutoff * t) * window
    # Unit DC gain per branch: otherwise the branches' small gain differences
    # would modulate a steady signal at the phase pattern's rate.
    return (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)


class StreamResampler:
    """One stream's resampler from ``rate_in`` to ``rate_out`` Hz (see the module docstring).

    rate_in, rate_out: positive integers (Hz). ``push`` takes (n,) float32
    mono samples and returns soxr's exact (k,) float32 output, the same
    sample for sample however the input is split; ``preview(count)`` gives
    the next ``count`` output samples ahead of soxr.
    """

    def __init__(self, rate_in: int, rate_out: int):
        if int(rate_in) <= 0 or int(rate_out) <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        import soxr  # a dependency of the package; only decoding paths need it

        self._soxr = soxr.ResampleStream(int(rate_in), int(rate_out), 1, dtype="float32", quality="HQ")
        g = math.gcd(int(rate_in), int(rate_out))
        self.up, self.down = int(rate_out) // g, int(rate_in) // g
        cutoff = 0.5 * (self.up / self.down * PASSBAND if self.up < self.down else UPSAMPLING_PASSBAND)
        self.half = math.ceil(ZERO_CROSSINGS / (2 * cutoff))
        self._taps = _branches(self.up, self.half, cutoff)
        self._keep = int(HISTORY_S * rate_in) + 4 * self.half
        self._history = np.zeros(0, np.float32)  # the last input samples, ending at input index n_in
        self.n_in = 0  # input samples pushed
        self.n_out = 0  # exact output samples returned
        self._done = False

    def push(self, samples: np.ndarray, *, last: bool = False) -> np.ndarray:
        """soxr's exact output for the next (n,) float32 input samples (float32).

        last: the stream ends here (soxr's remaining output is flushed).
        A push after the last raises ValueError.
        """
        if self._done:
            raise ValueError("the stream already ended")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._done = last
        self.n_in += x.size
        self._history = np.concatenate([self._history, x])[-self._keep:]
        y = self._soxr.resample_chunk(x, last=last)
        self.n_out += y.size
        return y

    def preview(self, count: int) -> np.ndarray | None:
        """Output samples ``n_out .. n_out + count - 1`` computed now (float32), or None.

        None when they lie beyond the input received (an output sample's
        centre must be a sample already in) or beyond the history kept.
        Filter taps past the newest input read silence (module docstring).
        """
        if count <= 0:
            return np.zeros(0, np.float32)
        if self.n_in == 0 or (self.n_out + count - 1) * self.down // self.up > self.n_in - 1:
            return None  # the last one's centre has not arrived (checked before any work: the common case)
        m = np.arange(self.n_out, self.n_out + count, dtype=np.int64)
        centre = m * self.down // self.up  # input index at or before each output's position
        first = centre - self.half + 1  # input index of each output's first tap
        start = self.n_in - self._history.size  # input index of _history[0]
        covered = start <= 0 or first[0] >= start  # before the stream's start is silence, not a gap
        if not covered:
            return None
        # The taps' span, with silence before the stream's start and after its newest sample.
        lo, hi = min(first[0], start), centre[-1] + self.half + 1
        padded = np.zeros(hi - lo, np.float32)
        n = min(self._history.size, hi - start)
        padded[start - lo: start - lo + n] = self._history[:n]
        rows = sliding_window_view(padded, 2 * self.half)
        if self.up == 1:
            # One branch, rows at a fixed stride: a strided view and one matrix-vector product.
            return np.ascontiguousarray(rows[first[0] - lo::self.down][:count] @ self._taps[0])
        phase = (m * self.down) % self.up
        return np.einsum("ij,ij->i", rows[first - lo], self._taps[phase]).astype(np.float32, copy=False)
