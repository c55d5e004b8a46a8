"""Synthesised drums for the NumPy renderer: a kit built from sines and noise.

Place in the pipeline: ``synth.render`` plays the drum part's GM percussion
keys with the sounds made here (offline training-data generation only).

Ideas. The classic analogue recipes: a kick is a sine whose pitch falls
fast plus a click; a snare is band-passed noise over a short tone; hats and
cymbals are high-passed noise mixed with a cluster of inharmonic square
waves (the TR-808 trick); toms, congas and bongos are pitch-dropping sines;
cowbell is two detuned squares through a band-pass. Each track draws its
own kit (pitches, decays, brightness), so synthetic drums differ between
tracks as sampled kits do.
"""
from __future__ import annotations

import random
import types
from dataclasses import dataclass

import numpy as np
from scipy import signal

_CYMBAL_KEYS = types.MappingProxyType({49: 1.6, 57: 1.6, 52: 1.3, 55: 0.8, 51: 0.9, 53: 0.9})
_TOM_KEYS = types.MappingProxyType({41: 0, 43: 1, 45: 2, 47: 3, 48: 4, 50: 5})
_HAND_KEYS = types.MappingProxyType({60: 420, 61: 300, 62: 330, 63: 330, 64: 220, 65: 500, 66: 380})


@dataclass(frozen=True)
class Kit:
    """One track's drum sound: tunings in Hz, decays in seconds, noise colour, metal brightness."""

    kick_hz: float
    kick_drop: float
    kick_decay: float
    snare_hz: float
    snare_decay: float
    snare_tone: float
    hat_decay: float
    tom_base: float
    metal_base: float
    brightness: float
    seed: int


def random_kit(rng: random.Random) -> Kit:
    """A kit from the track's random generator (tight electronic to boomy acoustic)."""
    return Kit(kick_hz=rng.uniform(42, 62), kick_drop=rng.uniform(2.0, 4.5), kick_decay=rng.uniform(0.18, 0.6),
               snare_hz=rng.uniform(160, 240), snare_decay=rng.uniform(0.1, 0.28), snare_tone=rng.uniform(0.2, 0.6),
               hat_decay=rng.uniform(0.03, 0.08), tom_base=rng.uniform(80, 120), metal_base=rng.uniform(250, 420),
               brightness=rng.uniform(0.5, 1.0), seed=rng.getrandbits(32))


def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def _band(x: np.ndarray, low: float, high: float, rate: int) -> np.ndarray:
    nyq = rate / 2
    high = min(high, nyq * 0.95)
    low = min(low, high * 0.8)
    sos = signal.butter(2, (low / nyq, high / nyq), btype="band", output="sos")
    return signal.sosfilt(sos, x)


def _metal(n: int, base: float, rate: int) -> np.ndarray:
    """Six inharmonic square waves (the 808 cymbal and hat source)."""
    t = np.arange(n) / rate
    ratios = (1.0, 1.342, 1.738, 2.13, 2.62, 3.27)
    return sum(np.sign(np.sin(2 * np.pi * base * r * t + r)) for r in ratios) / 6


def _sweep(n: int, f0: float, f1: float, tau: float, rate: int) -> np.ndarray:
    """A sine gliding exponentially from ``f0`` to ``f1`` Hz with time constant ``tau``."""
    t = np.arange(n) / rate
    freq = f1 + (f0 - f1) * np.exp(-t / tau)
    return np.sin(2 * np.pi * np.cumsum(freq) / rate)


