"""A simple room: exponentially decaying noise as the impulse response.

Place in the pipeline: training distortions drawn by
``recipe.random_distortion`` (the cnnbin dataset). Late reverberation is
well modelled by noise decaying 60 dB in RT60 seconds; this is the cheap
model. ``rooms`` builds geometric rooms (image sources, a frequency-
dependent tail, a direct path at the right distance) for the acoustic
chains.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps

from .checks import AugmentValueError, as_signal, finite, mean_power, positive_int, require_generator

#: Reverb: RT60 range in seconds (small room to a large hall).
RT60_RANGE_S = (0.2, 1.0)


def exponential_room_response(rng: np.random.Generator, *, sample_rate: int, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response without the direct path, unit energy.

    Returns (round(rt60_s * sample_rate),) float32: 3-10 sparse early
    reflections in the first 2-50 ms, then a Gaussian-noise tail from a
    5-20 ms pre-delay whose amplitude falls 60 dB in ``rt60_s`` seconds.
    The tail's treble (above a random 1.5-4 kHz) decays 1.5-3x faster than
    its bass, the way walls and air absorb high frequencies first.
    """
    rng = require_generator(rng)
    sample_rate = positive_int(sample_rate, "sample_rate")
    rt60_s = finite(rt60_s, "rt60_s")
    if not 0.01 <= rt60_s <= 10.0:
        raise AugmentValueError(f"rt60_s must be within [0.01, 10] s, got {rt60_s!r}")
    n = max(2, int(round(rt60_s * sample_rate)))
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
    decay = np.float32(3.0 * math.log(10.0))  # 60 dB in amplitude is a factor 10**3

    noise = rng.standard_normal(n, dtype=np.float32)
    # One-pole low-pass splits the tail into bass and treble with separate decays.
    cutoff = rng.uniform(1500.0, min(4000.0, 0.4 * sample_rate))
    pole = math.exp(-(2.0 * np.pi) * cutoff / sample_rate)
    bass = sps.lfilter([1.0 - pole], [1.0, -pole], noise).astype(np.float32)
    treble = noise - bass
    treble_rt60 = rt60_s / rng.uniform(1.5, 3.0)
    tail = bass * np.exp(-decay * t / np.float32(rt60_s)) + treble * np.exp(-decay * t / np.float32(treble_rt60))
    predelay = max(1, int(rng.uniform(0.005, 0.020) * sample_rate))
    tail[:predelay] *= np.linspace(0.0, 1.0, predelay, dtype=np.float32)  # build-up, not a step

    ir = tail
    n_early = int(rng.integers(3, 11))
    where = (rng.uniform(0.002, 0.050, n_early) * sample_rate).astype(np.int64)
    where = where[where < n]
    gains = rng.uniform(0.2, 0.7, where.size) * rng.choice([-1.0, 1.0], where.size)
    gains *= np.exp(-decay * where / (rt60_s * sample_rate))
    # Scaled to the tail's energy: together the reflections carry a third of
    # it or so, audible as distinct echoes but not dominating the decay.
    np.add.at(ir, where, (gains * math.sqrt(mean_power(tail) * n / 4.0)).astype(np.float32))
    energy = mean_power(ir) * ir.size
    return (ir / np.float32(math.sqrt(energy))).astype(np.float32)


def reverb(x, rng: np.random.Generator, *, sample_rate: int, rt60_s: float | None = None,
           wet: float | None = None) -> np.ndarray:
    """Convolve ``x`` with a synthetic room and mix it with the dry sound.

    x: (n,) float32 at ``sample_rate`` Hz.
    rt60_s: reverberation time in seconds; drawn from 0.2-1.0 s when None.
    wet: share of the reverberant sound in [0, 1]; drawn from 0.2-0.7 when
        None (the microphone is at some distance, neither at the speaker
        nor deep in the diffuse field).
    Returns (n,) float32: ``(1 - wet) * x + wet * (x * h)`` truncated to n
    samples, h being ``exponential_room_response`` (unit energy, so the wet part
    has about the input's power).
    """
    x = as_signal(x)
    rng = require_generator(rng)
    sample_rate = positive_int(sample_rate, "sample_rate")
    rt60 = rng.uniform(*RT60_RANGE_S) if rt60_s is None else finite(rt60_s, "rt60_s")
    wet = rng.uniform(0.2, 0.7) if wet is None else finite(wet, "wet")
    if not 0.0 <= wet <= 1.0:
        raise AugmentValueError(f"wet must be within [0, 1], got {wet!r}")
    ir = exponential_room_response(rng, sample_rate=sample_rate, rt60_s=rt60)
    if x.size == 0:
        return x.copy()
    tail = sps.fftconvolve(x, ir)[:x.size]
    return ((1.0 - wet) * x + wet * tail).astype(np.float32)
