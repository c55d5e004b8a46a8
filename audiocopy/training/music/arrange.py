"""Arrangement: turn a track's identity, form and harmony into mixed parts.

Place in the pipeline: the last step of ``compose`` (offline training-data
generation only).

Ideas. Each role (lead, counter-melody, bass, chords, pad, arpeggio,
drums) is written section by section, only where ``form.arrangement`` lets
it play. Lead material is written once per kind of section and replayed
(ornamented on returns); accompaniment for a kind of section uses a random
generator seeded by that kind, so a returning chorus is accompanied exactly
as before, only in the key now in force. Then the performance: velocity
ramps through builds and prechoruses, swing (a time warp inside each beat
or half beat), timing and velocity jitter, controller curves (pad swells,
vibrato on held notes, guitar and synth bends, an optional fade-out) and a
mix (volume, pan, reverb and chorus sends).
"""
from __future__ import annotations

import random
import types
from collections import Counter
from dataclasses import replace

from . import accomp, drums, form, melody, theory
from .score import CC_EXPRESSION, CC_MODULATION, DRUM_CHANNEL, PITCH_BEND, Control, KeySpan, Note, Part, velocity

CHANNELS = types.MappingProxyType({"lead": 0, "counter": 1, "bass": 2, "chords": 3, "pad": 4, "arp": 5,
                                   "drums": DRUM_CHANNEL})
#: MIDI pitch ranges per accompanying role.
RANGES = types.MappingProxyType({"counter": (50, 74), "bass": (28, 52), "chords": (50, 74), "pad": (52, 79),
                                 "arp": (60, 86)})
#: Melody density multipliers per kind of section.
DENSITY = types.MappingProxyType({"intro": 0.6, "outro": 0.6, "coda": 0.5, "break": 0.5, "verse": 0.9, "bridge": 0.8,
           "chorus": 1.1, "drop": 1.15, "prechorus": 1.0})
_BENDY = frozenset({27, 29, 30, 80, 81, 84, 87, 22, 65, 66})
_VIBRATO = frozenset({40, 41, 42, 52, 53, 54, 56, 57, 60, 64, 68, 69, 71, 73, 74, 75, 85, 110})
_LEVELS = types.MappingProxyType({"lead": (100, 120), "counter": (70, 92), "bass": (92, 112), "chords": (75, 98),
                                  "pad": (58, 85),
           "arp": (65, 90), "drums": (96, 118)})


def build_parts(rng: random.Random, style, ident, secs, harmony, chords, keys, total_beats: float) -> tuple[Part, ...]:
    """All parts of a piece (see the module docstring); ``ident`` is ``compose.Identity``."""
    flags = form.arrangement(rng, secs, {r: ident.program(r) is not None for r in form.ROLES})
    written = {"lead": _lead(rng, style, ident, secs, flags["lead"], harmony, keys)}
    written["counter"] = _counter(rng, ident, secs, flags, harmony, keys, written["lead"])
    for role in ("bass", "chords", "pad", "arp"):
        written[role] = _accompaniment(role, style, ident, secs, flags[role], chords, keys)
    if ident.program("drums") is not None:
        plan = drums.plan_drums(random.Random(f"{ident.salt}:drums"), ident.groove, ident.meter)
        written["drums"] = drums.drum_notes(rng, plan, secs, flags["drums"], ident.bar_beats)
    parts = []
    for role, notes in written.items():
        program = ident.program(role)
        if program is None or not notes:
            continue
        notes = _perform(rng, style, ident, secs, notes, total_beats, role == "drums", keys)
        low, high = _LEVELS[role]
        pan = 64 if role in ("lead", "bass", "drums") else rng.randrange(28, 100)
        chorus = rng.randrange(20, 80) if role in ("pad", "chords") and rng.random() < 0.6 else rng.randrange(0, 25)
        reverb = max(0, min(127, ident.reverb + rng.randrange(-15, 16) - (20 if role in ("bass", "drums") else 0)))
        parts.append(Part(role, role, program, CHANNELS[role], tuple(notes),
                          _controls(rng, ident, role, program, notes, total_beats, secs), rng.randrange(low, high),
                          pan, reverb, chorus))
    return tuple(parts)


def _line_spec(ident, low_pitch: int, high_pitch: int, density: float, chromatic: float) -> melody.LineSpec:
    low = theory.pitch_degree(low_pitch, ident.tonic, ident.mode) + 1
    high = theory.pitch_degree(high_pitch, ident.tonic, ident.mode)
    penta = theory.PENTATONIC[ident.mode] if ident.pentatonic else None
    return melody.LineSpec(low, max(high, low + 7), density, penta, chromatic, ident.legato, ident.mode)


