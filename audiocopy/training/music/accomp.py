"""Accompaniment: bass lines, comping patterns, arpeggios and pads over chords.

Place in the pipeline: ``compose`` calls ``bass_notes``, ``comp_notes`` and
``arp_notes`` section by section (offline training-data generation only).

Ideas. Each pattern is what a session player does with a chord chart: a
rock bassist pumps eighths on the root, a jazz bassist walks quarter notes
towards the next root with a chromatic approach, a guitarist strums
down-up with the strings spread over a few milliseconds, a pianist plays
Alberti figures or stride, a trance synth gates 16ths. Rhythms are one-bar
step strings on the 16th grid (``x`` hit, ``o`` soft, ``.`` rest), cut or
repeated to fit other meters. Voicings come from ``theory.voice_chord`` so
chords move smoothly. Every pitch is a chord tone or a scale tone of the
section's key, except walking-bass approach notes, which are marked
chromatic.
"""
from __future__ import annotations

import random
import types
from dataclasses import dataclass

from . import theory
from .score import ChordSpan, Note, velocity

_RHYTHMS = types.MappingProxyType({
    "offbeat": "..x...x...x...x.", "skank": "....x.......x...", "power8": "x.x.x.x.x.x.x.x.",
    "chug": "xoxoxox.xoxox.x.", "bossa": "x..x..x...x..x..", "stab": "x.....x...x.....",
    "funk16": "x.oxo.x.oxo.x.o.", "gate": "x.xx.x.xx.x.x.xx", "tremolo": "xxxxxxxxxxxxxxxx",
    "montuno": "x.x.xx.x.xx.x.x.", "comp": "x.....x.", "synco": "x..x..x...x.x...",
    "offbeat8": "..x...x...x...x.", "root8": "x.x.x.x.x.x.x.x.", "root16": "xxxxxxxxxxxxxxxx",
    "octave": "x.x.x.x.x.x.x.x.", "808": "x......x..x.....", "tumbao": "......x.....x...",
})
_STRUMS = ("x.x.xox.", "x..x..x.", "x.xxx.xx", "x...x.x.", "x.x.x.x.")


@dataclass(frozen=True)
class Ctx:
    """Where a pattern plays: section ``start``/``end`` beats, bar length, energy, key, range."""

    start: float
    end: float
    bar_beats: float
    energy: float
    tonic: int
    mode: str
    low: int
    high: int

    @property
    def steps(self) -> int:
        return int(round(self.bar_beats * 4))


