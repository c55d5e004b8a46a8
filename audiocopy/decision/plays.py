"""TODO: replaced by the stream decision."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterable

#: Default stream-time gap (seconds) after which a play is closed: two hops
#: plus a margin, so one or two missed windows do not split a play.
DEFAULT_GAP_S = 1.5


#: Default number of matching windows a play needs to be reported.
DEFAULT_MIN_WINDOWS = 2


@dataclass(frozen=True)
class Play:
    """One continuous play of a catalogue track on one source.

    start_s, end_s: stream time in seconds (start of the first matching
        window, end of the last one).
    confidence: mean margin of the matching windows (> 0; higher is surer).
    peak_score: best single-window margin.
    windows: number of matching windows.
    started_at, ended_at: wall-clock UTC, ISO 8601 with a "Z" suffix.
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
    id: int | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> dict:
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 3)
        for key in ("start_s", "end_s"):
            out[key] = round(out[key], 3)
        for key in ("confidence", "peak_score"):
            out[key] = round(out[key], 4)
        return out


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _OpenPlay:
    track: str
    start_s: float
    last_start_s: float
    scores: list[float] = field(default_factory=list)


class PlayTracker:
    """Turns one stream's window detections into closed plays.

    source: label stored with every play (e.g. "browser", a monitor name).
    window_s: window length in seconds (a play ends where its last window ends).
    wall_start: wall-clock time (epoch seconds) of stream time 0.
    gap_s, min_windows: see the module docstring.
    Not thread-safe: one tracker belongs to one stream.
    """

    def __init__(self, source: str, *, window_s: float, wall_start: float, gap_s: float = DEFAULT_GAP_S,
                 min_windows: int = DEFAULT_MIN_WINDOWS):
        if gap_s <= 0:
            raise ValueError(f"gap_s must be > 0, got {gap_s}")
        if min_windows < 1:
            raise ValueError(f"min_windows must be >= 1, got {min_windows}")
        self.source = source
        self.window_s = window_s
        self.wall_start = wall_start
        self.gap_s = gap_s
        self.min_windows = min_windows
        self._open: dict[str, _OpenPlay] = {}

    def update(self, start_s: float, track: str | None, score: float) -> list[Play]:
        """Feed the detection of the window starting at ``start_s`` (stream seconds).

        Windows must come in stream-time order (a dropped window is simply
        missing). Returns the plays that this window closed (often none).
        """
        if track is not None:
            current = self._open.get(track)
            if current is None:
                current = self._open[track] = _OpenPlay(track, start_s, start_s)
            current.last_start_s = start_s
            current.scores.append(float(score))
        closed = [t for t, p in self._open.items() if start_s - p.last_start_s > self.gap_s]
        return self._close(closed)

    def flush(self) -> list[Play]:
        """Close every open play (end of stream). Returns those long enough to report."""
        return self._close(list(self._open))

    @property
    def open_tracks(self) -> list[str]:
        """Tracks with a play in progress (matched recently)."""
        return list(self._open)

    def _close(self, tracks: Iterable[str]) -> list[Play]:
        out = []
        for track in tracks:
            p = self._open.pop(track)
            if len(p.scores) < self.min_windows:
                continue
            end_s = p.last_start_s + self.window_s
            out.append(Play(track=track, source=self.source, start_s=p.start_s, end_s=end_s,
                            confidence=sum(p.scores) / len(p.scores), peak_score=max(p.scores),
                            windows=len(p.scores), started_at=iso_utc(self.wall_start + p.start_s),
                            ended_at=iso_utc(self.wall_start + end_s)))
        return sorted(out, key=lambda p: p.start_s)
