"""Noise and other music mixed in at an exact signal-to-noise ratio.

Place in the pipeline: training distortions (see the package docstring). A
fragment recorded in a bar carries other people's music and hiss; the SNR
is the ratio of mean powers, so "5 dB" means the same thing for every
excerpt. Pink noise (equal power per octave) is how rooms and fans sound;
white noise is the harsher test.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import fft as spfft

from .checks import AugmentValueError, as_signal, finite, mean_power, positive_int, require_generator


def random_crop(x, length: int, rng: np.random.Generator) -> np.ndarray:
    """An excerpt of exactly ``length`` samples at a random offset.

    x: (n,) float32. length: output samples (> 0).
    Returns (length,) float32, a copy. When n < length the whole signal is
    placed at a random offset inside zeros, so short sources still teach the
    network about windows that start or end in silence.
    """
    x = as_signal(x)
    length = positive_int(length, "length")
    rng = require_generator(rng)
    if x.size >= length:
        start = int(rng.integers(0, x.size - length + 1))
        return x[start:start + length].copy()
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - x.size + 1))
    out[start:start + x.size] = x
    return out


def scaled_to_snr(x: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + g * other`` with g chosen so that power(x) / power(g * other) = snr_db."""
    px, po = mean_power(x), mean_power(other)
    if px == 0.0 or po == 0.0:
        return x.copy()  # nothing to be relative to, or nothing to add
    gain = math.sqrt(px / (po * 10.0 ** (snr_db / 10.0)))
    return (x + np.float32(gain) * other).astype(np.float32, copy=False)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float32 noise with power density ~ 1/f (-3 dB per octave), unit power.

    White Gaussian noise shaped in the frequency domain by 1/sqrt(f); the
    DC bin is zeroed. Room, traffic and crowd noise are much closer to this
    than to white noise, which over-weights the treble.
    """
    n = positive_int(n, "n")
    rng = require_generator(rng)
    spec = spfft.rfft(rng.standard_normal(n, dtype=np.float32))
    k = np.arange(spec.size, dtype=np.float32)
    k[0] = np.inf
    y = spfft.irfft(spec / np.sqrt(k), n=n).astype(np.float32, copy=False)
    p = mean_power(y)
    return y / np.float32(math.sqrt(p)) if p > 0 else y


def add_noise(x, snr_db: float, rng: np.random.Generator, *, color: str = "white") -> np.ndarray:
    """Add Gaussian noise at ``snr_db`` dB below the signal's mean power.

    x: (n,) float32. snr_db: signal-to-noise ratio in dB (may be negative).
    color: "white" (flat spectrum) or "pink" (-3 dB per octave).
    Returns (n,) float32. A silent input is returned unchanged, since an SNR
    relative to zero power asks for zero noise.
    """
    x = as_signal(x)
    snr_db = finite(snr_db, "snr_db")
    rng = require_generator(rng)
    if color == "white":
        noise = rng.standard_normal(x.size, dtype=np.float32) if x.size else x
    elif color == "pink":
        noise = pink_noise(x.size, rng) if x.size else x
    else:
        raise AugmentValueError(f"color must be 'white' or 'pink', got {color!r}")
    return scaled_to_snr(x, noise, snr_db)


def mix_music(x, other, snr_db: float) -> np.ndarray:
    """Mix another piece of music under ``x`` at ``snr_db`` dB.

    x: (n,) float32, the track that must still be recognised.
    other: (m,) float32, the interfering music; its first n samples are used,
        repeated end to end when m < n (crop it at random beforehand for
        variety).
    Returns (n,) float32. A silent ``other`` leaves ``x`` unchanged.
    """
    x = as_signal(x)
    other = as_signal(other, "other")
    snr_db = finite(snr_db, "snr_db")
    if other.size == 0:
        raise AugmentValueError("other must contain at least one sample")
    return scaled_to_snr(x, np.resize(other, x.size), snr_db)
