"""Styles: the habits of a genre, as data the composer draws from.

Place in the pipeline: ``compose`` picks one value from each of a ``Style``'s
option lists with the track's seeded random generator (offline
training-data generation only).

Ideas. A style is *not* a template: it is a bag of plausible choices (tempo
range, meters, modes, chord progressions and harmonic rhythm, song forms,
General MIDI programs per role, accompaniment and bass patterns, drum kits
and grooves, swing, melodic density). Each track draws its own combination,
so two pop tracks differ in tempo, key, progression, instruments, groove,
form and melody, the way two real pop songs do. The option lists repeat an
entry to weight it. GM program numbers are 0-based (0 = acoustic grand);
drum kits are GM/GS kit programs on channel 10 (0 standard, 8 room, 16
power, 24 electronic, 25 TR-808, 32 jazz, 40 brush, 48 orchestra).
"""
from __future__ import annotations

import types
from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    """A genre's options. Tuples are choices (repeat an entry to weight it).

    Args (fields):
        name: short id used in file names and the manifest.
        tempo: (low, high) beats per minute.
        meters: (numerator, denominator) choices.
        modes: mode names of ``theory.MODES``.
        progressions: chord loops as root scale degrees 0-6.
        harmonic_rhythm: chords per bar choices (0.5 = one chord every two bars).
        forms: section-name sequences, intro/outro included.
        lead, counter, bass, chords, pad, arp: GM programs per role ('' role absent if empty).
        comping, bass_lines, arps: pattern names known to ``accomp``.
        kits, grooves: drum kit programs and groove names known to ``drums``.
        drum_prob: probability that a track has drums at all.
        swing: (low, high) delay of off-beat eighths/16ths as a fraction of the subdivision.
        density: mean melody notes per beat.
        humanize: timing jitter (standard deviation, beats).
        rubato: relative tempo drift per bar (standard deviation).
        sevenths, add9, sus, power: probabilities of chord colours.
        key_change: probability of a modulation up for the last choruses.
        chromatic: probability per eligible note of a chromatic passing tone.
        pentatonic: probability that the melody keeps to a pentatonic subset.
        melody_range: (low, high) MIDI pitches of the lead.
        solo_instrument: every pitched role plays the lead's program (piano solo).
    """

    name: str
    tempo: tuple[float, float]
    meters: tuple[tuple[int, int], ...]
    modes: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]
    harmonic_rhythm: tuple[float, ...]
    forms: tuple[tuple[str, ...], ...]
    lead: tuple[int, ...]
    counter: tuple[int, ...]
    bass: tuple[int, ...]
    chords: tuple[int, ...]
    pad: tuple[int, ...]
    arp: tuple[int, ...]
    comping: tuple[str, ...]
    bass_lines: tuple[str, ...]
    arps: tuple[str, ...] = ("up", "updown", "broken")
    kits: tuple[int, ...] = (0,)
    grooves: tuple[str, ...] = ("pop",)
    drum_prob: float = 1.0
    swing: tuple[float, float] = (0.0, 0.0)
    density: float = 1.5
    humanize: float = 0.01
    rubato: float = 0.0
    sevenths: float = 0.1
    add9: float = 0.0
    sus: float = 0.05
    power: float = 0.0
    key_change: float = 0.1
    chromatic: float = 0.03
    pentatonic: float = 0.3
    melody_range: tuple[int, int] = (60, 84)
    solo_instrument: bool = False


_SONG = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")
_SONG_PRE = ("intro", "verse", "prechorus", "chorus", "verse", "prechorus", "chorus", "bridge",
             "chorus", "chorus", "outro")
_SONG_SOLO = ("intro", "verse", "chorus", "verse", "chorus", "solo", "chorus", "outro")
_ABA = ("intro", "A", "B", "A", "coda")

