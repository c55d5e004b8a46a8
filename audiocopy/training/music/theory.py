"""Music theory for the procedural composer: modes, chords, voicings, drums.

Place in the pipeline: a helper of ``compose``, ``melody``, ``accomp`` and
``drums`` (offline training-data generation only).

Ideas. Pitches are thought of in *scale-degree space*: an integer ``d``
counts scale steps from the tonic of the key in force, so a melody or chord
written once as degrees can be realised in any key (a final-chorus key change
costs nothing) and stays in the declared scale by construction. Only notes
explicitly marked chromatic (passing tones, walking-bass approaches) leave it.
Chords are stacked thirds *within the mode* (diatonic harmony), optionally
with a seventh, a suspension or an added ninth, and voiced near the previous
voicing so that accompaniment moves smoothly, as players do.
"""
from __future__ import annotations

import types
from dataclasses import dataclass

#: Heptatonic modes as semitone offsets from the tonic. Harmonic minor gives
#: the raised leading tone that minor-key dominants need (latin, metal, classical).
MODES = types.MappingProxyType({
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
})

#: Degrees (0-based, within the octave) kept by a pentatonic melody: the
#: major-type modes drop the 4th and 7th, the minor-type ones the 2nd and 6th.
PENTATONIC = types.MappingProxyType({
    "major": (0, 1, 2, 4, 5), "lydian": (0, 1, 2, 4, 5), "mixolydian": (0, 1, 2, 4, 5),
    "minor": (0, 2, 3, 4, 6), "dorian": (0, 2, 3, 4, 6), "phrygian": (0, 2, 3, 4, 6),
    "harmonic_minor": (0, 2, 3, 4, 5),
})

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: General MIDI percussion keys (channel 10) under short names.
DRUMS = types.MappingProxyType({
    "kick": 36, "kick2": 35, "rim": 37, "snare": 38, "clap": 39, "esnare": 40,
    "tom_lo": 41, "hat": 42, "tom_mlo": 43, "pedal": 44, "tom_mid": 45, "ohat": 46,
    "tom_mhi": 47, "tom_hi": 48, "crash": 49, "tom_top": 50, "ride": 51, "china": 52,
    "bell": 53, "tamb": 54, "splash": 55, "cowbell": 56, "crash2": 57,
    "bongo_hi": 60, "bongo_lo": 61, "conga_mute": 62, "conga_hi": 63, "conga_lo": 64,
    "timbale_hi": 65, "timbale_lo": 66, "cabasa": 69, "shaker": 70, "guiro": 73,
    "claves": 75, "block_hi": 76, "block_lo": 77, "triangle": 81,
})


def scale(mode: str) -> tuple[int, ...]:
    """Semitone offsets of ``mode``'s seven degrees (raises KeyError for an unknown mode)."""
    return MODES[mode]


def scale_pcs(tonic: int, mode: str) -> frozenset[int]:
    """Pitch classes (0 = C .. 11 = B) of the scale of ``tonic`` (pitch class) in ``mode``."""
    return frozenset((tonic + s) % 12 for s in MODES[mode])


def degree_pitch(degree: int, tonic: int, mode: str, base_octave: int = 4) -> int:
    """MIDI pitch of scale degree ``degree`` (0 = tonic of octave ``base_octave``, may be negative)."""
    steps = MODES[mode]
    octave, idx = divmod(degree, 7)
    return 12 * (base_octave + 1 + octave) + tonic + steps[idx]


def pitch_degree(pitch: int, tonic: int, mode: str, base_octave: int = 4) -> int:
    """The scale degree nearest to ``pitch`` at or below it (inverse of ``degree_pitch`` for scale tones)."""
    guess = int(round((pitch - 12 * (base_octave + 1) - tonic) * 7 / 12))
    while degree_pitch(guess, tonic, mode, base_octave) > pitch:
        guess -= 1
    while degree_pitch(guess + 1, tonic, mode, base_octave) <= pitch:
        guess += 1
    return guess


@dataclass(frozen=True)
class ChordSpec:
    """A diatonic chord: root degree (0-6) plus colour.

    ``seventh`` stacks a fourth third; ``sus`` replaces the third by the 2nd
    (2) or 4th (4) degree above the root; ``add9`` adds the ninth; ``power``
    keeps only root and fifth (distorted guitars).
    """

    degree: int
    seventh: bool = False
    sus: int = 0
    add9: bool = False
    power: bool = False

    def degrees(self) -> tuple[int, ...]:
        """Chord members as scale degrees above the tonic (root first, ascending)."""
        d = self.degree
        if self.power:
            return (d, d + 4)
        third = {0: d + 2, 2: d + 1, 4: d + 3}[self.sus]
        members = [d, third, d + 4]
        if self.seventh:
            members.append(d + 6)
        if self.add9:
            members.append(d + 8)
        return tuple(members)


def chord_pcs(chord: ChordSpec, tonic: int, mode: str) -> tuple[int, ...]:
    """Pitch classes of ``chord`` in the key (root first)."""
    return tuple(degree_pitch(d, tonic, mode) % 12 for d in chord.degrees())


def voice_chord(pcs: tuple[int, ...], previous: tuple[int, ...], low: int, high: int,
                size: int) -> tuple[int, ...]:
    """Voice pitch classes ``pcs`` as ``size`` MIDI pitches within ``[low, high]``.

    Every inversion/spacing candidate is built from the pitch classes in close
    position; the one whose mean pitch is nearest the previous voicing's wins,
    which gives the smooth voice leading of a real keyboard or guitar part.
    """
    target = sum(previous) / len(previous) if previous else (low + high) / 2
    best: tuple[int, ...] = ()
    best_cost = float("inf")
    order = list(pcs) * (size // len(pcs) + 1)
    for rot in range(len(pcs)):
        chosen = order[rot:rot + size]
        for start in range(low, min(high, low + 12) + 1):
            if start % 12 != chosen[0]:
                continue
            notes = [start]
            for pc in chosen[1:]:
                nxt = notes[-1] + 1
                while nxt % 12 != pc:
                    nxt += 1
                notes.append(nxt)
            if notes[-1] > high:
                continue
            cost = abs(sum(notes) / len(notes) - target)
            if cost < best_cost:
                best, best_cost = tuple(notes), cost
    return best or tuple(sorted(low + (pc - low) % 12 for pc in pcs[:size]))


def nearest_pitch(pc: int, target: float, low: int, high: int) -> int:
    """The MIDI pitch of pitch class ``pc`` nearest ``target`` inside ``[low, high]``."""
    candidates = [p for p in range(low, high + 1) if p % 12 == pc]
    if not candidates:
        return low + (pc - low) % 12
    return min(candidates, key=lambda p: abs(p - target))


def key_name(tonic: int, mode: str) -> str:
    """Readable key, e.g. ``"F# dorian"``."""
    return f"{NOTE_NAMES[tonic % 12]} {mode}"
