"""A play: one continuous stretch of one catalogue track on one source, with its evidence.

Place in the pipeline: what the stream decision (``decision.stream``) emits
and what ``plays`` stores, exports and reports. A rights-holder acts on a
play, not on a window score, so a play carries what it rests on: which part
of the track was heard (``track_start_s`` .. ``track_end_s``), how fast it
ran against the original (``time_scale``, the slope of its offset line), how
many windows supported it and how strongly.

Times: ``start_s``/``end_s`` are seconds of *stream* time (from the first
sample the source sent), which is what a client sees in its own messages.
``started_at``/``ended_at`` are wall-clock UTC timestamps derived from them,
which is what a log read days later needs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Play:
    """One continuous play of a catalogue track on one source.

    key: a unique id of the play, stable from the moment it opens to the
        moment it closes (the store updates an open play by it).
    start_s, end_s: stream time in seconds.
    confidence: mean margin of the supporting windows (a play held through
        a room can have a mean below 0; ``peak_score`` is always > 0).
    peak_score: best single-window margin.
    windows: number of supporting windows.
    started_at, ended_at: wall-clock UTC, ISO 8601 with a "Z" suffix.
    track_start_s, track_end_s: the part of the track that was played
        (None for engines without offsets).
    time_scale: track seconds per stream second (1.07 = played 7 % fast;
        None until the offset line spans a few seconds).
    pitch_semitones: how far the play sounds above the track (None when it
        could not be measured; ``decision.evidence``).
    alteration: "none", "speed", "tempo", "pitch", "speed+pitch" or
        "unknown": the kind of edit the two point to.
    open: the play is still in progress (``end_s`` is its latest support).
    id: row id once stored (None before).
    """

    track: str
    source: str
    start_s: float
    end_s: float
    confidence: float
    peak_score: float
    windows: int
    started_at: str
    ended_at: str
    key: str = ""
    track_start_s: float | None = None
    track_end_s: float | None = None
    time_scale: float | None = None
    pitch_semitones: float | None = None
    alteration: str = "unknown"
    open: bool = False
    id: int | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> dict:
        """JSON-ready fields, rounded for people (ms for times, 1e-4 for scores)."""
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 3)
        for key in ("start_s", "end_s", "track_start_s", "track_end_s"):
            out[key] = _round(out[key], 3)
        for key in ("confidence", "peak_score", "time_scale"):
            out[key] = _round(out[key], 4)
        out["pitch_semitones"] = _round(out["pitch_semitones"], 2)
        return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a "Z" suffix (sorts as text)."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
