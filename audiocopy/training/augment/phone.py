"""A phone in a noisy room: band-pass, resonance, treble tilt and pink noise.

Place in the pipeline: training distortions drawn by
``recipe.random_distortion``. A voice channel passes roughly 300-3400 Hz; a
phone's small speaker and microphone add a resonance and tilt the treble,
and the room adds noise. Band edges are drawn from ranges so the model sees
the *kind* of damage, not one device. ``devices`` models loudspeakers,
microphones and AGC separately for the acoustic chains.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps

from .checks import AugmentValueError, as_signal, finite, positive_int, require_generator
from .mixing import add_noise

#: Phone simulation: ranges of the band edges (Hz) and of the room noise SNR (dB).
PHONE_LOW_HZ = (200.0, 450.0)


PHONE_HIGH_HZ = (2800.0, 3800.0)


PHONE_SNR_DB = (5.0, 20.0)


def _check_band(low_hz: float, high_hz: float, sample_rate: int) -> tuple[float, float]:
    low_hz, high_hz = finite(low_hz, "low_hz"), finite(high_hz, "high_hz")
    if not 0.0 < low_hz < high_hz < sample_rate / 2.0:
        raise AugmentValueError(f"need 0 < low_hz < high_hz < Nyquist ({sample_rate / 2.0:g} Hz), "
                                f"got {low_hz:g} and {high_hz:g}")
    return low_hz, high_hz


def bandpass(x, low_hz: float, high_hz: float, *, sample_rate: int, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass.

    x: (n,) float32 at ``sample_rate`` Hz. low_hz, high_hz: -3 dB edges of
    one pass, 0 < low < high < sample_rate / 2. order: Butterworth order of
    the low-pass prototype (the filter is applied forward and backward, so
    the stop-band slope is 2 * order * 6 dB per octave and there is no
    phase shift: the output stays time-aligned with the input).
    Returns (n,) float32.
    """
    x = as_signal(x)
    sample_rate = positive_int(sample_rate, "sample_rate")
    order = positive_int(order, "order")
    low_hz, high_hz = _check_band(low_hz, high_hz, sample_rate)
    if x.size == 0:
        return x.copy()
    sos = sps.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    # sosfiltfilt pads with reflected signal; shorter inputs must skip the padding.
    padlen = min(3 * (2 * len(sos) + 1), x.size - 1)
    return sps.sosfiltfilt(sos, x, padlen=padlen).astype(np.float32)


def _peaking_sos(f0: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook peaking EQ biquad as one (1, 6) SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = (2.0 * np.pi) * f0 / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    c = math.cos(w0)
    b = [1 + alpha * a, -2 * c, 1 - alpha * a]
    den = [1 + alpha / a, -2 * c, 1 - alpha / a]
    return np.array([b + den]) / den[0]


def _high_shelf_sos(f0: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook high shelf (slope 1) biquad: a spectral tilt around f0."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = (2.0 * np.pi) * f0 / sample_rate
    c = math.cos(w0)
    beta = 2.0 * math.sqrt(a) * math.sin(w0) / 2.0 * math.sqrt(2.0)
    b = [a * ((a + 1) + (a - 1) * c + beta), -2 * a * ((a - 1) + (a + 1) * c),
         a * ((a + 1) + (a - 1) * c - beta)]
    den = [(a + 1) - (a - 1) * c + beta, 2 * ((a - 1) - (a + 1) * c), (a + 1) - (a - 1) * c - beta]
    return np.array([b + den]) / den[0]


def phone(x, rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Simulate music captured by a phone microphone in a noisy room.

    x: (n,) float32 at ``sample_rate`` Hz (at least 8 kHz).
    Returns (n,) float32 with the input's peak level.

    Chain, in physical order:
    1. pink room noise at 5-20 dB SNR (it reaches the microphone through the
       same air as the music, so it is filtered with it below);
    2. the voice band of a phone: a 4th-order Butterworth band-pass with
       random edges (low 200-450 Hz, high 2.8-3.8 kHz), a random treble
       tilt (high shelf at 1-2 kHz, ±6 dB) and one or two random resonances
       (peaking EQ, 400-3000 Hz, -6 to +8 dB), the uneven response of small
       capsules and cases; filtered causally, as a real microphone is;
    3. soft clipping (tanh, 0-12 dB drive): the automatic gain control and
       a cheap preamp overdriven by loud music.
    """
    x = as_signal(x)
    rng = require_generator(rng)
    sample_rate = positive_int(sample_rate, "sample_rate")
    if sample_rate < 8000:
        raise AugmentValueError(f"phone needs sample_rate >= 8000 Hz, got {sample_rate}")
    if x.size == 0:
        return x.copy()
    nyquist = sample_rate / 2.0
    low = rng.uniform(*PHONE_LOW_HZ)
    high = min(rng.uniform(*PHONE_HIGH_HZ), 0.9 * nyquist)
    sections = [sps.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos"),
                _high_shelf_sos(rng.uniform(1000.0, 2000.0), rng.uniform(-6.0, 6.0), sample_rate)]
    for _ in range(int(rng.integers(1, 3))):
        f0 = math.exp(rng.uniform(math.log(400.0), math.log(3000.0)))
        sections.append(_peaking_sos(f0, rng.uniform(-6.0, 8.0), rng.uniform(0.7, 3.0), sample_rate))
    snr_db = rng.uniform(*PHONE_SNR_DB)
    drive = 10.0 ** (rng.uniform(0.0, 12.0) / 20.0)

    y = add_noise(x, snr_db, rng, color="pink")
    y = sps.sosfilt(np.concatenate(sections), y).astype(np.float32)
    peak_in, peak = float(np.max(np.abs(x))), float(np.max(np.abs(y)))
    if peak == 0.0 or peak_in == 0.0:
        return np.zeros_like(x)
    y = np.tanh(np.float32(drive / peak) * y) * np.float32(peak_in / math.tanh(drive))
    return y.astype(np.float32, copy=False)
