"""One stream hypothesis: a track heard along an offset line, and its evidence.

Place in the pipeline: the state ``decision.stream.StreamDecision`` keeps
per track it hears in one stream. A hypothesis is a track, the line
``track offset = line_offset + rate * (t - line_t)`` its supporting windows
lie on (stream and track seconds; ``rate`` is the play's time scale, fitted
once the line spans ``rate_span_s``), and the evidence those windows add
up to, decaying with a half-life. The stream decision owns the rules of
when a window supports which hypothesis and when a hypothesis becomes a
play; this module only keeps the books: the tolerance a line allows, how a
supporting window changes evidence and line, and the fitted slope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import DecisionParams
from .backdate import on_unit_line
from .detection import Candidate

#: Supporting observations kept per hypothesis for fitting its slope.
MAX_OBSERVATIONS = 64


@dataclass
class Hypothesis:
    """One track heard along one offset line (the latest of its lines, for looped music)."""

    track: str
    t_first: float
    t_last: float  # stream time of the latest supporting window, on the line or not
    line_t: float  # the line's latest point: stream time and track offset (None: no offsets)
    line_offset: float | None
    evidence: float = 0.0
    t_evidence: float = 0.0
    peak_evidence: float = 0.0  # highest evidence held while openable (``openable``)
    rate: float | None = None  # the current line's fitted slope
    observations: list = field(default_factory=list)  # (t, offset) on the current line
    first_line: tuple | None = None  # (t, offset, rate) of the first line, frozen when a second one starts
    long_rate: float | None = None  # slope of the longest line so far, and that line's span (s)
    long_span: float = 0.0
    pending: tuple | None = None  # (t, offset) of a passing window off the line, not yet confirmed
    margin_sum: float = 0.0
    peak_margin: float = -math.inf
    windows: int = 0
    profile_sum: np.ndarray | None = None  # summed band levels (dB) of supporting windows
    profiles: int = 0
    key: str | None = None  # set when it becomes a play
    order: int = 0  # opening order of plays: contrary evidence only ends older ones
    now_pitch: float | None = None  # the pitch shift "now playing" shows, and when it was measured
    now_pitch_t: float = -math.inf
    supported_now: bool = False

    def decay_to(self, t: float, half_life_s: float) -> None:
        if t > self.t_evidence:
            self.evidence *= 0.5 ** ((t - self.t_evidence) / half_life_s)
            self.t_evidence = t

    def predicted_offset(self, t: float) -> float | None:
        if self.line_offset is None:
            return None
        return self.line_offset + (1.0 if self.rate is None else self.rate) * (t - self.line_t)

    def first_line_offset(self, t: float) -> float | None:
        """Where the *first* line puts stream time ``t`` (a play's start is on it)."""
        if self.first_line is None:
            return self.predicted_offset(t)
        t0, offset0, rate0 = self.first_line
        return offset0 + (1.0 if rate0 is None else rate0) * (t - t0)

    def tolerance(self, t: float, p: DecisionParams) -> float:
        per_s = p.max_time_scale if self.rate is None else p.rate_tolerance
        return p.offset_tolerance_s + per_s * abs(t - self.line_t)

    def fits(self, c: Candidate, t: float, p: DecisionParams) -> float | None:
        """How far ``c`` lies from the line (s); None when it does not support it."""
        if c.track != self.track:
            return None
        predicted = self.predicted_offset(t)
        if predicted is None or c.track_offset_s is None:
            return 0.0 if (predicted is None) == (c.track_offset_s is None) else None
        miss = abs(c.track_offset_s - predicted)
        return miss if miss <= self.tolerance(t, p) else None

    def confirms_pending(self, c: Candidate, t: float, p: DecisionParams) -> bool:
        """Whether ``c`` continues the off-line window seen just before (two agree: a new line)."""
        if self.pending is None or c.track_offset_s is None or t - self.pending[0] > p.reanchor_within_s:
            return False
        return on_unit_line(c.track_offset_s, t, *self.pending, p)

    def support(self, c: Candidate, t: float, p: DecisionParams, *, line: str = "on",
                profile: np.ndarray | None = None) -> None:
        """Add a supporting window. line: "on" the current line, "off" it (evidence
        only; remembered as pending), or "new" (it and the pending window start a new line)."""
        if line == "new":  # the old slope says nothing about the new line
            if self.first_line is None:
                self.first_line = (self.line_t, self.line_offset, self.rate)
            self.observations = [self.pending] if self.pending is not None else []
            self.rate = None
        if profile is not None and np.all(np.isfinite(profile)):
            self.profile_sum = profile.astype(np.float64) if self.profile_sum is None else self.profile_sum + profile
            self.profiles += 1
        self.decay_to(t, p.half_life_s)
        self.evidence += max(0.0, c.score + p.support_bonus)
        self.windows += 1
        self.raise_peak(p)
        self.t_last = t
        self.margin_sum += c.score
        self.peak_margin = max(self.peak_margin, c.score)
        self.supported_now = True
        if line == "off":
            self.pending = (t, c.track_offset_s)
            return
        self.pending = None
        self.line_t, self.line_offset = t, c.track_offset_s
        if c.track_offset_s is not None:
            self.observations.append((t, c.track_offset_s))
            del self.observations[:-MAX_OBSERVATIONS]
            self._fit_rate(p)
            # Agreement on track *and* offset line over several windows is what chance rarely gives
            # (negative music seldom keeps a line beyond a few windows), so a window that continues
            # a line already holding ``line_after`` windows earns ``line_bonus``.
            if len(self.observations) > p.line_after:
                self.evidence += p.line_bonus
                self.raise_peak(p)

    def openable(self, p: DecisionParams) -> bool:
        """Whether enough windows support it for it to become a play (``min_play_windows``)."""
        return self.windows >= p.min_play_windows

    def raise_peak(self, p: DecisionParams) -> None:
        """Record the evidence now held as a peak, if enough windows support it to open a play."""
        # The calibration reads peaks as "the evidence this hypothesis could
        # have opened a play with", so evidence held by too few windows to
        # open one is no peak.
        if self.openable(p):
            self.peak_evidence = max(self.peak_evidence, self.evidence)

    def _fit_rate(self, p: DecisionParams) -> None:
        ts = [o[0] for o in self.observations]
        span = ts[-1] - ts[0]
        if span < p.rate_span_s:
            return
        n = len(ts)
        mt = sum(ts) / n
        mo = sum(o[1] for o in self.observations) / n
        var = sum((t - mt) ** 2 for t in ts)
        slope = sum((t - mt) * (o - mo) for t, o in self.observations) / var
        self.rate = min(max(slope, 1.0 - p.max_time_scale), 1.0 + p.max_time_scale)
        # The longest line measures the play's speed best; a slope beyond the
        # speeds a line may have is no speed at all (a short repeating
        # pattern's offsets wrap around), so it is never reported as one.
        if span >= self.long_span and self.rate == slope:
            self.long_rate, self.long_span = self.rate, span
