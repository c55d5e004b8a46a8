"""One window's answer: the best tracks by calibrated margin, and the window decision.

Place in the pipeline: the first step of ``decision``, right after the
engine. Engines return calibrated margins: a margin above 0 means the window
passes that track's threshold, set on held-out negative audio for a target
false-positive rate per window. So a window's answer is the track with the
highest margin if it is > 0, and an explicit "no match" (``track=None``)
otherwise; the score is that best margin either way, so one sweep over
scores trades hits against false positives for the whole catalogue at once.

The stream decision (``decision.stream``) reads the ranked candidates, not
just the winner: a window just under the threshold still supports a play
whose offset line it continues.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One ranked track for a window.

    score: its margin; track_offset_s: where in the track the window's first
    sample aligns (None where the engine cannot tell).
    """

    track: str
    score: float
    track_offset_s: float | None = None


@dataclass(frozen=True)
class Detection:
    """The answer for one window.

    track: matched track id, or None for an explicit, calibrated "no match".
    score: the best margin (> 0 exactly when ``track`` is set).
    offset_s: stream time (s) where the window starts.
    candidates: the best-scoring tracks, best first.
    track_offset_s: where in the matched track the window aligns (None
        without a match or an engine that cannot tell).
    silent: the window was below the silence level (nothing was asked of
        the engine's opinion; every margin is ``SILENT_SCORE``).
    profile: (bands,) the window's mean band level in dB, or None (what a
        play's pitch shift is measured on; not part of the JSON).
    """

    track: str | None
    score: float
    offset_s: float | None
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    track_offset_s: float | None = None
    silent: bool = False
    profile: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        """The window's answer as JSON (the ``identify``/``window`` message contract)."""
        return {
            "match": self.track,
            "score": round(float(self.score), 4),
            "offset_s": _rounded(self.offset_s, 3),
            "track_offset_s": _rounded(self.track_offset_s, 3),
            "candidates": [{"track": c.track, "score": round(float(c.score), 4)} for c in self.candidates],
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def decide_window(margins: np.ndarray, track_offsets: np.ndarray | None, track_ids: list[str], *, start_s: float,
                  top_k: int, silent: bool = False, profile: np.ndarray | None = None) -> Detection:
    """The window decision from one row of engine margins.

    margins: (n_tracks,) float32; track_offsets: (n_tracks,) seconds (NaN:
    unknown) or None; track_ids: the engine's column order; start_s: stream
    time of the window; top_k: candidates kept.
    """
    order = np.argsort(-margins, kind="stable")[:top_k]
    cands = []
    for i in order:
        offset = None if track_offsets is None or not np.isfinite(track_offsets[i]) else float(track_offsets[i])
        cands.append(Candidate(str(track_ids[i]), float(margins[i]), offset))
    if not cands:
        return Detection(None, float("-inf"), start_s, silent=silent, profile=profile)
    best = cands[0]
    matched = best.score > 0
    return Detection(track=best.track if matched else None, score=best.score, offset_s=start_s,
                     candidates=tuple(cands), track_offset_s=best.track_offset_s if matched else None, silent=silent,
                     profile=profile)
