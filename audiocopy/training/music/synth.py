"""A small NumPy synthesiser: plays a ``Composition`` without soundfonts.

Place in the pipeline: ``generate`` renders a share of the tracks here
instead of through fluidsynth, so that not every training track sounds
like General MIDI samples; ``render.finish`` then trims and normalises.
Offline only.

Ideas. Each GM program family maps to a voice recipe whose parameters
every track redraws, so "a synth lead" or "a guitar" sounds different from
track to track:

* subtractive: detuned band-limited saw/square/triangle oscillators
  (PolyBLEP), a low-pass filter whose envelope is approximated by
  cross-fading a dark and a bright filtering of the same tone (cheap, no
  per-sample loop), ADSR amplitude, optional vibrato and drive;
* FM: a two-operator carrier/modulator pair with a decaying index (bells,
  electric pianos, basses);
* pluck: additive partials that decay faster the higher they are, slightly
  inharmonic (pianos, guitars, harps, mallets);
* organ: drawbar sines with a tremolo.

Notes are cached per (pitch, length) within a part, since songs repeat.
The mix applies channel volume and expression curves, a convolution reverb
with a random decaying-noise impulse response on a send, and soft clipping.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scipy import signal

from .score import CC_EXPRESSION, CC_VOLUME, Composition, Part
from .synth_drums import drum_sound, random_kit


@dataclass(frozen=True)
class Patch:
    """A voice: ``kind`` (sub, fm, pluck, organ), oscillator ``wave``, unison, envelopes and colour.

    Times in seconds; ``cutoff`` is the dark filter's cutoff as a multiple
    of the note frequency; ``bright`` scales it up at the attack
    (``filter_env`` seconds time constant); ``ratio``/``index`` are FM's;
    ``damping`` is the pluck's partial decay; ``drive`` is tanh saturation.
    """

    kind: str
    wave: str = "saw"
    voices: int = 1
    detune: float = 0.0
    attack: float = 0.005
    decay: float = 0.3
    sustain: float = 0.7
    release: float = 0.2
    cutoff: float = 4.0
    bright: float = 4.0
    filter_env: float = 0.15
    ratio: float = 1.0
    index: float = 0.0
    damping: float = 1.0
    vibrato: float = 0.0
    drive: float = 0.0
    gain: float = 1.0


def patch_for(program: int, rng: random.Random) -> Patch:
    """A voice recipe for GM ``program`` (0-127) with parameters drawn from ``rng``."""
    family = program // 8
    u = rng.uniform
    if family in (0, 3, 13) and program not in (29, 30):
        return Patch("pluck", damping=u(0.6, 2.5) * (0.5 if family == 0 else 1.0), release=u(0.1, 0.4),
                     cutoff=u(6, 20), bright=u(0.02, 0.6), gain=1.0)
    if family in (1, 14, 15):
        return Patch("fm", ratio=rng.choice((1.4, 2.0, 3.5, 4.0, 7.0)), index=u(1.0, 4.0), decay=u(0.3, 1.5),
                     sustain=0.0, release=u(0.2, 0.8), gain=0.8)
    if family == 2:
        return Patch("organ", attack=0.005, sustain=1.0, release=0.05, vibrato=u(0.0, 8.0), gain=0.5)
    if program in (4, 5):
        return Patch("fm", ratio=1.0, index=u(1.0, 3.0), decay=u(0.8, 2.0), sustain=0.2, release=0.3, gain=0.9)
    if family == 4:
        if rng.random() < 0.4:
            return Patch("fm", ratio=rng.choice((0.5, 1.0, 2.0)), index=u(0.5, 2.5), decay=u(0.2, 0.6),
                         sustain=u(0.3, 0.7), release=0.08, gain=1.1)
        return Patch("sub", wave=rng.choice(("saw", "square", "tri")), cutoff=u(2, 6), bright=u(1.5, 5),
                     decay=u(0.1, 0.4), sustain=u(0.4, 0.9), release=0.08, drive=u(0, 1.5), gain=1.1)
    if family in (5, 6, 11):
        return Patch("sub", wave="saw", voices=rng.choice((2, 3, 4)), detune=u(5, 20), attack=u(0.05, 0.5),
                     decay=0.5, sustain=0.9, release=u(0.3, 1.2), cutoff=u(2, 6), bright=u(1, 2),
                     vibrato=u(0, 10), gain=0.6)
    if family in (8, 9):
        return Patch("sub", wave=rng.choice(("square", "tri", "tri")), attack=u(0.02, 0.08), sustain=0.85,
                     release=0.1, cutoff=u(2, 5), bright=u(1, 2), vibrato=u(5, 20), gain=0.8)
    if family == 7:
        return Patch("sub", wave="saw", voices=2, detune=u(3, 8), attack=u(0.02, 0.06), sustain=0.8,
                     cutoff=u(2, 4), bright=u(2, 5), filter_env=u(0.1, 0.3), vibrato=u(0, 10), gain=0.8)
    distorted = program in (29, 30, 84, 87)
    return Patch("sub", wave=rng.choice(("saw", "square")), voices=rng.choice((1, 2, 3)), detune=u(0, 15),
                 attack=0.005, sustain=u(0.6, 1.0), release=u(0.05, 0.3), cutoff=u(3, 10), bright=u(1, 4),
                 drive=u(2, 6) if distorted else u(0, 1), vibrato=u(0, 12), gain=0.6 if distorted else 0.7)


def _polyblep(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """PolyBLEP correction that removes most aliasing from a naive saw's jump at phase 0."""
    out = np.zeros_like(phase)
    a = phase < dt
    x = phase[a] / dt[a]
    out[a] = x + x - x * x - 1.0
    b = phase > 1.0 - dt
    x = (phase[b] - 1.0) / dt[b]
    out[b] = x * x + x + x + 1.0
    return out


