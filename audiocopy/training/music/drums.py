"""Drum tracks: grooves per genre, varied per track, with fills and builds.

Place in the pipeline: ``compose`` calls ``drum_notes`` for the drum part
(General MIDI channel 10); the notes' pitches are GM percussion keys, which
``synth`` also understands (offline training-data generation only).

Ideas. A groove is a one-bar step pattern per drum, written as a string on
a 16th-note grid (``X`` accent, ``x`` hit, ``o`` ghost, ``.`` rest). Each
track mutates its groove a little (an extra kick, ghost snares, another hat
subdivision) so that no two rock tracks share a beat exactly. Sections change
the groove the way drummers do: lighter in intros, ride or open hats and a
crash in choruses, half-time in bridges, a snare roll rising through a
build, a fill into the next section.
"""
from __future__ import annotations

import random
import types
from dataclasses import dataclass

from .score import Note, Section, velocity
from .theory import DRUMS

#: One-bar grooves on the 16th grid of 4/4 (read-only).
GROOVES_16 = types.MappingProxyType({k: types.MappingProxyType(v) for k, v in {
    "pop": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "pop2": {"kick": "x..x..x...x.....", "snare": "....x.......x...", "hat": "xoxoxoxoxoxoxoxo"},
    "rock": {"kick": "x.......x.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
    "rock2": {"kick": "x.....x.x.....x.", "snare": "....X.......X..o", "hat": "x.x.x.x.x.x.x.x."},
    "halftime": {"kick": "x.........x.....", "snare": "........X.......", "hat": "x.x.x.x.x.x.x.x."},
    "shuffle": {"kick": "x.......x.x.....", "snare": "....X.......X...", "hat": "x.x.x.x.x.x.x.x."},
    "four": {"kick": "X...X...X...X...", "clap": "....x.......x...", "ohat": "..x...x...x...x."},
    "four2": {"kick": "X...X...X...X...", "snare": "....x.......x...", "ohat": "..x...x...x...x.",
              "hat": "oooooooooooooooo"},
    "breakbeat": {"kick": "x.x.......xx....", "snare": "....x..o.o..x..o", "hat": "x.x.x.x.x.x.x.x."},
    "swing": {"ride": "x...x.x.x...x.x.", "pedal": "....x.......x...", "kick": "o...o...o...o..."},
    "swing2": {"ride": "x...x.x.x...x.x.", "pedal": "....x.......x...", "snare": "......o.......o."},
    "bossa": {"kick": "x..xx..xx..xx..x", "rim": "x..x..x...x..x..", "shaker": "xoxoxoxoxoxoxoxo"},
    "salsa": {"cowbell": "x...x...x...x...", "conga_mute": "x...o...x...o...", "conga_hi": "......x.......xx",
              "claves": "x..x..x...x.x...", "kick": "...x.......x...."},
    "boombap": {"kick": "x.........x..x..", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "boombap2": {"kick": "x......x..x.....", "snare": "....x.......x..o", "hat": "x.xxx.x.x.xxx.x."},
    "trap": {"kick": "x.....x...x.....", "snare": "........x.......", "hat": "xxxxxxxxxxxxxxxx"},
    "chip": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "folk": {"kick": "x.......x.......", "snare": "....x.......x...", "tamb": "....x.......x...",
             "shaker": "x.x.x.x.x.x.x.x."},
    "folk2": {"kick": "x.....x.x.......", "rim": "....x.......x...", "shaker": "x.x.x.x.x.x.x.x."},
    "orch": {"kick": "x.......x.......", "snare": "................", "triangle": "x..............."},
    "march": {"snare": "x.xox.x.x.xox.x.", "kick": "x.......x.......", "crash": "x..............."},
    "ambient": {"kick": "x.........x.....", "rim": "........x.......", "shaker": "..x...x...x...x."},
    "metal": {"kick": "x.x.x.x.x.x.x.x.", "snare": "....X.......X...", "crash": "x...x...x...x..."},
    "double": {"kick": "xxxxxxxxxxxxxxxx", "snare": "....X.......X...", "china": "x...x...x...x..."},
    "funk": {"kick": "x.....x...x..x..", "snare": "....X..o.o..X..o", "hat": "xoxoxoxoxoxoxoxo"},
    "funk2": {"kick": "x..x......x.....", "snare": "....X.o.....X.o.", "hat": "x.xxx.xxx.xxx.x.",
              "ohat": "..............x."},
    "onedrop": {"kick": "........x.......", "rim": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
    "steppers": {"kick": "x...x...x...x...", "rim": "........x.......", "hat": "..x...x...x...x."},
}.items()})
#: Grooves for 12-step bars (3/4 as a waltz, 6/8 in two).
WALTZ = types.MappingProxyType({"kick": "x...........", "snare": "....o...o...", "hat": "x.x.x.x.x.x."})
JAZZ_WALTZ = types.MappingProxyType({"ride": "x...x.x.x.x.", "pedal": "....x...x...", "kick": "o..........."})
SIX_EIGHT = types.MappingProxyType({"kick": "x.....x.....", "snare": "......x.....", "hat": "x.x.x.x.x.x."})
#: Grooves that imply a swung feel whatever the style says.
SWUNG = frozenset({"shuffle", "swing", "swing2"})

_LEVEL = types.MappingProxyType({"X": 1.0, "x": 0.8, "o": 0.42})
_TOMS = ("tom_top", "tom_hi", "tom_mhi", "tom_mid", "tom_mlo", "tom_lo")


@dataclass(frozen=True)
class DrumPlan:
    """A track's drum choices: ``groove`` (drum -> step string), ``steps`` per bar, fill habits."""

    groove: tuple[tuple[str, str], ...]
    steps: int
    fill_prob: float
    crash: str
    loud_cymbal: str


def plan_drums(rng: random.Random, groove_name: str, meter: tuple[int, int]) -> DrumPlan:
    """Pick and mutate a groove for ``meter`` so that the track's beat is its own."""
    steps = int(round(meter[0] * 16 / meter[1]))
    if steps == 16:
        base = dict(GROOVES_16[groove_name])
    elif steps == 12:
        base = dict(JAZZ_WALTZ if groove_name in SWUNG else SIX_EIGHT if meter[1] == 8 else WALTZ)
    else:
        base = {"kick": "x" + "." * (steps - 1), "snare": "." * (steps // 2) + "x" + "." * (steps - steps // 2 - 1),
                "hat": "x." * (steps // 2) + "." * (steps % 2)}
    base = {k: _mutate(rng, k, v) for k, v in base.items()}
    loud = rng.choice(("ride", "ohat", "hat")) if "hat" in base else next(iter(base))
    fill_prob = rng.uniform(0.5, 0.95)
    crash = rng.choice(("crash", "crash", "crash2", "splash"))
    return DrumPlan(tuple(base.items()), steps, fill_prob, crash, loud)


def _mutate(rng: random.Random, drum: str, pattern: str) -> str:
    """Small per-track changes: an added kick, ghost snares, a different hat subdivision."""
    cells = list(pattern)
    n = len(cells)
    if drum == "kick" and rng.random() < 0.5:
        spot = rng.randrange(n // 2) * 2 + (1 if rng.random() < 0.3 else 0)
        cells[spot % n] = cells[spot % n] if cells[spot % n] != "." else "x"
    elif drum == "snare" and rng.random() < 0.35:
        for i in range(n):
            if cells[i] == "." and i % 2 == 1 and rng.random() < 0.25:
                cells[i] = "o"
    elif drum == "hat" and rng.random() < 0.4:
        cells = list(rng.choice(("x" * n, "x." * (n // 2), "x..." * (n // 4) if n % 4 == 0 else "x." * (n // 2))))
        cells = [c if i % 4 == 0 or c == "." else ("x" if i % 2 == 0 else "o") for i, c in enumerate(cells)]
    return "".join(cells)


def drum_notes(rng: random.Random, plan: DrumPlan, sections: tuple[Section, ...], active: tuple[bool, ...],
               bar_beats: float) -> list[Note]:
    """Drum notes for the sections where ``active`` is true, with fills and crashes.

    Args:
        rng: the track's composition random generator.
        plan: from ``plan_drums``.
        sections: the form; ``active[i]`` says whether section ``i`` has drums.
        bar_beats: bar length in beats (quarter notes).
    Returns notes in beats with GM percussion keys as pitches.
    """
    notes: list[Note] = []
    step = bar_beats / plan.steps
    for i, sec in enumerate(sections):
        if not active[i]:
            continue
        start = sec.start_bar * bar_beats
        groove = _section_groove(plan, sec)
        for bar in range(sec.bars):
            t0 = start + bar * bar_beats
            last = bar == sec.bars - 1
            fill = last and i + 1 < len(sections) and rng.random() < plan.fill_prob
            small = not last and bar % 4 == 3 and rng.random() < 0.25
            cut = 0.5 if fill and rng.random() < 0.5 else 0.25 if fill or small else 0.0
            if sec.name == "build":
                notes += _roll(t0, bar_beats, bar, sec.bars, sec.energy)
            notes += _bar(rng, groove, t0, step, plan.steps, sec.energy, cut)
            if cut > 0:
                notes += _fill(rng, t0 + bar_beats * (1 - cut), bar_beats * cut, sec.energy)
            if bar == 0 and (sec.energy > 0.7 or i > 0 and rng.random() < 0.5):
                notes.append(Note(t0, 1.0, DRUMS[plan.crash], velocity(0.95, sec.energy)))
    return notes


def _section_groove(plan: DrumPlan, sec: Section) -> tuple[tuple[str, str], ...]:
    """The track's groove as played in ``sec``: thinner when quiet, louder cymbals when loud."""
    groove = dict(plan.groove)
    if sec.name in ("intro", "break", "outro", "coda") and sec.energy < 0.5:
        groove = {k: v for k, v in groove.items() if k not in ("snare", "clap")} or groove
    if sec.name in ("bridge", "break") and "snare" in groove and len(groove["snare"]) == 16:
        groove["snare"] = "........X......."
    if sec.name == "break":
        groove.pop("kick", None)
    if sec.energy >= 0.8 and "hat" in groove and plan.loud_cymbal != "hat":
        groove[plan.loud_cymbal] = groove.pop("hat")
    if sec.name == "build":
        groove = {k: v for k, v in groove.items() if k in ("kick", "hat", "ohat")}
    return tuple(groove.items())


def _bar(rng: random.Random, groove, t0: float, step: float, steps: int, energy: float, cut: float) -> list[Note]:
    """One bar of ``groove`` from beat ``t0``, leaving the last ``cut`` of the bar to a fill."""
    out = []
    stop = steps * (1 - cut) - 1e-6
    for drum, pattern in groove:
        for s, ch in enumerate(pattern):
            if ch == "." or s >= stop:
                continue
            beat_accent = 1.0 if s % 4 == 0 else 0.9
            level = _LEVEL[ch] * beat_accent * rng.uniform(0.9, 1.05)
            out.append(Note(t0 + s * step, step, DRUMS[drum], velocity(level, energy)))
    return out


def _fill(rng: random.Random, t0: float, length: float, energy: float) -> list[Note]:
    """A fill of ``length`` beats from ``t0``: snare 16ths, falling toms or triplets, getting louder."""
    kind = rng.choice(("snare", "toms", "toms", "triplet", "mixed"))
    div = 3 if kind == "triplet" else 4
    count = max(1, int(round(length * div)))
    out = []
    for k in range(count):
        if kind == "snare":
            drum = "snare"
        elif kind == "mixed":
            drum = "snare" if k % 2 == 0 else _TOMS[min(len(_TOMS) - 1, k * len(_TOMS) // count)]
        else:
            drum = _TOMS[min(len(_TOMS) - 1, k * len(_TOMS) // count)]
        level = 0.6 + 0.4 * (k + 1) / count
        out.append(Note(t0 + k / div, 1.0 / div, DRUMS[drum], velocity(level, energy)))
    return out


def _roll(t0: float, bar_beats: float, bar: int, bars: int, energy: float) -> list[Note]:
    """A snare roll that doubles its rate every quarter of a build and rises in loudness."""
    rate = 2 ** min(3, int(4 * bar / max(bars, 1)))
    n = int(bar_beats * rate)
    out = []
    for k in range(n):
        progress = (bar + k / n) / bars
        out.append(Note(t0 + k / rate, 1.0 / rate, DRUMS["snare"], velocity(0.35 + 0.65 * progress, energy)))
    return out