_STYLES = (
    Style("pop", (86, 128), ((4, 4),), ("major", "major", "major", "minor", "mixolydian"),
          ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 5, 4), (3, 0, 4, 5), (0, 3, 0, 4),
           (0, 2, 3, 4)),
          (1, 1, 2, 0.5), (_SONG, _SONG_PRE, ("intro", "verse", "verse", "chorus", "verse", "chorus",
                                              "chorus", "outro")),
          lead=(85, 81, 73, 65, 54, 11, 27, 22, 80, 4), counter=(48, 11, 5, 89, 61, 73),
          bass=(33, 34, 38, 35), chords=(0, 4, 25, 27, 5, 16, 24), pad=(89, 48, 50, 88, 91),
          arp=(5, 8, 10, 108, 46, 27), comping=("block", "strum", "broken", "offbeat", "strum"),
          bass_lines=("root8", "rootfifth", "synco", "root"), kits=(0, 8, 24, 16),
          grooves=("pop", "rock", "pop2"), swing=(0.0, 0.08), density=1.6, humanize=0.012,
          key_change=0.35, pentatonic=0.4, melody_range=(60, 81)),
    Style("rock", (100, 160), ((4, 4), (4, 4), (4, 4), (3, 4)), ("major", "mixolydian", "minor", "dorian"),
          ((0, 6, 3, 0), (0, 3, 4, 3), (5, 3, 0, 4), (0, 4, 3, 3), (0, 2, 3, 4), (0, 3, 0, 4)),
          (1, 2, 0.5), (_SONG_SOLO, ("intro", "verse", "verse", "chorus", "verse", "chorus", "bridge",
                                     "solo", "chorus", "chorus", "outro")),
          lead=(29, 30, 81, 84, 65, 66, 18), counter=(18, 29, 61, 16), bass=(33, 34, 35, 38),
          chords=(29, 30, 27, 25, 18, 0), pad=(18, 16, 48, 89), arp=(27, 25, 28, 0),
          comping=("power", "strum", "power8", "block"), bass_lines=("root8", "rootfifth", "root"),
          kits=(0, 16, 8), grooves=("rock", "rock2", "halftime", "shuffle"), swing=(0.0, 0.05),
          density=1.5, sevenths=0.05, power=0.6, key_change=0.15, chromatic=0.05, pentatonic=0.6,
          melody_range=(55, 79)),
    Style("electronic", (118, 140), ((4, 4),), ("minor", "minor", "dorian", "phrygian", "major"),
          ((0, 5, 2, 6), (0, 3, 4, 4), (5, 3, 0, 4), (0, 5, 3, 4), (0, 6, 5, 6)),
          (0.5, 1), (("intro", "build", "drop", "break", "build", "drop", "outro"),
                     ("intro", "verse", "build", "drop", "break", "drop", "outro")),
          lead=(81, 80, 87, 84, 90, 62, 86, 98), counter=(81, 90, 62, 5), bass=(38, 39, 87, 81),
          chords=(90, 62, 89, 5, 50), pad=(88, 89, 94, 95, 50, 91, 99), arp=(81, 80, 90, 98, 84, 38),
          comping=("offbeat", "block", "gate"), bass_lines=("octave", "offbeat8", "root8", "synco"),
          arps=("up", "updown", "broken", "pulse"), kits=(24, 25, 0), grooves=("four", "four2", "breakbeat"),
          swing=(0.0, 0.04), density=2.0, humanize=0.0, sevenths=0.3, key_change=0.1, chromatic=0.0,
          melody_range=(62, 86)),
    Style("jazz", (90, 200), ((4, 4), (4, 4), (3, 4)), ("major", "dorian", "minor", "mixolydian"),
          ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4), (1, 4, 0, 5)),
          (1, 2), (("intro", "head", "head", "solo", "solo", "head", "outro"),
                   ("head", "head", "solo", "head", "outro"),
                   ("intro", "A", "A", "B", "A", "solo", "A", "outro")),
          lead=(65, 66, 56, 59, 73, 26, 11, 64, 57), counter=(57, 11, 26, 65), bass=(32, 33, 35),
          chords=(0, 4, 26, 11, 1), pad=(48, 49, 61), arp=(), comping=("comp", "comp", "block"),
          bass_lines=("walking", "walking", "rootfifth"), kits=(32, 40, 0),
          grooves=("swing", "swing2"), swing=(0.25, 0.33), density=1.8, humanize=0.02,
          sevenths=0.95, add9=0.3, key_change=0.1, chromatic=0.12, pentatonic=0.1, melody_range=(58, 82)),
    Style("orchestral", (60, 110), ((4, 4), (3, 4), (4, 4), (6, 8)),
          ("major", "minor", "harmonic_minor", "lydian", "dorian"),
          ((0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 4, 5, 2, 3, 0, 3, 4), (0, 3, 6, 2, 5, 1, 4, 0)),
          (1, 0.5, 2), (_ABA, ("intro", "A", "A", "B", "A", "B", "coda"), ("intro", "A", "B", "C", "A", "coda")),
          lead=(40, 73, 60, 68, 56, 71, 52), counter=(42, 41, 60, 70, 57, 71), bass=(43, 42, 58, 70),
          chords=(48, 49, 44, 61, 52, 46), pad=(48, 49, 52, 89), arp=(46, 45, 9, 8, 73),
          comping=("block", "swell", "broken", "tremolo"), bass_lines=("root", "pedal", "rootfifth"),
          kits=(48, 0), grooves=("orch", "march"), drum_prob=0.4, density=1.0, humanize=0.015,
          rubato=0.03, sevenths=0.15, sus=0.15, key_change=0.25, chromatic=0.05, pentatonic=0.1,
          melody_range=(62, 88)),
    Style("ambient", (60, 90), ((4, 4), (3, 4)), ("lydian", "major", "dorian", "minor", "mixolydian"),
          ((0, 3), (0, 5, 3, 4), (0, 1), (0, 6, 3), (0, 4, 5, 3)),
          (0.5, 0.25, 0.5), (("intro", "A", "B", "A", "outro"), ("intro", "A", "B", "B", "A", "outro")),
          lead=(11, 88, 98, 92, 73, 108, 46, 10), counter=(89, 91, 52, 94), bass=(38, 89, 42),
          chords=(88, 89, 92, 94, 95, 50, 4), pad=(89, 91, 94, 95, 99, 101, 52),
          arp=(98, 11, 108, 8, 112, 46, 5), comping=("swell", "block", "broken"), bass_lines=("pedal", "root"),
          arps=("up", "broken", "pulse"), kits=(24, 0, 25), grooves=("ambient", "halftime"), drum_prob=0.35,
          density=0.6, humanize=0.02, rubato=0.02, sevenths=0.5, add9=0.5, key_change=0.1, chromatic=0.0,
          pentatonic=0.6, melody_range=(60, 88)),
    Style("chiptune", (120, 180), ((4, 4), (4, 4), (3, 4)), ("major", "minor", "dorian", "mixolydian"),
          ((0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 0), (0, 4, 5, 3), (0, 6, 5, 6)),
          (1, 0.5, 2), (("intro", "A", "B", "A", "B", "C", "A", "outro"), _SONG),
          lead=(80, 80, 81, 82, 83, 87), counter=(80, 81, 84), bass=(38, 80, 81, 39), chords=(80, 81),
          pad=(), arp=(80, 81, 80), comping=("chiparp", "offbeat"), bass_lines=("octave", "root8"),
          arps=("up", "updown", "pulse"), kits=(24, 25, 0), grooves=("chip", "four", "pop"), density=2.2,
          humanize=0.0, key_change=0.3, chromatic=0.06, pentatonic=0.2, melody_range=(64, 91)),
    Style("folk", (80, 140), ((4, 4), (3, 4), (6, 8), (4, 4)), ("major", "major", "mixolydian", "dorian", "minor"),
          ((0, 3, 0, 4), (0, 4, 5, 3), (0, 3, 4, 0), (0, 6, 3, 0), (5, 3, 0, 4)),
          (1, 0.5), (_SONG_SOLO, ("intro", "verse", "verse", "chorus", "verse", "chorus", "outro")),
          lead=(110, 73, 22, 74, 21, 71, 105, 40), counter=(110, 21, 24, 46), bass=(32, 33, 43),
          chords=(25, 24, 105, 15, 21, 46), pad=(48, 21, 19), arp=(25, 24, 46, 105, 15),
          comping=("strum", "broken", "fingerpick"), bass_lines=("rootfifth", "root"), kits=(0, 40, 8),
          grooves=("folk", "folk2"), drum_prob=0.6, swing=(0.0, 0.15), density=1.4, humanize=0.02,
          sevenths=0.05, sus=0.1, key_change=0.2, chromatic=0.02, pentatonic=0.5),
    Style("latin", (90, 130), ((4, 4),), ("minor", "harmonic_minor", "major", "dorian"),
          ((0, 3, 4, 0), (1, 4, 0, 0), (0, 3, 6, 2), (0, 4, 0, 4), (0, 3, 4, 3)),
          (1, 0.5, 2), (_SONG_SOLO, ("intro", "A", "B", "A", "B", "solo", "A", "outro")),
          lead=(56, 73, 65, 24, 11, 21, 57, 64), counter=(57, 61, 11, 24), bass=(32, 33, 35),
          chords=(0, 24, 4, 26, 21), pad=(48, 61), arp=(24, 0, 12, 114),
          comping=("montuno", "bossa", "comp"), bass_lines=("tumbao", "rootfifth", "synco"), kits=(0, 8, 40),
          grooves=("bossa", "salsa"), swing=(0.0, 0.05), density=1.7, humanize=0.015, sevenths=0.6,
          key_change=0.15, chromatic=0.06, pentatonic=0.2),
    Style("hiphop", (70, 100), ((4, 4),), ("minor", "dorian", "phrygian", "minor", "harmonic_minor"),
          ((0, 5), (0, 3), (0, 5, 3, 4), (0, 6, 5, 6), (0, 2, 3, 4)),
          (0.5, 1), (("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"),
                     ("intro", "verse", "verse", "chorus", "verse", "chorus", "outro")),
          lead=(0, 4, 73, 48, 11, 65, 81, 27, 56), counter=(48, 61, 4, 98), bass=(38, 39, 33, 87),
          chords=(4, 0, 5, 89, 48, 11), pad=(89, 88, 48, 91, 50), arp=(11, 98, 10, 4),
          comping=("stab", "block", "offbeat", "broken"), bass_lines=("808", "synco", "root"),
          kits=(25, 24, 0), grooves=("boombap", "trap", "boombap2"), swing=(0.05, 0.2), density=0.9,
          humanize=0.01, sevenths=0.7, add9=0.2, key_change=0.05, pentatonic=0.5),
    Style("piano", (60, 130), ((4, 4), (3, 4), (6, 8), (4, 4)),
          ("major", "minor", "harmonic_minor", "dorian", "lydian"),
          ((0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 4, 5, 2, 3, 0, 3, 4), (1, 4, 0, 5), (0, 2, 3, 4)),
          (1, 0.5, 2), (_ABA, ("A", "A", "B", "A", "coda"), ("intro", "A", "B", "A", "B", "A", "coda")),
          lead=(0, 0, 0, 1, 2, 4, 5, 3, 6), counter=(), bass=(0,), chords=(0,), pad=(), arp=(),
          comping=("alberti", "broken", "stride", "block", "arpeggio"), bass_lines=("root", "octave", "rootfifth"),
          kits=(), drum_prob=0.0, density=1.6, humanize=0.02, rubato=0.05, sevenths=0.3, add9=0.2,
          key_change=0.2, chromatic=0.08, pentatonic=0.1, melody_range=(64, 91), solo_instrument=True),
    Style("metal", (100, 190), ((4, 4), (4, 4), (3, 4)), ("phrygian", "minor", "harmonic_minor"),
          ((0, 5, 6, 0), (0, 1, 0, 6), (0, 3, 5, 4), (0, 6, 5, 4), (0, 5, 3, 4)),
          (1, 2, 0.5), (("intro", "verse", "chorus", "verse", "chorus", "solo", "bridge", "chorus", "outro"),
                        _SONG_SOLO),
          lead=(30, 29, 81, 84), counter=(30, 29, 48), bass=(34, 33, 38), chords=(30, 29),
          pad=(48, 19, 52, 91), arp=(30, 29), comping=("power8", "chug", "power"), bass_lines=("root8", "root16"),
          kits=(16, 0, 8), grooves=("metal", "double", "halftime"), density=2.0, humanize=0.004,
          sevenths=0.0, power=0.85, key_change=0.1, chromatic=0.08, pentatonic=0.4, melody_range=(52, 79)),
    Style("funk", (92, 118), ((4, 4),), ("dorian", "mixolydian", "minor", "dorian"),
          ((0, 3), (0, 0, 3, 3), (1, 4), (0, 6, 3, 0), (0, 3, 1, 4)),
          (1, 0.5), (_SONG, _SONG_SOLO),
          lead=(65, 56, 61, 66, 62, 81, 17), counter=(61, 62, 56), bass=(36, 37, 33, 38),
          chords=(7, 27, 28, 4, 17), pad=(61, 62, 89, 16), arp=(28, 27, 7),
          comping=("funk16", "stab", "offbeat"), bass_lines=("synco", "octave", "tumbao"), kits=(0, 8, 24),
          grooves=("funk", "funk2"), swing=(0.0, 0.12), density=1.7, humanize=0.008, sevenths=0.8,
          add9=0.3, key_change=0.1, chromatic=0.07, pentatonic=0.5),
    Style("reggae", (68, 92), ((4, 4),), ("major", "minor", "mixolydian", "dorian"),
          ((0, 3), (0, 4, 3, 4), (5, 3, 0, 4), (0, 6, 3, 0), (1, 4)),
          (1, 0.5), (_SONG, ("intro", "verse", "chorus", "verse", "chorus", "chorus", "outro")),
          lead=(56, 65, 73, 18, 16, 22, 11), counter=(56, 57, 16), bass=(33, 32, 38),
          chords=(16, 17, 27, 0, 28), pad=(16, 89, 48), arp=(27, 28),
          comping=("skank", "skank", "offbeat"), bass_lines=("synco", "root"), kits=(0, 8),
          grooves=("onedrop", "steppers"), swing=(0.05, 0.18), density=1.2, humanize=0.012, sevenths=0.2,
          key_change=0.05, chromatic=0.02, pentatonic=0.6),
)

#: Every style by name (read-only).
STYLES = types.MappingProxyType({s.name: s for s in _STYLES})


def style_names() -> tuple[str, ...]:
    """Names of the built-in styles, in a fixed order."""
    return tuple(STYLES)