def _oscillator(wave: str, freq: np.ndarray, rate: int, start_phase: float) -> np.ndarray:
    dt = np.minimum(freq / rate, 0.49)
    phase = (start_phase + np.cumsum(dt)) % 1.0
    saw = 2.0 * phase - 1.0 - _polyblep(phase, dt)
    if wave == "saw":
        return saw
    shifted = (phase + 0.5) % 1.0
    square = saw - (2.0 * shifted - 1.0 - _polyblep(shifted, dt))
    if wave == "square":
        return square * 0.7
    # A naive triangle: its partials fall as 1/h**2, so aliasing stays faint.
    return 2.0 * np.abs(2.0 * phase - 1.0) - 1.0


def _envelope(p: Patch, n: int, held: int, rate: int) -> np.ndarray:
    """ADSR over ``n`` samples, the note held for ``held`` of them (release after)."""
    t = np.arange(n) / rate
    att = np.minimum(1.0, t / max(p.attack, 1e-4))
    dec = p.sustain + (1.0 - p.sustain) * np.exp(-np.maximum(t - p.attack, 0) / max(p.decay, 1e-3))
    env = att * dec
    if held < n:
        level = env[max(held - 1, 0)]
        env[held:] = level * np.exp(-(t[held:] - t[held]) / max(p.release / 4, 1e-3))
    return env


def note_audio(p: Patch, pitch: int, held_s: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``p`` at MIDI ``pitch`` held ``held_s`` seconds, plus its release; peak about 1."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    held = max(1, int(held_s * rate))
    n = held + int(p.release * rate) + 1
    if p.kind == "pluck":
        n = min(n, held + int(0.3 * rate), int(6 * rate))
    t = np.arange(n) / rate
    vib = 2 ** (p.vibrato / 1200 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1.0, t / 0.4))
    if p.kind == "pluck":
        tone = _pluck(p, f0, t, rate, rng)
    elif p.kind == "fm":
        index = p.index * np.exp(-t / max(p.decay, 0.05))
        tone = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * f0 * p.ratio * t))
    elif p.kind == "organ":
        bars = ((0.5, 0.5), (1, 1.0), (2, 0.6), (3, 0.4), (4, 0.3), (6, 0.15))
        tone = sum(a * np.sin(2 * np.pi * f0 * h * vib * t) for h, a in bars if f0 * h < rate * 0.45)
        tone = tone * (1.0 + 0.15 * np.sin(2 * np.pi * 6.2 * t)) / 2.5
    else:
        tone = _subtractive(p, f0 * vib, t, rate, rng)
    env = _envelope(p, n, held, rate) if p.kind != "pluck" else _pluck_release(n, held, rate)
    out = tone * env
    if p.drive > 0:
        out = np.tanh(p.drive * out) / np.tanh(p.drive)
    return out


