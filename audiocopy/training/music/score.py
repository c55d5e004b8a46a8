"""The score: what a composition is, independent of how it is rendered.

Place in the pipeline: ``compose`` builds a ``Composition``; ``midi`` turns
it into a Standard MIDI File for ``render``'s fluidsynth path and ``synth``
plays it directly with NumPy voices (offline training-data generation only).

Ideas. Time is in *beats* (quarter notes) from the start of the piece, as in
a MIDI file, so swing, humanisation and tempo changes never touch the note
grid logic; ``Composition.seconds_at`` maps beats to seconds through the
piecewise-constant tempo map. Every part is one instrument on one MIDI
channel with its own mixer settings, controller curves (volume, expression,
pitch bend) and notes. Keys are a timeline too, so a final-chorus
modulation is just another ``KeySpan``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from . import theory

#: Controller numbers used by the composer (MIDI 1.0 control changes).
CC_VOLUME, CC_PAN, CC_EXPRESSION, CC_REVERB, CC_CHORUS, CC_MODULATION = 7, 10, 11, 91, 93, 1
#: Pseudo controller number for a pitch-bend event (value -8192..8191).
PITCH_BEND = -1
DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Note:
    """One note: ``start`` and ``duration`` in beats, MIDI ``pitch`` and ``velocity`` (1-127).

    ``chromatic`` marks a deliberate out-of-scale tone (a passing or approach
    note); every unmarked pitched note is in the scale of the key in force.
    """

    start: float
    duration: float
    pitch: int
    velocity: int
    chromatic: bool = False


@dataclass(frozen=True)
class Control:
    """A controller change at ``beat``: ``number`` is a CC number or ``PITCH_BEND``."""

    beat: float
    number: int
    value: int


@dataclass(frozen=True)
class Part:
    """One instrument on one channel: GM ``program`` (drum kit number on channel 9).

    ``role`` is what the part does (lead, counter, bass, chords, pad, arp,
    drums, perc); ``volume``, ``pan``, ``reverb`` and ``chorus`` are the
    initial CC 7/10/91/93 values (0-127).
    """

    name: str
    role: str
    program: int
    channel: int
    notes: tuple[Note, ...]
    controls: tuple[Control, ...] = ()
    volume: int = 100
    pan: int = 64
    reverb: int = 40
    chorus: int = 0

    @property
    def is_drums(self) -> bool:
        return self.channel == DRUM_CHANNEL


@dataclass(frozen=True)
class Section:
    """A stretch of the form: ``name`` (intro, verse, ...), first bar, length in bars, energy 0-1."""

    name: str
    start_bar: int
    bars: int
    energy: float


@dataclass(frozen=True)
class KeySpan:
    """The key from ``beat`` on: tonic pitch class and mode."""

    beat: float
    tonic: int
    mode: str


@dataclass(frozen=True)
class ChordSpan:
    """A chord sounding from ``start`` for ``duration`` beats, realised in the key in force."""

    start: float
    duration: float
    chord: theory.ChordSpec
    pcs: tuple[int, ...]


@dataclass(frozen=True)
class Composition:
    """A complete piece: metadata, form, harmony and parts.

    ``tempo_map`` is ``((beat, bpm), ...)`` starting at beat 0, each tempo
    holding until the next; ``meter`` is ``(numerator, denominator)``;
    ``total_beats`` is the end of the last bar.
    """

    style: str
    seed: int
    meter: tuple[int, int]
    tempo_map: tuple[tuple[float, float], ...]
    keys: tuple[KeySpan, ...]
    sections: tuple[Section, ...]
    chords: tuple[ChordSpan, ...]
    parts: tuple[Part, ...]
    total_beats: float
    _tempo_seconds: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        starts = [0.0]
        for (b0, bpm), (b1, _) in zip(self.tempo_map, self.tempo_map[1:]):
            starts.append(starts[-1] + (b1 - b0) * 60.0 / bpm)
        object.__setattr__(self, "_tempo_seconds", tuple(starts))

    @property
    def tempo(self) -> float:
        """The opening tempo in beats (quarter notes) per minute."""
        return self.tempo_map[0][1]

    @property
    def beats_per_bar(self) -> float:
        num, den = self.meter
        return num * 4.0 / den

    @property
    def duration_s(self) -> float:
        """Length of the score in seconds (without release tails)."""
        return self.seconds_at(self.total_beats)

    def seconds_at(self, beat: float) -> float:
        """Seconds from the start at ``beat`` (beats may be fractional)."""
        i = bisect.bisect_right([b for b, _ in self.tempo_map], beat) - 1
        b0, bpm = self.tempo_map[max(i, 0)]
        return self._tempo_seconds[max(i, 0)] + (beat - b0) * 60.0 / bpm

    def key_at(self, beat: float) -> KeySpan:
        """The key in force at ``beat``."""
        i = bisect.bisect_right([k.beat for k in self.keys], beat + 1e-9) - 1
        return self.keys[max(i, 0)]

    @property
    def key(self) -> str:
        """The opening key, e.g. ``"A minor"``."""
        return theory.key_name(self.keys[0].tonic, self.keys[0].mode)

    def part(self, role: str) -> Part | None:
        """The first part with ``role``, or None."""
        return next((p for p in self.parts if p.role == role), None)


def velocity(level: float, energy: float) -> int:
    """MIDI velocity for a note of relative ``level`` (about 0.3-1.1) in a passage of ``energy`` (0-1).

    Quiet sections still reach about 55, loud ones about 125: real mixes
    compress dynamics, and velocity also changes GM timbres (brighter samples).
    """
    return max(1, min(127, int(round(level * (55 + 70 * energy)))))