def drum_sound(key: int, kit: Kit, rate: int) -> np.ndarray:
    """One hit of GM percussion ``key`` at full velocity: float64 mono samples at ``rate`` Hz, peak about 1."""
    seed = kit.seed + key
    if key in (35, 36):
        n = int(rate * kit.kick_decay * 3)
        t = np.arange(n) / rate
        body = _sweep(n, kit.kick_hz * kit.kick_drop, kit.kick_hz, 0.03, rate) * np.exp(-t / kit.kick_decay)
        click = _band(_noise(n, seed), 1500, 6000, rate) * np.exp(-t / 0.004) * 0.3
        return body + click
    if key in (37, 38, 39, 40):
        return _snare(key, kit, rate, seed)
    if key in (42, 44, 46):
        decay = kit.hat_decay * (6 if key == 46 else 0.7 if key == 44 else 1)
        n = int(rate * decay * 5)
        t = np.arange(n) / rate
        src = _metal(n, kit.metal_base * 2, rate) * 0.6 + _noise(n, seed) * 0.4 * kit.brightness
        return _band(src, 6000, 10500, rate) * np.exp(-t / decay) * 1.2
    if key in _CYMBAL_KEYS:
        decay = _CYMBAL_KEYS[key]
        n = int(rate * decay * 3)
        t = np.arange(n) / rate
        src = _metal(n, kit.metal_base * (1.5 if key in (51, 53) else 1.1), rate) * 0.5 + _noise(n, seed) * 0.5
        tone = _band(src, 3000 if key not in (51, 53) else 5000, 10500, rate)
        return tone * np.exp(-t / (decay * 0.45)) * 0.9
    if key in _TOM_KEYS:
        f = kit.tom_base * 2 ** (_TOM_KEYS[key] / 4)
        n = int(rate * 0.7)
        t = np.arange(n) / rate
        return _sweep(n, f * 1.5, f, 0.04, rate) * np.exp(-t / 0.22) + _noise(n, seed) * np.exp(-t / 0.01) * 0.1
    if key in _HAND_KEYS:
        f = _HAND_KEYS[key] * (0.9 + 0.2 * kit.brightness)
        decay = 0.05 if key == 62 else 0.18
        n = int(rate * decay * 5)
        t = np.arange(n) / rate
        return _sweep(n, f * 1.2, f, 0.01, rate) * np.exp(-t / decay)
    return _small_percussion(key, kit, rate, seed)


def _snare(key: int, kit: Kit, rate: int, seed: int) -> np.ndarray:
    """Snare, rim shot and clap: band-passed noise over a short tone (a clap is three quick bursts)."""
    if key == 37:
        n = int(rate * 0.08)
        t = np.arange(n) / rate
        return np.sin(2 * np.pi * 1700 * t) * np.exp(-t / 0.012) + _band(_noise(n, seed), 2000, 6000, rate) * \
            np.exp(-t / 0.008)
    decay = kit.snare_decay * (1.3 if key == 39 else 1.0)
    n = int(rate * decay * 4)
    t = np.arange(n) / rate
    env = np.exp(-t / decay)
    if key == 39:
        env = env * 0.6 + sum(np.exp(-np.clip(t - d, 0, None) / 0.006) * (t >= d) for d in (0.0, 0.011, 0.023)) * 0.5
    noise = _band(_noise(n, seed), 1200, 9000 * kit.brightness + 1000, rate) * env
    tone = np.sin(2 * np.pi * kit.snare_hz * t) * np.exp(-t / 0.05) * kit.snare_tone
    return noise * 1.5 + (0 if key == 39 else tone)


def _small_percussion(key: int, kit: Kit, rate: int, seed: int) -> np.ndarray:
    """Tambourine, shakers, cowbell, claves, woodblocks, triangle; other keys get a short noise tick."""
    if key == 56:
        n = int(rate * 0.4)
        t = np.arange(n) / rate
        tone = np.sign(np.sin(2 * np.pi * 540 * t)) + np.sign(np.sin(2 * np.pi * 800 * t))
        return _band(tone, 500, 2500, rate) * np.exp(-t / 0.09)
    if key in (75, 76, 77):
        f = {75: 2500, 76: 1800, 77: 1200}[key]
        n = int(rate * 0.12)
        t = np.arange(n) / rate
        return np.sin(2 * np.pi * f * t) * np.exp(-t / 0.018)
    if key in (80, 81):
        n = int(rate * (0.25 if key == 80 else 1.5))
        t = np.arange(n) / rate
        return (np.sin(2 * np.pi * 4200 * t) + 0.5 * np.sin(2 * np.pi * 6900 * t)) * np.exp(-t / (n / rate / 3)) * 0.5
    decay = {54: 0.12, 69: 0.05, 70: 0.04, 73: 0.15}.get(key, 0.06)
    n = int(rate * decay * 4)
    t = np.arange(n) / rate
    src = _noise(n, seed) + (_metal(n, 2000, rate) if key == 54 else 0)
    return _band(src, 4000, 10500, rate) * np.exp(-t / decay)
