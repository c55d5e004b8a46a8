"""Dating a play's start back along its offset line, on windows too weak to start it.

Place in the pipeline: a helper of ``decision.stream``. The stream decision
starts a hypothesis at the first window whose margin passes (> 0). Through
a room, or under a presenter's voice, a song's first seconds often give
windows that name the right track at the right place in it but score just
below the threshold. They cannot start a play on their own (that is what
keeps false plays rare), but once a passing window has started one, they
say when the music really began.

The rule: the weak sightings of the same track kept from the last
``DecisionParams.backdate_s`` seconds are walked back from the passing
window; a sighting counts when its track offset lies on the new line (the
offset the passing window saw, minus the stream time between them, within
the tolerance of a line whose time scale is not yet known), and the walk
stops at the first gap longer than ``contrary_s`` (longer than a room's
usual missed windows: the music before it is another stretch). The earliest
sighting reached is the hypothesis' first window. Only the start moves:
evidence, and so every threshold calibrated on it, is untouched.
"""
from __future__ import annotations

from collections import deque

from ..config import DecisionParams
from .detection import Candidate


def on_unit_line(offset_s: float, t: float, t0: float, offset0_s: float, p: DecisionParams) -> bool:
    """Whether track offset ``offset_s`` at stream time ``t`` continues (``t0``, ``offset0_s``) at about real speed.

    Before a line's slope is fitted its time scale is unknown, so the
    tolerance grows by the largest speed change allowed (``max_time_scale``)
    per second between the two; times and offsets in seconds.
    """
    dt = abs(t - t0)
    return abs(offset_s - (offset0_s + (t - t0))) <= p.offset_tolerance_s + p.max_time_scale * dt


class WeakSightings:
    """Candidates of recent windows that supported no play start: (stream time s, track, track offset s)."""

    def __init__(self, params: DecisionParams):
        self.params = params
        self._seen: deque[tuple[float, str, float]] = deque()

    def add(self, t: float, candidates: tuple[Candidate, ...] | list[Candidate]) -> None:
        """Remember the weak candidates (margin in [support_margin, 0], with an offset) of the window at ``t`` (s)."""
        p = self.params
        for c in candidates[:p.top_k]:
            if p.support_margin <= c.score <= 0 and c.track_offset_s is not None:
                self._seen.append((t, c.track, float(c.track_offset_s)))
        while self._seen and t - self._seen[0][0] > p.backdate_s:
            self._seen.popleft()

    def earliest_on_line(self, track: str, t: float, offset_s: float | None) -> float:
        """Stream time (s) where ``track``'s line through (``t``, ``offset_s``) was first sighted; ``t`` if never.

        t: stream time of the passing window that starts the hypothesis;
        offset_s: the track offset it saw (None: no line, nothing to walk).
        """
        if offset_s is None:
            return t
        p, earliest = self.params, t
        for t_i, track_i, offset_i in reversed(self._seen):
            if track_i != track or t_i >= t:
                continue
            if earliest - t_i > p.contrary_s or t - t_i > p.backdate_s:
                break
            if on_unit_line(offset_i, t_i, t, offset_s, p):
                earliest = t_i
        return earliest
