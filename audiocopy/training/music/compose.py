"""Seeded procedural composition: a style and a seed in, a ``Composition`` out.

Place in the pipeline: the first stage of training-data generation
(``generate`` -> ``compose`` -> ``midi``/``render`` or ``synth``). It runs
offline only; nothing here is used at serve time.

Ideas. ``compose(style, seed, seconds)`` is a pure function: the same
arguments give the same score on any machine (Python's ``random.Random``
seeded with a string). A track first draws its *identity* from the style
(tempo, meter, key and mode, instruments per role, accompaniment, bass and
arpeggio patterns, drum kit and groove, swing, chord colours, three chord
progressions), then a form (``form``), then harmony per kind of section,
then the parts (``arrange``). Material is made once per kind of section and
replayed, varied, when that section returns; a final-chorus key change
transposes everything through the key timeline. Output is note events per
part, independent of rendering.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from . import arrange, form, theory
from .errors import BadSetting
from .score import ChordSpan, Composition, KeySpan
from .styles import STYLES, Style

#: Progressions for sections that contrast with the main one (bridges, prechoruses).
_BRIDGES = ((3, 4, 5, 4), (5, 3, 4, 4), (3, 0, 3, 4), (1, 4, 5, 5), (5, 2, 3, 4), (3, 5, 3, 4))
_PRECHORUS = ((3, 4), (1, 4), (5, 3, 4, 4), (3, 3, 4, 4))


@dataclass(frozen=True)
class Identity:
    """Everything a track decides once: tempo, meter, key, instruments, patterns, habits."""

    tempo: float
    meter: tuple[int, int]
    tonic: int
    mode: str
    programs: tuple[tuple[str, int], ...]
    comping: str
    bass_line: str
    arp_kind: str
    kit: int
    groove: str
    swing: float
    swing_unit: float
    harmonic_rhythm: float
    main: tuple[int, ...]
    verse: tuple[int, ...]
    bridge: tuple[int, ...]
    colours: tuple[theory.ChordSpec, ...]
    pentatonic: bool
    counter_kind: str
    legato: float
    motif_bars: int
    fade_out: bool
    reverb: int
    salt: int

    @property
    def bar_beats(self) -> float:
        return self.meter[0] * 4.0 / self.meter[1]

    def program(self, role: str) -> int | None:
        return dict(self.programs).get(role)


def resolve_style(style: Style | str) -> Style:
    """The ``Style`` for a name (or the style itself); ``BadSetting`` naming the known styles otherwise."""
    if isinstance(style, Style):
        return style
    if style not in STYLES:
        raise BadSetting(f"unknown style {style!r}; known styles: {', '.join(STYLES)}")
    return STYLES[style]


def compose(style: Style | str, seed: int, seconds: float = 120.0) -> Composition:
    """Compose a piece of about ``seconds`` seconds in ``style`` from ``seed``.

    Args:
        style: a ``Style`` or the name of a built-in one (see ``styles.STYLES``).
        seed: any integer; the same (style, seed, seconds) always gives the same piece.
        seconds: target duration (> 0); the result is within a few percent
            unless the style's tempo range cannot stretch that far.
    Returns:
        A ``Composition`` (beats, tempo map, keys, sections, chords, parts).
    """
    style = resolve_style(style)
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise BadSetting(f"seconds must be a positive number, got {seconds!r}")
    rng = random.Random(f"audiocopy-music:{style.name}:{int(seed)}")
    ident = _identity(rng, style)
    bar_beats = ident.bar_beats
    plan = form.plan_form(rng, rng.choice(style.forms), bar_beats * 60 / ident.tempo, seconds)
    secs = form.sections(rng, plan)
    total_beats = sum(s.bars for s in secs) * bar_beats
    lo, hi = style.tempo
    tempo = min(max(total_beats * 60.0 / seconds, lo * 0.85), hi * 1.15)
    keys = _keys(rng, style, ident, secs, bar_beats)
    harmony = {s.name: _harmony(ident, s.name, s.bars) for s in secs}
    chords = tuple(_realise_chords(secs, harmony, keys, bar_beats))
    parts = arrange.build_parts(rng, style, ident, secs, harmony, chords, keys, total_beats)
    return Composition(style=style.name, seed=int(seed), meter=ident.meter,
                       tempo_map=_tempo_map(rng, style, tempo, secs, bar_beats), keys=keys, sections=secs,
                       chords=chords, parts=parts, total_beats=total_beats)


def _identity(rng: random.Random, style: Style) -> Identity:
    """Draw the track's identity from the style's options."""
    meter = rng.choice(style.meters)
    groove = rng.choice(style.grooves)
    swing = rng.uniform(*style.swing)
    if groove in ("shuffle", "swing", "swing2"):
        swing = max(swing, rng.uniform(0.25, 0.33))
    lead = rng.choice(style.lead)
    programs = {"lead": lead}
    for role in ("counter", "bass", "chords", "pad", "arp"):
        options = getattr(style, role)
        optional = role in ("counter", "pad", "arp")
        if options and not (optional and rng.random() < 0.3):
            programs[role] = lead if style.solo_instrument else rng.choice(options)
    if style.kits and rng.random() < style.drum_prob:
        programs["drums"] = rng.choice(style.kits)
    progs = list(style.progressions)
    rng.shuffle(progs)
    power = rng.random() < style.power
    colours = tuple(theory.ChordSpec(d, seventh=not power and rng.random() < style.sevenths,
                                     add9=not power and rng.random() < style.add9,
                                     sus=4 if not power and d == 4 and rng.random() < style.sus else 0,
                                     power=power) for d in range(7))
    return Identity(
        tempo=rng.uniform(*style.tempo), meter=meter, tonic=rng.randrange(12), mode=rng.choice(style.modes),
        programs=tuple(programs.items()), comping=rng.choice(style.comping), bass_line=rng.choice(style.bass_lines),
        arp_kind=rng.choice(style.arps), kit=programs.get("drums", 0), groove=groove, swing=swing,
        swing_unit=0.5 if rng.random() < 0.6 else 0.25, harmonic_rhythm=rng.choice(style.harmonic_rhythm),
        main=progs[0], verse=progs[1 % len(progs)] if rng.random() < 0.6 else progs[0],
        bridge=rng.choice(_BRIDGES), colours=colours, pentatonic=rng.random() < style.pentatonic,
        counter_kind=rng.choice(("guide", "guide", "thirds")), legato=rng.uniform(0.6, 0.98),
        motif_bars=1 if meter[0] * 4 / meter[1] >= 4 and rng.random() < 0.5 else 2,
        fade_out=rng.random() < 0.35, reverb=rng.randrange(15, 90), salt=rng.getrandbits(48))


def _keys(rng: random.Random, style: Style, ident: Identity, secs, bar_beats: float) -> tuple[KeySpan, ...]:
    """The key timeline: the home key, and maybe a step up for the last chorus."""
    keys = [KeySpan(0.0, ident.tonic, ident.mode)]
    beat = form.key_change_beat(rng, secs, style.key_change, bar_beats)
    if beat is not None and beat > 0:
        keys.append(KeySpan(beat, (ident.tonic + rng.choice((1, 2, 2, 3))) % 12, ident.mode))
    return tuple(keys)


def _harmony(ident: Identity, name: str, bars: int) -> list[tuple[float, float, theory.ChordSpec]]:
    """Chords of one kind of section, section-relative: (start beat, duration, chord).

    Hooks use the main progression, verses their own (often the same),
    bridges and breaks a contrasting one; prechoruses climb to the dominant
    and endings land on the tonic.
    """
    sub = random.Random(f"{ident.salt}:harmony:{name}:{bars}")
    if name in form.HOOKS or name in ("solo", "build", "intro", "outro", "coda"):
        prog = ident.main
    elif name in ("bridge", "break", "B", "C"):
        prog = ident.bridge
    elif name == "prechorus":
        prog = sub.choice(_PRECHORUS)
    else:
        prog = ident.verse
    rhythm = ident.harmonic_rhythm * (0.5 if name == "bridge" and sub.random() < 0.3 else 1.0)
    slots = max(1, int(round(bars * rhythm)))
    length = bars * ident.bar_beats / slots
    degrees = [prog[i % len(prog)] for i in range(slots)]
    if name in ("outro", "coda"):
        degrees[-1] = 0
    elif name == "prechorus" and slots > 1:
        degrees[-1] = 4
    return [(i * length, length, ident.colours[d]) for i, d in enumerate(degrees)]


def _realise_chords(secs, harmony, keys: tuple[KeySpan, ...], bar_beats: float):
    """Chord spans in absolute beats with pitch classes in the key in force."""
    for sec in secs:
        start = sec.start_bar * bar_beats
        key = _key_at(keys, start)
        for offset, dur, spec in harmony[sec.name]:
            yield ChordSpan(start + offset, dur, spec, theory.chord_pcs(spec, key.tonic, key.mode))


def _key_at(keys: tuple[KeySpan, ...], beat: float) -> KeySpan:
    return [k for k in keys if k.beat <= beat + 1e-9][-1]


def _tempo_map(rng: random.Random, style: Style, tempo: float, secs, bar_beats: float):
    """Tempo events: steady, or drifting per bar (rubato), maybe slowing over the last two bars."""
    bars = sum(s.bars for s in secs)
    events = [(0.0, round(tempo, 3))]
    drift = 0.0
    if style.rubato > 0:
        for bar in range(1, bars):
            drift = 0.7 * drift + 0.3 * rng.gauss(0.0, style.rubato) * 3
            events.append((bar * bar_beats, round(tempo * math.exp(drift), 3)))
    if bars >= 4 and rng.random() < (0.6 if style.rubato else 0.25):
        last = events[-1][1] if events[-1][0] < (bars - 2) * bar_beats else tempo
        events = [e for e in events if e[0] < (bars - 2) * bar_beats]
        events += [((bars - 2) * bar_beats, round(last * 0.93, 3)), ((bars - 1) * bar_beats, round(last * 0.82, 3))]
    return tuple(events)