def _grid(pattern: str, steps: int) -> str:
    """``pattern`` cut or repeated to ``steps`` 16ths."""
    return (pattern * (steps // len(pattern) + 1))[:steps]


def _hits(ctx: Ctx, chords: list[ChordSpan], pattern: str):
    """Yield (beat, step length, level, chord) for every hit of ``pattern`` in every bar of ``ctx``."""
    grid = _grid(pattern, ctx.steps)
    bar = ctx.start
    while bar < ctx.end - 1e-6:
        for s, ch in enumerate(grid):
            beat = bar + s * 0.25
            if ch == "." or beat >= ctx.end - 1e-6:
                continue
            chord = next((c for c in chords if c.start <= beat < c.start + c.duration), chords[-1])
            yield beat, 0.25, (1.0 if ch in "xX" else 0.5) * (1.0 if s % 4 == 0 else 0.88), chord
        bar += ctx.bar_beats


def bass_notes(rng: random.Random, line: str, chords: list[ChordSpan], ctx: Ctx) -> list[Note]:
    """Bass notes of pattern ``line`` (root, root8, rootfifth, walking, octave, ...) over ``chords``."""
    if line == "walking":
        return _walking(rng, chords, ctx)
    out: list[Note] = []
    centre = (ctx.low + ctx.high) / 2 - 4
    if line in ("root", "pedal", "rootfifth"):
        for c in chords:
            root = theory.nearest_pitch(ctx.tonic if line == "pedal" else c.pcs[0], centre, ctx.low, ctx.high)
            if line == "rootfifth" and c.duration >= 2:
                half = c.duration / 2
                fifth = theory.nearest_pitch(c.pcs[min(2, len(c.pcs) - 1)], root + 5, ctx.low, ctx.high)
                out += [Note(c.start, half * 0.9, root, velocity(1.0, ctx.energy)),
                        Note(c.start + half, half * 0.9, fifth, velocity(0.85, ctx.energy))]
            else:
                out.append(Note(c.start, c.duration * 0.95, root, velocity(1.0, ctx.energy)))
        return out
    pattern = _RHYTHMS.get(line, _RHYTHMS["root8"])
    hold = 1.5 if line == "808" else 0.45 if line in ("root16", "chug") else 0.9
    for k, (beat, step, level, chord) in enumerate(_hits(ctx, chords, pattern)):
        root = theory.nearest_pitch(chord.pcs[0], centre, ctx.low, ctx.high)
        pitch = root
        if line == "octave" and k % 2 == 1 and root + 12 <= ctx.high + 12:
            pitch = root + 12
        elif line in ("synco", "tumbao") and rng.random() < 0.3:
            pitch = theory.nearest_pitch(chord.pcs[min(2, len(chord.pcs) - 1)], root + 5, ctx.low, ctx.high + 7)
        length = step * 2 * hold if line != "808" else min(ctx.end - beat, 1.5)
        out.append(Note(beat, length, pitch, velocity(level, ctx.energy)))
    return out


def _walking(rng: random.Random, chords: list[ChordSpan], ctx: Ctx) -> list[Note]:
    """Quarter notes: root on the chord's first beat, chord/scale tones between, a chromatic approach last."""
    scale = theory.scale_pcs(ctx.tonic, ctx.mode)
    out: list[Note] = []
    prev = theory.nearest_pitch(chords[0].pcs[0], (ctx.low + ctx.high) / 2, ctx.low, ctx.high)
    for i, c in enumerate(chords):
        nxt = chords[i + 1] if i + 1 < len(chords) else c
        beats = max(1, int(round(c.duration)))
        root = theory.nearest_pitch(c.pcs[0], prev, ctx.low, ctx.high)
        target = theory.nearest_pitch(nxt.pcs[0], root, ctx.low, ctx.high)
        pitches = [root]
        for k in range(1, beats):
            if k == beats - 1 and rng.random() < 0.6:
                pitches.append(target + (1 if target <= pitches[-1] else -1))
                continue
            step = 1 if target > pitches[-1] else -1
            cand = pitches[-1] + step
            while cand % 12 not in scale or cand == pitches[-1]:
                cand += step
            if rng.random() < 0.4:
                cand = theory.nearest_pitch(rng.choice(c.pcs), pitches[-1] + 2 * step, ctx.low, ctx.high)
            pitches.append(min(ctx.high, max(ctx.low, cand)))
        for k, p in enumerate(pitches):
            beat = c.start + k
            if beat < ctx.end - 1e-6:
                out.append(Note(beat, 0.9, p, velocity(1.0 if k == 0 else 0.85, ctx.energy),
                                chromatic=p % 12 not in scale))
        prev = pitches[-1]
    return out


def comp_notes(rng: random.Random, pattern: str, chords: list[ChordSpan], ctx: Ctx, size: int = 4) -> list[Note]:
    """Chord accompaniment in ``pattern`` (block, strum, broken, power8, alberti, stride, comp, ...)."""
    if pattern in ("block", "swell", "power"):
        return _block(chords, ctx, size, power=pattern == "power")
    if pattern in ("broken", "alberti", "arpeggio", "chiparp", "fingerpick"):
        return arp_notes(rng, {"broken": "broken", "alberti": "alberti", "arpeggio": "updown",
                               "chiparp": "fast", "fingerpick": "pick"}[pattern], chords, ctx)
    if pattern == "stride":
        return _stride(chords, ctx, size)
    if pattern == "strum":
        return _strum(rng, chords, ctx, size)
    rhythm = _RHYTHMS["comp"] if pattern == "comp" else _RHYTHMS.get(pattern, _RHYTHMS["offbeat"])
    if pattern == "comp":
        rhythm = rng.choice(("x.....x.", "..x...x.", "x..x....", "....x.x.", "...x..x."))
    short = {"skank": 0.3, "chug": 0.2, "funk16": 0.2, "gate": 0.2, "stab": 0.5, "comp": 0.7}.get(pattern, 0.6)
    power = pattern in ("power8", "chug")
    out: list[Note] = []
    voicing: tuple[int, ...] = ()
    for beat, step, level, chord in _hits(ctx, chords, rhythm):
        pcs = chord.pcs[:2] if power else chord.pcs[1:] if pattern == "comp" and len(chord.pcs) > 3 else chord.pcs
        voicing = voice_or_power(pcs, voicing, ctx, size, power)
        out += [Note(beat, max(0.1, step * 2 * short), p, velocity(level, ctx.energy)) for p in voicing]
    return out


def voice_or_power(pcs, previous, ctx: Ctx, size: int, power: bool) -> tuple[int, ...]:
    """A voicing in the context's range; power chords are root, fifth and octave."""
    if power:
        root = theory.nearest_pitch(pcs[0], (ctx.low + ctx.high) / 2 - 5, ctx.low, ctx.high)
        fifth = root + (pcs[1] - pcs[0]) % 12 if len(pcs) > 1 else root + 7
        return (root, fifth, root + 12)
    return theory.voice_chord(tuple(pcs), previous, ctx.low, ctx.high, min(size, max(3, len(pcs))))


def _block(chords: list[ChordSpan], ctx: Ctx, size: int, power: bool) -> list[Note]:
    out, voicing = [], ()
    for c in chords:
        voicing = voice_or_power(c.pcs[:2] if power else c.pcs, voicing, ctx, size, power)
        length = min(c.duration, ctx.bar_beats * 2)
        t = c.start
        while t < c.start + c.duration - 1e-6:
            out += [Note(t, length * 0.97, p, velocity(0.85, ctx.energy)) for p in voicing]
            t += length
    return out


def _stride(chords: list[ChordSpan], ctx: Ctx, size: int) -> list[Note]:
    """Left-hand stride: a low root on the strong beats, a mid-range chord on the weak ones."""
    out, voicing = [], ()
    for beat in range(int(ctx.start), int(ctx.end)):
        chord = next((c for c in chords if c.start <= beat < c.start + c.duration), chords[-1])
        if (beat - ctx.start) % 2 == 0:
            out.append(Note(beat, 0.8, theory.nearest_pitch(chord.pcs[0], ctx.low, ctx.low - 12, ctx.low + 7),
                            velocity(0.95, ctx.energy)))
        else:
            voicing = theory.voice_chord(chord.pcs, voicing, ctx.low + 4, ctx.high, 3)
            out += [Note(beat, 0.6, p, velocity(0.75, ctx.energy)) for p in voicing]
    return out


def _strum(rng: random.Random, chords: list[ChordSpan], ctx: Ctx, size: int) -> list[Note]:
    """Guitar strums: down on the beat (low to high), up off it (high to low, softer), strings spread."""
    rhythm = "".join(c + "." for c in rng.choice(_STRUMS))
    spread = rng.uniform(0.015, 0.04)
    out, voicing = [], ()
    for beat, step, level, chord in _hits(ctx, chords, rhythm):
        voicing = theory.voice_chord(chord.pcs, voicing, ctx.low, ctx.high, max(size, 5))
        down = abs((beat * 2) - round(beat * 2)) < 1e-6 and round(beat * 2) % 2 == 0
        order = voicing if down else voicing[::-1][:3]
        for k, p in enumerate(order):
            vel = velocity(level * (1.0 if down else 0.75), ctx.energy)
            out.append(Note(beat + k * spread, 0.9 - k * spread, p, vel))
    return out


def arp_notes(rng: random.Random, kind: str, chords: list[ChordSpan], ctx: Ctx) -> list[Note]:
    """Arpeggios: up, updown, broken, pulse (root and octave), alberti, pick (Travis) or fast (chiptune)."""
    rate = {"fast": 8, "alberti": 4, "pulse": 4}.get(kind, 4 if rng.random() < 0.5 else 2)
    out: list[Note] = []
    voicing: tuple[int, ...] = ()
    step = 1.0 / rate
    t, k = ctx.start, 0
    while t < ctx.end - 1e-6:
        chord = next((c for c in chords if c.start <= t < c.start + c.duration), chords[-1])
        voicing = theory.voice_chord(chord.pcs, voicing, ctx.low, ctx.high, 4 if len(chord.pcs) > 3 else 3)
        seq = _arp_order(kind, voicing)
        pitch = seq[k % len(seq)]
        accent = 1.0 if abs(t - round(t)) < 1e-6 else 0.8
        out.append(Note(t, step * (0.9 if kind != "pick" else 2.0), pitch, velocity(accent * 0.9, ctx.energy)))
        t += step
        k += 1
    return out


def _arp_order(kind: str, v: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "updown":
        return v + v[-2:0:-1]
    if kind == "broken":
        return (v[0], v[2 % len(v)], v[1], v[-1]) if len(v) >= 3 else v
    if kind == "alberti":
        return (v[0], v[-1], v[1 % len(v)], v[-1])
    if kind == "pulse":
        return (v[0], v[0] + 12)
    if kind == "pick":
        return (v[0] - 12, v[-1], v[1 % len(v)] - 12 if v[1 % len(v)] - 12 > 28 else v[0], v[-2 % len(v)])
    return v