def _section_key(keys: tuple[KeySpan, ...], beat: float) -> KeySpan:
    return [k for k in keys if k.beat <= beat + 1e-9][-1]


def _realise(mel: list[melody.MelNote], start: float, key: KeySpan, energy: float) -> list[Note]:
    """Scale-degree notes at section ``start`` as MIDI notes in ``key``."""
    return [Note(start + m.start, m.duration, theory.degree_pitch(m.degree, key.tonic, key.mode) + m.alter,
                 velocity(m.level, energy), chromatic=m.alter != 0) for m in mel]


def _lead(rng, style, ident, secs, active, harmony, keys) -> list[Note]:
    """The tune: one melody per kind of section, ornamented on returns; solos are through-composed."""
    spec = _line_spec(ident, *style.melody_range, style.density, style.chromatic)
    motif_beats = ident.motif_bars * ident.bar_beats
    cache: dict[str, list[melody.MelNote]] = {}
    seen: Counter = Counter()
    out: list[Note] = []
    for sec, on in zip(secs, active):
        if not on:
            continue
        length = sec.bars * ident.bar_beats
        if sec.name == "solo":
            solo = replace(spec, density=spec.density * 1.4, low=spec.low - 2, high=spec.high + 3)
            mel = melody.write_line(rng, solo, harmony[sec.name], length, motif_beats, repeat=False)
        else:
            if sec.name not in cache:
                dense = replace(spec, density=spec.density * DENSITY.get(sec.name, 1.0))
                cache[sec.name] = melody.write_line(rng, dense, harmony[sec.name], length, motif_beats)
            mel = cache[sec.name] if seen[sec.name] == 0 else melody.ornament(rng, cache[sec.name], 0.15)
        seen[sec.name] += 1
        start = sec.start_bar * ident.bar_beats
        out += _realise(mel, start, _section_key(keys, start), sec.energy)
    return out


def _counter(rng, ident, secs, flags, harmony, keys, lead: list[Note]) -> list[Note]:
    """A second line: diatonic thirds under the lead, or long guide tones (3rds and 7ths)."""
    spec = _line_spec(ident, *RANGES["counter"], 0.5, 0.0)
    out: list[Note] = []
    cache: dict[str, list[melody.MelNote]] = {}
    for i, sec in enumerate(secs):
        if not flags["counter"][i]:
            continue
        start = sec.start_bar * ident.bar_beats
        end = start + sec.bars * ident.bar_beats
        key = _section_key(keys, start)
        if ident.counter_kind == "thirds" and flags["lead"][i]:
            for n in lead:
                if start <= n.start < end and not n.chromatic:
                    d = theory.pitch_degree(n.pitch, key.tonic, key.mode) - 2
                    out.append(replace(n, pitch=theory.degree_pitch(d, key.tonic, key.mode),
                                       velocity=max(1, int(n.velocity * 0.8))))
            continue
        if sec.name not in cache:
            cache[sec.name] = melody.guide_line(random.Random(f"{ident.salt}:counter:{sec.name}"),
                                                harmony[sec.name], spec, rng.choice((1, 2)))
        out += _realise(cache[sec.name], start, key, sec.energy * 0.85)
    return out


def _accompaniment(role: str, style, ident, secs, active, chords, keys) -> list[Note]:
    """Bass, chords, pad or arpeggio notes, identical on every return of a kind of section."""
    out: list[Note] = []
    low, high = RANGES[role]
    if role == "chords" and ident.comping in ("power", "power8", "chug"):
        low, high = 40, 64
    if role == "bass" and ident.bass_line == "808":
        low, high = 24, 45
    for sec, on in zip(secs, active):
        if not on:
            continue
        start = sec.start_bar * ident.bar_beats
        end = start + sec.bars * ident.bar_beats
        spans = [c for c in chords if start - 1e-9 <= c.start < end - 1e-9]
        key = _section_key(keys, start)
        ctx = accomp.Ctx(start, end, ident.bar_beats, sec.energy, key.tonic, key.mode, low, high)
        sub = random.Random(f"{ident.salt}:{role}:{sec.name}")
        if role == "bass":
            out += accomp.bass_notes(sub, ident.bass_line, spans, ctx)
        elif role == "chords":
            out += accomp.comp_notes(sub, ident.comping, spans, ctx, size=sub.choice((3, 4, 4)))
        elif role == "pad":
            out += accomp.comp_notes(sub, "block", spans, ctx, size=4)
        else:
            out += accomp.arp_notes(sub, ident.arp_kind, spans, ctx)
    return out


