"""Seeded synthetic music for tests: answers are known by construction.

A "track" is a random melody: notes drawn from a seeded scale, each a few
harmonics with an attack/decay envelope, over a seeded bass line. Different
seeds give tracks that share nothing but their instrument, so a recognizer
must tell them apart by melody, like real songs.
"""
from __future__ import annotations

import numpy as np


def tone(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A pure sine tone, (n,) float32."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(y: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the strongest partial in the middle half of ``y``.

    Zero-padded FFT plus parabolic interpolation of the log magnitude around
    the peak: about 0.1 Hz resolution on a second of audio.
    """
    y = np.asarray(y, dtype=np.float64)[len(y) // 4: 3 * len(y) // 4]
    n = 1 << (int(np.log2(len(y))) + 3)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)), n))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sample_rate / n


def melody(seed: int, seconds: float, sample_rate: int) -> np.ndarray:
    """A seeded random melody with harmonics and a bass line, (n,) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    t_note = rng.uniform(0.12, 0.3)  # seconds per note: the track's own tempo
    pos = 0
    while pos < n:
        dur = int(t_note * sample_rate * rng.choice([1, 1, 2]))
        midi = rng.integers(55, 84)
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        t = np.arange(min(dur, n - pos)) / sample_rate
        env = np.exp(-t * rng.uniform(3, 9)) * (1 - np.exp(-t * 200))
        note = sum((0.6 ** h) * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(4))
        out[pos:pos + t.size] += env * note
        bass_f = f0 / 4
        out[pos:pos + t.size] += 0.4 * env * np.sin(2 * np.pi * bass_f * t)
        pos += dur
    out /= np.max(np.abs(out)) + 1e-9
    return (0.8 * out).astype(np.float32)


def pattern(kind: str, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Simple, very different test "tracks" that a tiny model learns in seconds.

    kind: "pulses" (short 440/660 Hz tone bursts, 4 per second), "chirps"
    (rising sweeps 200 -> 2000 Hz, two per second), "chord" (a sustained
    three-note chord with slow tremolo), "noise" (band-limited noise bursts,
    unlike any of the others). Returns (n,) float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    if kind == "pulses":
        gate = (np.mod(t, 0.25) < 0.08).astype(float)
        x = gate * (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))
    elif kind == "chirps":
        phase_t = np.mod(t, 0.5)
        f = 200 * (10 ** (phase_t / 0.5))
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
    elif kind == "chord":
        x = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    elif kind == "noise":
        x = rng.standard_normal(n) * (np.mod(t, 0.33) < 0.1)
    else:
        raise ValueError(kind)
    x = x / (np.max(np.abs(x)) + 1e-9)
    return (0.7 * x).astype(np.float32)


def room_recording(x: np.ndarray, sample_rate: int, seed: int = 0) -> np.ndarray:
    """``x`` through the project's seeded room chain (speaker, room, noises, mic, AGC), as float32.

    No codec: ffmpeg's encoders differ between machines, and the audio must
    be the same on every one. Seed 0 draws a 27 x 10 x 11 m hall (RT60
    1.5 s) with babble, clatter and HVAC noise.
    """
    from audiocopy.training.augment.chain import apply_chain, random_chain

    rng = np.random.default_rng(seed)
    chain = random_chain(rng, kind="room", codecs=())
    return apply_chain(np.asarray(x, dtype=np.float32), chain, sample_rate=sample_rate, rng=rng)


def sped_up(x: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``x`` played ``factor`` times faster (a turntable's speed change: pitch rises with tempo), float32."""
    import soxr

    return soxr.resample(x, sample_rate * factor, sample_rate).astype(np.float32)

