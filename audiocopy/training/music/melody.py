"""Melodies: motifs, their variations, phrases and cadences, in scale degrees.

Place in the pipeline: ``compose`` asks for one melody per kind of section
(verse, chorus, ...) and replays it, varied, whenever that section returns;
solos get fresh lines (offline training-data generation only).

Ideas. A tune is built the way songwriting books describe: a one- or
two-bar *motif* (a rhythm cell plus a contour of scale steps, mostly
stepwise with the occasional leap that then turns back), repeated, varied
(sequenced to another degree, its ending changed) or answered by a second
motif, and closed by a *cadence* on a long chord tone. Pitches live in
scale-degree space and snap to the chord on strong beats, so the line fits
the harmony and stays in the key; the only out-of-scale notes are chromatic
passing tones between two scale tones a whole step apart, and they are
marked (``alter`` != 0). A pentatonic subset of degrees can be imposed for
folk, rock and pop hooks.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from . import theory

#: Rhythm figures for one beat: (onset, duration) pairs in beats; ``None`` entries are rests.
_FIGURES = (
    ((0.0, 1.0),), ((0.0, 0.5), (0.5, 0.5)), ((0.5, 0.5),), ((0.0, 0.75), (0.75, 0.25)),
    ((0.0, 0.25), (0.25, 0.25), (0.5, 0.5)), ((0.0, 0.5), (0.5, 0.25), (0.75, 0.25)),
    ((0.0, 0.25), (0.25, 0.25), (0.5, 0.25), (0.75, 0.25)), ((0.0, 1 / 3), (1 / 3, 1 / 3), (2 / 3, 1 / 3)),
    (), ((0.0, 0.5),), ((0.25, 0.25), (0.5, 0.5)),
)


@dataclass(frozen=True)
class MelNote:
    """A melody note relative to its section: beats, absolute scale degree, chromatic alteration."""

    start: float
    duration: float
    degree: int
    alter: int = 0
    level: float = 1.0


@dataclass(frozen=True)
class Motif:
    """A rhythm cell (onsets and durations in beats) and its contour (scale steps between notes)."""

    rhythm: tuple[tuple[float, float], ...]
    steps: tuple[int, ...]
    length: float


def make_motif(rng: random.Random, length: float, density: float) -> Motif:
    """A motif of ``length`` beats averaging ``density`` notes per beat (at least one note)."""
    rhythm: list[tuple[float, float]] = []
    beat = 0.0
    while beat < length - 1e-9:
        if length - beat >= 2 and rng.random() < 0.25 / max(density, 0.3):
            rhythm.append((beat, 2.0))
            beat += 2
            continue
        weights = [math.exp(-1.3 * abs(len(f) - density)) for f in _FIGURES]
        figure = rng.choices(_FIGURES, weights)[0]
        rhythm += [(beat + o, d) for o, d in figure]
        beat += 1
    if not rhythm:
        rhythm = [(0.0, 1.0)]
    steps, prev = [], 0
    for _ in rhythm[1:]:
        if abs(prev) >= 3:
            step = -int(math.copysign(1, prev)) * rng.choice((1, 1, 2))
        else:
            step = rng.choices((0, 1, -1, 2, -2, 3, -3, 4, -4, 5), (3, 8, 8, 4, 4, 2, 2, 1, 1, 0.5))[0]
        steps.append(step)
        prev = step
    return Motif(tuple(rhythm), tuple(steps), length)


def vary_motif(rng: random.Random, motif: Motif) -> Motif:
    """A variation: the ending re-contoured, or one note split in two, or the contour inverted."""
    kind = rng.choice(("ending", "split", "invert"))
    if kind == "invert" or not motif.steps:
        return replace(motif, steps=tuple(-s for s in motif.steps))
    if kind == "ending":
        steps = list(motif.steps)
        steps[-1] = rng.choice((-2, -1, 1, 2, 3))
        return replace(motif, steps=tuple(steps))
    i = rng.randrange(len(motif.rhythm))
    onset, dur = motif.rhythm[i]
    if dur < 0.5:
        return replace(motif, steps=tuple(-s for s in motif.steps))
    rhythm = list(motif.rhythm)
    rhythm[i:i + 1] = [(onset, dur / 2), (onset + dur / 2, dur / 2)]
    steps = list(motif.steps)
    steps.insert(max(0, i - 1), rng.choice((1, -1)))
    return Motif(tuple(rhythm), tuple(steps[:len(rhythm) - 1]), motif.length)


@dataclass(frozen=True)
class LineSpec:
    """How to write a line: degree range, pentatonic degrees (or None), density, habits."""

    low: int
    high: int
    density: float
    pentatonic: tuple[int, ...] | None
    chromatic: float
    legato: float
    mode: str


def phrase_plan(rng: random.Random, units: int, repeat: bool) -> list[str]:
    """Motif roles for a phrase of ``units`` motif slots: a, a' (variation), b (answer), cad (cadence)."""
    if not repeat:
        return ["new"] * (units - 1) + ["cad"]
    shapes = {1: (("cad",),), 2: (("a", "cad"), ("a", "b")), 3: (("a", "a'", "cad"), ("a", "b", "cad")),
              4: (("a", "a'", "b", "cad"), ("a", "b", "a", "cad"), ("a", "a", "a'", "cad"), ("a", "a'", "a", "b"))}
    if units in shapes:
        return list(rng.choice(shapes[units]))
    return (phrase_plan(rng, 4, True) * (units // 4 + 1))[:units - 1] + ["cad"]


def write_line(rng: random.Random, spec: LineSpec, chords: list[tuple[float, float, theory.ChordSpec]],
               length: float, motif_beats: float, repeat: bool = True) -> list[MelNote]:
    """A melody over ``chords`` (section-relative (start, duration, chord)) lasting ``length`` beats.

    Args:
        spec: range in absolute scale degrees (0 = tonic of octave 4), density and habits.
        motif_beats: motif length in beats (usually one or two bars).
        repeat: reuse motifs (a tune); False writes through-composed lines (a solo).
    """
    motif_a = make_motif(rng, motif_beats, spec.density)
    motif_b = make_motif(rng, motif_beats, spec.density * rng.uniform(0.7, 1.3))
    units = max(1, int(round(length / motif_beats)))
    plan: list[str] = []
    while len(plan) < units:
        plan += phrase_plan(rng, min(4, units - len(plan)), repeat)
    notes: list[MelNote] = []
    current = (spec.low + spec.high) // 2
    for k, role in enumerate(plan):
        motif = {"a": motif_a, "a'": vary_motif(rng, motif_a), "b": motif_b}.get(role)
        if motif is None:
            motif = _cadence(rng, motif_beats) if role == "cad" else make_motif(rng, motif_beats, spec.density)
        start = k * motif_beats
        if role == "a'" and rng.random() < 0.4:
            current += rng.choice((-2, 2, 1))
        final = role == "cad" and k == len(plan) - 1
        placed, current = _place(rng, spec, motif, start, chords, current, final)
        notes += placed
    notes = [n for n in notes if n.start < length - 1e-6]
    return _passing_tones(rng, spec, _articulate(spec, notes, length))


def _cadence(rng: random.Random, length: float) -> Motif:
    """A closing figure: one or two notes, then a long one."""
    if length >= 2 and rng.random() < 0.6:
        return Motif(((0.0, 1.0), (1.0, length - 1.0)), (rng.choice((-1, 1, -2)),), length)
    return Motif(((0.0, length),), (), length)


def _chord_at(chords, beat: float) -> theory.ChordSpec:
    for start, dur, chord in chords:
        if start <= beat < start + dur:
            return chord
    return chords[-1][2]


def _snap(degree: int, chord: theory.ChordSpec, low: int, high: int) -> int:
    """The chord tone nearest ``degree`` (inside the range if possible)."""
    members = {d % 7 for d in chord.degrees()}
    for delta in (0, -1, 1, -2, 2, -3, 3):
        cand = degree + delta
        if cand % 7 in members and low <= cand <= high:
            return cand
    return degree


def _place(rng: random.Random, spec: LineSpec, motif: Motif, start: float, chords, current: int,
           final: bool) -> tuple[list[MelNote], int]:
    """Realise ``motif`` from beat ``start``: walk its contour, snap strong beats to the chord."""
    out = []
    degree = _snap(current, _chord_at(chords, start), spec.low, spec.high)
    for i, (onset, dur) in enumerate(motif.rhythm):
        if i > 0:
            degree += motif.steps[i - 1] if i - 1 < len(motif.steps) else 0
        if degree > spec.high or degree < spec.low:
            degree = max(spec.low, min(spec.high, 2 * (spec.high if degree > spec.high else spec.low) - degree))
        beat = start + onset
        strong = abs(beat - round(beat)) < 1e-6 and (round(beat) % 2 == 0 or dur >= 1)
        chord = _chord_at(chords, beat)
        if strong or i == len(motif.rhythm) - 1:
            degree = _snap(degree, chord, spec.low, spec.high)
        elif spec.pentatonic is not None and degree % 7 not in spec.pentatonic:
            degree += 1 if (degree + 1) % 7 in spec.pentatonic else -1
        if final and i == len(motif.rhythm) - 1:
            degree = _snap(7 * round(degree / 7), theory.ChordSpec(0), spec.low - 3, spec.high + 3)
        level = 1.0 if strong else 0.85
        out.append(MelNote(beat, dur, degree, 0, level * rng.uniform(0.92, 1.05)))
    return out, degree


def _articulate(spec: LineSpec, notes: list[MelNote], length: float) -> list[MelNote]:
    """Sort, drop overlaps and set each note's sounding length (legato fraction of the gap)."""
    notes = sorted(notes, key=lambda n: n.start)
    out = []
    for i, n in enumerate(notes):
        nxt = notes[i + 1].start if i + 1 < len(notes) else length
        if nxt - n.start < 1e-6:
            continue
        gap = min(nxt - n.start, max(n.duration, 0.25) * 1.5)
        out.append(replace(n, duration=max(0.1, gap * spec.legato)))
    return out


def _passing_tones(rng: random.Random, spec: LineSpec, notes: list[MelNote]) -> list[MelNote]:
    """Split some notes before a whole-step move, filling the step with the chromatic tone between."""
    if spec.chromatic <= 0:
        return notes
    out = []
    steps = theory.scale(spec.mode)
    for i, n in enumerate(notes):
        nxt = notes[i + 1] if i + 1 < len(notes) else None
        if nxt is None or abs(nxt.degree - n.degree) != 1 or n.duration < 0.5 or rng.random() >= spec.chromatic:
            out.append(n)
            continue
        lo = min(n.degree, nxt.degree)
        if (steps[(lo + 1) % 7] - steps[lo % 7]) % 12 != 2:
            out.append(n)
            continue
        half = n.duration / 2
        out.append(replace(n, duration=half))
        up = nxt.degree > n.degree
        out.append(MelNote(n.start + half, half, n.degree if up else nxt.degree + 1, 1 if up else -1, n.level * 0.85))
    return out


def ornament(rng: random.Random, notes: list[MelNote], amount: float) -> list[MelNote]:
    """A returning section's melody, lightly varied: some long notes get a neighbour-note turn."""
    out = []
    for n in notes:
        if n.duration >= 1.0 and n.alter == 0 and rng.random() < amount:
            half = n.duration / 2
            out += [replace(n, duration=half), replace(n, start=n.start + half, duration=half,
                                                       degree=n.degree + rng.choice((1, -1)), level=n.level * 0.9)]
        else:
            out.append(n)
    return out


def guide_line(rng: random.Random, chords, spec: LineSpec, per_chord: int) -> list[MelNote]:
    """A counter-melody of guide tones: per chord one or two long notes on the 3rd/7th/5th nearest the last."""
    out, current = [], (spec.low + spec.high) // 2
    for start, dur, chord in chords:
        members = chord.degrees()
        colour = [d for d in members[1:]] or list(members)
        count = per_chord if dur >= 2 else 1
        for k in range(count):
            target = min((c + 7 * o for c in colour for o in range(-3, 4)
                          if spec.low <= c + 7 * o <= spec.high), key=lambda d: abs(d - current) + rng.random(),
                         default=current)
            current = target
            seg = dur / count
            out.append(MelNote(start + k * seg, seg * spec.legato, target, 0, rng.uniform(0.85, 1.0)))
    return out