def _perform(rng, style, ident, secs, notes: list[Note], total_beats: float, is_drums: bool,
             keys: tuple[KeySpan, ...]) -> list[Note]:
    """Dynamics, swing, humanisation, clipping to the piece and no overlapping same-pitch notes.

    Jitter never moves a note back across a key change, so every note keeps the key it was written in.
    """
    ramps = [(s.start_bar * ident.bar_beats, s.bars * ident.bar_beats) for s in secs
             if s.name in ("build", "prechorus")]
    jitter = style.humanize * (0.5 if is_drums else 1.0)
    out = []
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        gain = 1.0
        for start, length in ramps:
            if start <= n.start < start + length:
                gain = 0.8 + 0.3 * (n.start - start) / length
        swing = ident.swing if ident.meter[1] == 4 else 0.0
        onset = _swing(n.start, swing, ident.swing_unit)
        end = _swing(n.start + n.duration, swing, ident.swing_unit)
        if jitter:
            onset = max(0.0, onset + rng.gauss(0.0, jitter))
            onset = max([onset] + [k.beat for k in keys if n.start >= k.beat > onset])
        vel = int(round(n.velocity * gain * rng.uniform(0.95, 1.05)))
        if onset < total_beats - 1e-6:
            out.append(replace(n, start=onset, duration=max(0.05, min(end, total_beats) - onset),
                               velocity=max(1, min(127, vel))))
    return _no_overlaps(out)


def _swing(beat: float, amount: float, unit: float) -> float:
    """Delay the off-beat subdivision by ``amount`` of it, warping time piecewise-linearly inside each ``unit``."""
    if amount <= 0:
        return beat
    cell, frac = divmod(beat, unit)
    half, mid = unit / 2, unit / 2 * (1 + amount)
    warped = frac / half * mid if frac < half else mid + (frac - half) / half * (unit - mid)
    return cell * unit + warped


def _no_overlaps(notes: list[Note]) -> list[Note]:
    """End each note before the next note of the same pitch starts (MIDI cannot stack them)."""
    last: dict[int, int] = {}
    out = list(notes)
    for i, n in enumerate(out):
        j = last.get(n.pitch)
        if j is not None and out[j].start + out[j].duration > n.start - 1e-3:
            prev = out[j]
            out[j] = replace(prev, duration=max(0.02, n.start - prev.start - 1e-3))
        last[n.pitch] = i
    return [n for n in out if n.duration > 0.015]


def _controls(rng, ident, role: str, program: int, notes: list[Note], total_beats: float, secs) -> tuple[Control, ...]:
    """Controller curves: pad swells, vibrato on held notes, bends into lead notes, a fade-out."""
    fade_start = total_beats
    if ident.fade_out and secs[-1].name in ("outro", "coda"):
        fade_start = max(secs[-1].start_bar * ident.bar_beats, total_beats - 4 * ident.bar_beats)
    out: list[Control] = [Control(0.0, CC_EXPRESSION, 127)]
    if role == "pad" or (role == "chords" and ident.comping == "swell"):
        starts = sorted({round(n.start, 3) for n in notes})
        for s, e in zip(starts, starts[1:] + [total_beats]):
            out += [Control(s + (e - s) * k / 6, CC_EXPRESSION, int(70 + 50 * min(k, 6 - k) / 3))
                    for k in range(6) if s + (e - s) * k / 6 < fade_start]
    if role == "lead":
        for n in notes:
            if n.duration >= 1.0 and program in _VIBRATO and rng.random() < 0.6:
                out += [Control(n.start + 0.4, CC_MODULATION, rng.randrange(30, 80)),
                        Control(n.start + n.duration, CC_MODULATION, 0)]
            elif n.duration >= 1.0 and program in _BENDY and rng.random() < 0.2:
                out += [Control(n.start + 0.12 * k / 4, PITCH_BEND, int(-4096 * (1 - k / 4))) for k in range(5)]
    if fade_start < total_beats:
        # Expression is multiplied into every note's loudness, so the fade overrides the swells.
        steps = 16
        out += [Control(fade_start + (total_beats - fade_start) * k / steps, CC_EXPRESSION,
                        int(127 - 100 * k / steps)) for k in range(steps + 1)]
    return tuple(sorted(out, key=lambda c: c.beat))
