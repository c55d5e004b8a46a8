"""A play's evidence of alteration: how much its pitch was shifted, and what kind of edit that was.

Place in the pipeline: used by the stream decision when it reports a play
(``decision.stream``). The *time scale* of a play is the slope of its offset
line (track seconds per stream second). The *pitch shift* is measured here,
by comparing the long-term spectrum of the play (the mean band level of its
supporting windows) with the long-term spectrum of the part of the track it
matched (``Engine.track_profile``).

Why that works. On a log-frequency axis (12 bands per octave) a transposition
of n semitones moves every harmonic by n bands, so the two spectra are the
same curve shifted along the bands, give or take the room, the loudspeaker
and the microphone. Those colour the spectrum smoothly (a tilt, a bass
cut), so both curves are first reduced to their *contrast*: the level minus
its average over the surrounding octave, which keeps the harmonic peaks and
drops the colouring. The shift is the lag of the best correlation of the two
contrast curves, refined between bands by fitting a parabola through the
correlation at the best lag and its two neighbours.

The kind of alteration follows from the two numbers: a speed change moves
tempo and pitch together (pitch = 12 log2(time scale)), a tempo change moves
only the time scale, a pitch shift only the pitch, and neither is "none".
"""
from __future__ import annotations

import math

import numpy as np

#: Kinds of alteration a play can report.
ALTERATIONS = ("none", "speed", "tempo", "pitch", "speed+pitch", "unknown")
#: A correlation peak below this is noise, not a match of two spectra.
MIN_CORRELATION = 0.3


def _contrast(profile: np.ndarray, width: int) -> np.ndarray:
    """``profile`` minus its moving average over ``width`` bands (edges use what exists)."""
    kernel = np.ones(width)
    total = np.convolve(profile, kernel, mode="same")
    count = np.convolve(np.ones_like(profile), kernel, mode="same")
    return profile - total / count


def pitch_shift_semitones(query: np.ndarray, track: np.ndarray, *, bins_per_octave: int,
                          max_semitones: float = 4.0) -> float | None:
    """How many semitones the query sounds above the track (negative: below).

    query, track: (bands,) mean band levels in dB on the same log-frequency
    axis (``bins_per_octave`` bands per octave). max_semitones: the largest
    shift looked for. Returns None when either is unusable (not finite, flat)
    or no shift makes the two correlate (``MIN_CORRELATION``).
    """
    q, t = np.asarray(query, dtype=np.float64), np.asarray(track, dtype=np.float64)
    if q.shape != t.shape or q.ndim != 1 or not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        return None
    q, t = _contrast(q, bins_per_octave + 1), _contrast(t, bins_per_octave + 1)
    max_lag = int(round(max_semitones * bins_per_octave / 12))
    n = len(q)
    lags = np.arange(-max_lag - 1, max_lag + 2)
    corr = np.array([_correlation(q[max(lag, 0):n + min(lag, 0)], t[max(-lag, 0):n - max(lag, 0)])
                     for lag in lags])
    inner = slice(1, len(lags) - 1)  # the outermost lags only serve the parabola
    best = int(np.argmax(corr[inner])) + 1
    if not corr[best] >= MIN_CORRELATION:
        return None
    left, mid, right = corr[best - 1], corr[best], corr[best + 1]
    curvature = left - 2 * mid + right
    delta = 0.0 if curvature >= 0 else float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    return float((lags[best] + delta) * 12.0 / bins_per_octave)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length curves (-1 when either is flat)."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 1e-9 else -1.0


def alteration(time_scale: float | None, pitch_semitones: float | None, *, scale_tolerance: float = 0.01,
               pitch_tolerance: float = 0.3) -> str:
    """The kind of edit a play's time scale and pitch shift point to (one of ``ALTERATIONS``).

    time_scale: track seconds per stream second (1.07 = 7 % fast), None if
    unknown; pitch_semitones: measured shift, None if unknown. A change
    within the tolerances counts as none. "speed" when the pitch follows
    the time scale (12 log2 of it, within ``pitch_tolerance``), "speed+pitch"
    when both changed but not together.
    """
    if time_scale is None or pitch_semitones is None:
        return "unknown"
    scaled = abs(time_scale - 1.0) > scale_tolerance
    pitched = abs(pitch_semitones) > pitch_tolerance
    if not scaled and not pitched:
        return "none"
    if scaled and not pitched:
        return "tempo"
    if pitched and not scaled:
        return "pitch"
    speed_pitch = 12.0 * math.log2(time_scale)
    return "speed" if abs(pitch_semitones - speed_pitch) <= pitch_tolerance else "speed+pitch"