def _subtractive(p: Patch, freq: np.ndarray, t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    cents = np.linspace(-p.detune, p.detune, p.voices) if p.voices > 1 else np.zeros(1)
    raw = sum(_oscillator(p.wave, freq * 2 ** (c / 1200), rate, rng.random()) for c in cents) / np.sqrt(p.voices)
    nyq = rate / 2
    f0 = float(freq[0])
    dark = signal.sosfilt(signal.butter(2, min(0.95, f0 * p.cutoff / nyq), output="sos"), raw)
    bright = signal.sosfilt(signal.butter(2, min(0.95, f0 * p.cutoff * p.bright / nyq), output="sos"), raw)
    mix = np.exp(-t / max(p.filter_env, 1e-3))
    return dark + mix * (bright - dark)


def _pluck(p: Patch, f0: float, t: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Decaying partials: partial h decays at ``damping * (1 + h**1.5 / 4)`` per second, slightly stretched."""
    count = int(min(24, (rate * 0.45) // f0))
    h = np.arange(1, max(count, 1) + 1)[:, None]
    freqs = f0 * h * np.sqrt(1 + p.bright * 1e-3 * h ** 2)
    keep = (freqs[:, 0] < rate * 0.45)
    amps = (1.0 / h ** 1.1) * np.abs(np.sin(np.pi * h * (0.1 + 0.2 * rng.random())))
    decay = p.damping * (1 + h ** 1.5 / 4) * (1 + f0 / 800)
    tones = amps * np.sin(2 * np.pi * freqs * t[None, :] + rng.random(size=h.shape) * 6.28) * np.exp(-decay * t)
    return tones[keep].sum(axis=0) * 1.2


def _pluck_release(n: int, held: int, rate: int) -> np.ndarray:
    env = np.ones(n)
    if held < n:
        env[held:] = np.exp(-np.arange(n - held) / (0.05 * rate))
    return env


def _controller_gain(part: Part, comp: Composition, times: np.ndarray) -> np.ndarray:
    """Channel gain over ``times`` (seconds): volume and expression, both as (value/127)**2 like GM."""
    gain = np.full(len(times), (part.volume / 127.0) ** 2)
    expr = [(comp.seconds_at(c.beat), c.value) for c in part.controls if c.number == CC_EXPRESSION]
    vol = [(comp.seconds_at(c.beat), c.value) for c in part.controls if c.number == CC_VOLUME]
    for curve in (expr, vol):
        if curve:
            xs, ys = zip(*sorted(curve))
            gain = gain * (np.interp(times, xs, ys) / 127.0) ** 2
    return gain


def _render_part(part: Part, comp: Composition, rate: int, n: int, rng: random.Random) -> np.ndarray:
    """One part on its own mono bus of ``n`` samples."""
    bus = np.zeros(n)
    cache: dict[tuple[int, int], np.ndarray] = {}
    np_rng = np.random.default_rng(rng.getrandbits(32))
    kit = random_kit(rng) if part.is_drums else None
    patch = None if part.is_drums else patch_for(part.program, rng)
    for note in part.notes:
        start = int(comp.seconds_at(note.start) * rate)
        held = comp.seconds_at(note.start + note.duration) - comp.seconds_at(note.start)
        key = (note.pitch, 0 if part.is_drums else int(held * 20))
        if key not in cache:
            cache[key] = drum_sound(note.pitch, kit, rate) if kit else note_audio(patch, note.pitch, key[1] / 20 + 0.02,
                                                                                 rate, np_rng)
        audio = cache[key][: max(0, n - start)]
        bus[start:start + len(audio)] += audio * (note.velocity / 127.0) ** 1.5 * (patch.gain if patch else 0.8)
    return bus * _controller_gain(part, comp, np.arange(n) / rate)


def _impulse_response(rng: random.Random, rate: int) -> np.ndarray:
    """A room: exponentially decaying noise, darker as it decays (1/e time 0.1-0.8 s)."""
    tau = rng.uniform(0.1, 0.8)
    n = int(rate * tau * 5)
    t = np.arange(n) / rate
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(n)
    dark = signal.sosfilt(signal.butter(1, rng.uniform(0.05, 0.3), output="sos"), noise)
    fade = np.exp(-t / (tau * 0.5))
    ir = (noise * fade + dark * (1 - fade)) * np.exp(-t / tau)
    ir[: int(rate * rng.uniform(0.005, 0.03))] = 0.0
    return ir / np.sqrt(np.sum(ir ** 2))


def render(comp: Composition, rate: int = 22050, seed: int = 0, tail_s: float = 2.0) -> np.ndarray:
    """Play ``comp`` with NumPy voices: mono float32 samples at ``rate`` Hz, ``duration_s + tail_s`` long.

    Args:
        comp: the score.
        rate: sample rate in Hz.
        seed: draws the patches, drum kit, reverb and mix (same seed, same audio).
        tail_s: seconds kept after the last bar for releases and reverb.
    The result is peak-limited to at most 1.0 (``render.finish`` normalises later).
    """
    rng = random.Random(f"synth:{seed}:{comp.style}:{comp.seed}")
    n = int((comp.duration_s + tail_s) * rate)
    dry = np.zeros(n)
    send = np.zeros(n)
    for part in comp.parts:
        bus = _render_part(part, comp, rate, n, rng)
        dry += bus
        send += bus * (part.reverb / 127.0) * rng.uniform(0.5, 1.2)
    wet = signal.oaconvolve(send, _impulse_response(rng, rate))[:n]
    mix = dry + wet * rng.uniform(0.3, 0.8)
    peak = np.max(np.abs(mix)) or 1.0
    mix = mix / peak
    drive = rng.uniform(0.5, 2.0)
    return (np.tanh(drive * mix) / np.tanh(drive)).astype(np.float32)
