"""Programmes of the stream benchmark: a seeded running order of songs, other music and talk, and its truth.

Place in ``tools/bench``: the first step of ``tools/bench_broadcast.py``,
before ``broadcast_render`` turns a plan into audio. Pure: no audio is read
here, only track ids, durations and audible spans, so a plan (and its
truth) is a function of the seed and the tracks, and the tests check it
without a corpus.

What a programme is. A radio hour in miniature: a sequence of items, each
with its place on the stream's clock (``start_s``..``end_s``, seconds from
the first sample):

* ``song``: an excerpt of a catalogue track (20–120 s of audible music, a
  random start inside the track's audible span), unaltered or changed by
  one sox effect: ``speed`` (resampling, pitch and tempo together, ±3–8 %),
  ``tempo`` (time stretch, ±3–8 %) or ``pitch`` (±1–2 semitones); some have
  speech over their intro with the music ducked by 10 dB;
* ``other``: an excerpt (30–120 s) of music that is not in the catalogue
  (the split's *unseen* packages): what a play must never be opened on;
* ``talk``: a presenter alone between two pieces of music (4–12 s).

Joins. Music follows music with an equal-power crossfade of 2–6 s; music
fades out over 1 s before talk, and starts 0.2 s after talk with a 50 ms
fade-in; the last item fades out over 2 s.

Truth. A boundary between two pieces is the midpoint of their fade, so a
song's *audible* span is ``start_s + fade_in_s / 2`` to
``end_s - fade_out_s / 2``; the audible spans of two items never overlap.
``time_scale`` is track seconds per stream second (the speed or tempo
factor; 1 for a pitch shift), ``pitch_semitones`` the pitch change (a speed
change shifts pitch by ``12 log2(factor)``), and ``track_start_s`` /
``track_end_s`` the positions in the track at the audible boundaries.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from .common import BenchError, rng_for

#: Audible length of a catalogue excerpt and of a non-catalogue one (s).
SONG_SECONDS = (20.0, 120.0)
OTHER_SECONDS = (30.0, 120.0)
TALK_SECONDS = (4.0, 12.0)
#: Crossfade between two pieces of music (s).
CROSSFADE_SECONDS = (2.0, 6.0)
FADE_TO_TALK_S = 1.0
FADE_FROM_TALK_S = 0.05
GAP_AFTER_TALK_S = 0.2
FINAL_FADE_S = 2.0
#: Alterations of a song: share of each, and their ranges (fraction, semitones).
EFFECT_SHARES = (("none", 0.4), ("speed", 0.2), ("tempo", 0.2), ("pitch", 0.2))
SCALE_CHANGE = (0.03, 0.08)
PITCH_CHANGE = (1.0, 2.0)
#: Share of songs with a presenter over the intro, and how long they talk (s).
TALK_OVER_SHARE = 0.3
TALK_OVER_SECONDS = (4.0, 10.0)
#: Kind of the next item after a piece of music (talk never follows talk).
NEXT_KIND = (("song", 0.6), ("other", 0.2), ("talk", 0.2))
#: Keep an excerpt this far from the ends of its track's audible span (s).
SPAN_MARGIN_S = 0.5


@dataclass(frozen=True)
class Source:
    """A track the planner may cut from: corpus id, length (s) and audible span (first, last second)."""

    id: str
    duration: float
    audible: tuple[float, float]


@dataclass(frozen=True)
class Item:
    """One item of a programme (module docstring). Times in seconds.

    kind: "song", "other" or "talk". track: corpus id (songs, other music),
    None for talk. start_s/end_s: stream time of its first and last sound;
    fade_in_s/fade_out_s: its fades (a crossfade's length, on both sides).
    src_start_s: where in the track the excerpt begins (music). effect:
    "none", "speed", "tempo" or "pitch"; value: the factor (speed, tempo) or
    semitones (pitch). talk_over_s: seconds of speech over the intro (0 =
    none), starting ``TALK_DELAY_S`` after the audible start. clip: which
    presenter clip (talk, talk-over).
    """

    kind: str
    track: str | None
    start_s: float
    end_s: float
    fade_in_s: float
    fade_out_s: float
    src_start_s: float = 0.0
    effect: str = "none"
    value: float = 1.0
    talk_over_s: float = 0.0
    clip: int = 0

    @property
    def is_music(self) -> bool:
        return self.kind in ("song", "other")

    @property
    def time_scale(self) -> float:
        """Track seconds per stream second."""
        return self.value if self.effect in ("speed", "tempo") else 1.0

    @property
    def pitch_semitones(self) -> float:
        if self.effect == "speed":
            return 12 * math.log2(self.value)
        return self.value if self.effect == "pitch" else 0.0

    @property
    def audible_start_s(self) -> float:
        return self.start_s + self.fade_in_s / 2

    @property
    def audible_end_s(self) -> float:
        return self.end_s - self.fade_out_s / 2

    def track_position(self, t: float) -> float:
        """Position in the track (s) heard at stream time ``t``."""
        return self.src_start_s + self.time_scale * (t - self.start_s)

    def truth(self) -> dict:
        """The item with its derived truth fields, JSON-ready (rounded to ms)."""
        out = asdict(self)
        out.update(audible_start_s=self.audible_start_s, audible_end_s=self.audible_end_s,
                   time_scale=self.time_scale, pitch_semitones=self.pitch_semitones)
        if self.is_music:
            out.update(track_start_s=self.track_position(self.audible_start_s),
                       track_end_s=self.track_position(self.audible_end_s))
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


#: Talk over an intro starts this long after the song is audible (s).
TALK_DELAY_S = 0.5


@dataclass(frozen=True)
class Plan:
    """One programme: its name, seed, length (s) and items in order of start."""

    name: str
    seed: int
    seconds: float
    items: tuple[Item, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "seed": self.seed, "seconds": round(self.seconds, 4),
                "items": [it.truth() for it in self.items]}


def _choice(rng, table) -> str:
    names, weights = zip(*table)
    return names[int(rng.choice(len(names), p=weights))]


def _draw_effect(rng) -> tuple[str, float]:
    effect = _choice(rng, EFFECT_SHARES)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if effect in ("speed", "tempo"):
        return effect, round(1.0 + sign * rng.uniform(*SCALE_CHANGE), 4)
    if effect == "pitch":
        return effect, round(sign * rng.uniform(*PITCH_CHANGE), 3)
    return "none", 1.0


class _Picker:
    """Tracks in a seeded order, each used once before any repeats; skips those too short for an excerpt."""

    def __init__(self, sources: Sequence[Source], rng):
        self._sources = list(sources)
        self._rng = rng
        self._queue: list[Source] = []

    def pick(self, src_seconds: float) -> Source | None:
        for _ in range(2 * len(self._sources) + 1):
            if not self._queue:
                self._queue = [self._sources[i] for i in self._rng.permutation(len(self._sources))]
            s = self._queue.pop()
            if s.audible[1] - s.audible[0] - 2 * SPAN_MARGIN_S >= src_seconds:
                return s
        return None


def _music_item(kind: str, picker: _Picker, rng, start: float, fade_in: float, fade_out: float) -> Item:
    """A song or other-music item of drawn length starting at ``start`` (its excerpt fits its track)."""
    effect, value = _draw_effect(rng) if kind == "song" else ("none", 1.0)
    lo, hi = SONG_SECONDS if kind == "song" else OTHER_SECONDS
    audible = float(rng.uniform(lo, hi))
    scale = value if effect in ("speed", "tempo") else 1.0
    for _ in range(8):  # shorter excerpts until one fits a track
        length = audible + fade_in / 2 + fade_out / 2
        src = picker.pick(length * scale)
        if src is not None:
            break
        audible = max(lo, audible * 0.7)
    else:
        raise BenchError(f"no {kind} track has {lo:g} s of audible music: the corpus tracks are too short")
    a, b = src.audible[0] + SPAN_MARGIN_S, src.audible[1] - SPAN_MARGIN_S - length * scale
    talk_over, clip = 0.0, int(rng.integers(1 << 16))
    if kind == "song" and rng.random() < TALK_OVER_SHARE:
        talk_over = round(min(float(rng.uniform(*TALK_OVER_SECONDS)), audible / 3), 3)
    return Item(kind, src.id, start, start + length, fade_in, fade_out, round(float(rng.uniform(a, max(a, b))), 3),
                effect, value, talk_over, clip)


def plan_programme(name: str, songs: Sequence[Source], others: Sequence[Source], *, seed: int,
                   minutes: float) -> Plan:
    """A programme of about ``minutes`` (module docstring), seeded by ``seed`` and ``name``.

    songs: catalogue tracks; others: non-catalogue tracks. The programme
    opens with talk and ends with the first item that reaches the length.
    Raises ``BenchError`` for no tracks or a length under one minute.
    """
    if not songs or not others:
        raise BenchError("a programme needs catalogue tracks and non-catalogue tracks")
    if not minutes >= 1:
        raise BenchError(f"a programme must last at least 1 minute, not {minutes}")
    rng = rng_for(seed, "programme", name)
    pick = {"song": _Picker(songs, rng_for(seed, "programme", name, "songs")),
            "other": _Picker(others, rng_for(seed, "programme", name, "others"))}
    target, items = 60.0 * minutes, []
    kind, start, fade_in = "talk", 0.0, 0.0
    while True:
        last = start >= target - 60.0  # the item that reaches the length ends the programme
        nxt = None if last else ("song" if kind == "talk" else _choice(rng, NEXT_KIND))
        if kind == "talk":
            item = Item("talk", None, start, start + float(rng.uniform(*TALK_SECONDS)), 0.0, 0.0,
                        clip=int(rng.integers(1 << 16)))
            items.append(item)
            if nxt is None:
                break
            kind, start, fade_in = nxt, item.end_s + GAP_AFTER_TALK_S, FADE_FROM_TALK_S
            continue
        fade_out = (FINAL_FADE_S if nxt is None else FADE_TO_TALK_S if nxt == "talk"
                    else round(float(rng.uniform(*CROSSFADE_SECONDS)), 3))
        item = _music_item(kind, pick[kind], rng, start, fade_in, fade_out)
        items.append(item)
        if nxt is None:
            break
        kind, fade_in = nxt, (fade_out if nxt != "talk" else 0.0)
        start = item.end_s - fade_out if nxt != "talk" else item.end_s
    items = [replace(it, start_s=round(it.start_s, 4), end_s=round(it.end_s, 4)) for it in items]
    plan = Plan(name, seed, round(items[-1].end_s, 4), tuple(items))
    check_plan(plan)
    return plan


def check_plan(plan: Plan) -> None:
    """Raise ``BenchError`` unless the plan's truth is consistent.

    Items in order of start, inside the programme, each at least as long as
    its fades; music overlaps only its neighbour, only by their shared
    crossfade; audible spans never overlap; talk over an intro fits in the
    song's audible span; excerpts lie inside their tracks (``time_scale`` > 0).
    """
    prev = None
    for i, it in enumerate(plan.items):
        where = f"{plan.name} item {i} ({it.kind} {it.track})"
        if it.start_s < -1e-6 or it.end_s > plan.seconds + 1e-6:
            raise BenchError(f"{where} lies outside the programme (0..{plan.seconds} s)")
        if it.end_s - it.start_s < it.fade_in_s + it.fade_out_s - 1e-6:
            raise BenchError(f"{where} is shorter than its fades")
        if it.kind not in ("song", "other", "talk") or (it.is_music and not it.track) or it.time_scale <= 0:
            raise BenchError(f"{where} is malformed")
        if it.talk_over_s and TALK_DELAY_S + it.talk_over_s > it.audible_end_s - it.audible_start_s:
            raise BenchError(f"{where}: talk over the intro runs past the song")
        if prev is not None:
            overlap = prev.end_s - it.start_s
            shared = it.fade_in_s if prev.is_music and it.is_music else 0.0
            if it.start_s < prev.start_s or (overlap > 0 and abs(overlap - shared) > 1e-3):
                raise BenchError(f"{where} overlaps the item before it by {overlap:.3f} s, not by its "
                                 f"crossfade ({shared:.3f} s)")
            if prev.audible_end_s > it.audible_start_s + 1e-6:
                raise BenchError(f"{where}: audible spans overlap")
        prev = it


def truth_items(plan: Plan) -> list[dict]:
    """The catalogue items of a plan (the truth plays are scored against), JSON-ready."""
    return [it.truth() for it in plan.items if it.kind == "song"]
