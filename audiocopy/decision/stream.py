"""The stream decision: window detections in, plays out, for every kind of source.

Place in the pipeline: after the recognizer, before the plays store. A live
browser stream, a radio monitor and a long file all go through one
``StreamDecision`` per stream; nothing else turns windows into plays.

Why not "a run of windows that each pass". Through a loudspeaker, a room and
a microphone, a real play has many windows just under the per-window
threshold; if each window had to pass on its own, one weak window would
break the play in two and a quiet passage would lose it. But a stream knows
more than any window: the windows of a real play agree on one track *and*
on an offset into it that advances with stream time, at the play's speed.
Chance agreement of both over several seconds is rare. So the decision keeps
per-stream **hypotheses** (a track and an offset line through its
supporting windows, ``decision.hypothesis``) and accumulates their
**evidence**:

* a window *supports* a hypothesis when one of its top candidates is the
  hypothesis' track, with a margin of at least ``support_margin`` (a little
  under the threshold) and not far below the window's best candidate
  (``runner_up_gap``: a look-alike is explained away by the real thing), at
  an offset within a tolerance of the line's prediction. The tolerance grows
  with the time since the last support by the largest speed change allowed
  (``max_time_scale``) until the line's slope has been fitted from a few
  seconds of support, then by the slope's uncertainty only. A candidate with
  a positive margin that fits no hypothesis starts a new one, dated back to
  the weak windows on its line just before it (``backdate``);
* evidence is the sum of (margin + ``support_bonus``) over supporting
  windows, plus ``line_bonus`` for each window that continues an offset
  line already holding ``line_after`` windows (line agreement), decaying
  with a half-life, so old support counts less;
* a hypothesis becomes a **play** when its evidence passes the play
  threshold, calibrated on held-out negative music at a stated rate of false
  plays per hour (``calibration.play_threshold``), and at least
  ``min_play_windows`` windows support it: one window, however confident,
  is one look at the music, not yet a play;
* a play is **held** through weak windows while its line stays unbroken:
  it ends ``hold_s`` after its last support, when a play opened after it
  is heard while it has gone unheard for ``contrary_s`` (contrary evidence:
  the next song), or after ``silence_end_s`` of silence. Its end is its
  last supporting window, whenever that is found out;
* a hypothesis that is not yet a play starts afresh at a passing window off
  its line after ``restart_after_s`` without support: a stray window of
  other music must not date the next song's play back to itself.

One hypothesis per track: a second track's windows never extend the first
track's play. A window that passes (margin > 0) off the line adds to its
track's evidence, and two that agree move the hypothesis to their new line:
looped music can align with several places in the track, while one stray
offset must not drag the line away from the weak windows after it. A play's
place in the track starts on its first line; its time scale is the slope of
its longest line. A weak window off the line supports nothing. A hypothesis
does not become a play while an open play ``1 / dominance`` times stronger
has been heard within ``contrary_s`` (a look-alike, not a second song at
once). "Now playing" names only plays heard in the last ``show_hold_s``.
Engines without offsets (cnnbin's spectrogram CNNs) give hypotheses without
lines: only a window's best track may support them.

Plays are reported as they open and as they close (``StreamUpdate``), each
with a ``key`` that stays the same, so a store can keep open plays up to
date and recover them after a crash.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..config import DecisionParams
from .backdate import WeakSightings
from .detection import Detection
from .evidence import alteration, pitch_shift_semitones
from .hypothesis import Hypothesis
from .play import Play, iso_utc


@dataclass(frozen=True)
class NowPlaying:
    """The stream's current answer (what the Live page shows as "now playing").

    track: the open play with the most evidence; evidence: its evidence;
    track_offset_s: where in the track the stream is now (None without
    offsets); since_s: stream time the play started; time_scale: its slope;
    pitch_semitones: its pitch shift so far (re-measured every
    ``now_pitch_every_s``; None until measurable); alteration: the kind of
    edit the two point to (``evidence.alteration``).
    """

    track: str
    evidence: float
    track_offset_s: float | None
    since_s: float
    time_scale: float | None
    pitch_semitones: float | None = None
    alteration: str = "unknown"

    def to_json(self) -> dict:
        def r(v, d):
            return None if v is None else round(float(v), d)

        return {"track": self.track, "evidence": round(self.evidence, 3),
                "track_offset_s": r(self.track_offset_s, 2), "since_s": round(self.since_s, 3),
                "time_scale": r(self.time_scale, 4), "pitch_semitones": r(self.pitch_semitones, 2),
                "alteration": self.alteration}


@dataclass(frozen=True)
class StreamUpdate:
    """What one window changed: the current answer, and plays opened and closed."""

    now: NowPlaying | None
    opened: tuple[Play, ...] = ()
    closed: tuple[Play, ...] = ()


class StreamDecision:
    """Turns one stream's window detections into plays (see the module docstring).

    source: label stored with every play (e.g. "browser", a monitor's name).
    window_s: window length (s); wall_start: wall-clock time (epoch s) of
    stream time 0; threshold: evidence a play needs (a database's calibrated
    value, ``Recognizer.play_threshold``); params: the decision parameters.
    track_profile: ``(track, start_s, end_s) -> (bands,) or None``, the
    track's long-term spectrum over a stretch of it (``Recognizer.
    track_profile``), for measuring a play's pitch shift; None: no pitch.
    bins_per_octave: the bands' resolution (``FeatureParams``).
    Not thread-safe: one decision belongs to one stream, fed in stream order.
    """

    def __init__(self, source: str, *, window_s: float, wall_start: float, threshold: float,
                 params: DecisionParams = DecisionParams(), track_profile=None, bins_per_octave: int = 12):
        if not threshold > 0:
            raise ValueError(f"the play threshold must be > 0, got {threshold}")
        self.source = source
        self.window_s = window_s
        self.wall_start = wall_start
        self.threshold = threshold
        self.params = params
        self._track_profile = track_profile
        self._bins_per_octave = bins_per_octave
        self._hyps: list[Hypothesis] = []
        self._first_window: float | None = None  # stream time of the first and latest windows seen
        self._last_window: float | None = None
        self._finishing = False
        self._silent_since: float | None = None
        self._peaks: list[float] = []  # peak evidence of every hypothesis that ended (calibration)
        self._opened = 0  # plays opened so far (their order)
        self._weak = WeakSightings(params)

    # --- feeding -------------------------------------------------------------

    def update(self, det: Detection) -> StreamUpdate:
        """Take the detection of the next window (``det.offset_s`` = its stream time)."""
        p, t = self.params, float(det.offset_s or 0.0)
        self._first_window = t if self._first_window is None else self._first_window
        self._last_window = t
        for h in self._hyps:
            h.decay_to(t, p.half_life_s)
            h.supported_now = False
        # A play unsupported for longer than the hold has ended: this window
        # may not revive it (a later return to the same line is a new play).
        closed = self._close([h for h in self._hyps if h.key is not None and t - h.t_last > p.hold_s])
        self._prune(t)
        if det.silent:
            self._silent_since = t if self._silent_since is None else self._silent_since
            if t - self._silent_since >= p.silence_end_s:
                closed += self._close([h for h in self._hyps if h.key is not None])
        else:
            self._silent_since = None
            self._assign(det, t)
        opened = self._open_ready(t)
        closed += self._close(self._contradicted(t))
        return StreamUpdate(self.now(t), tuple(opened), tuple(closed))

    def finish(self) -> list[Play]:
        """End of stream: close every open play and forget the rest."""
        self._finishing = True
        closed = self._close([h for h in self._hyps if h.key is not None])
        self._peaks += [h.peak_evidence for h in self._hyps]
        self._hyps = []
        return closed

    # --- reading -------------------------------------------------------------

    def now(self, t: float) -> NowPlaying | None:
        """The open play with the most evidence at stream time ``t`` among those heard
        in the last ``show_hold_s``, or None: a play held through a quiet stretch is
        still logged as one play, but the screen does not claim it is audible now."""
        playing = [h for h in self._hyps if h.key is not None and t - h.t_last <= self.params.show_hold_s]
        if not playing:
            return None
        h = max(playing, key=lambda x: x.evidence)
        start_s = self._start_s(h)
        if t - h.now_pitch_t >= self.params.now_pitch_every_s:
            # The spectrum comparison reads the track's stored levels: every few
            # seconds is enough for a figure that settles as the play goes on.
            h.now_pitch, h.now_pitch_t = self._pitch(h, h.first_line_offset(start_s), h.predicted_offset(t)), t
        return NowPlaying(h.track, h.evidence, h.predicted_offset(t), start_s, h.long_rate, h.now_pitch,
                          alteration(h.long_rate, h.now_pitch))

    def open_plays(self) -> list[Play]:
        """Every play in progress, as it stands (for a store to checkpoint)."""
        return [self._play(h, open_=True) for h in self._hyps if h.key is not None]

    def evidence_peaks(self) -> list[float]:
        """Peak evidence of every hypothesis so far (the calibration's raw material)."""
        return self._peaks + [h.peak_evidence for h in self._hyps]

    # --- internals -----------------------------------------------------------

    def _assign(self, det: Detection, t: float) -> None:
        p = self.params
        by_track = {h.track: h for h in self._hyps}
        best = det.candidates[0].score if det.candidates else -float("inf")
        for rank, c in enumerate(det.candidates[:p.top_k]):
            # A runner-up far below the window's best is explained away by it.
            # Without an offset, agreement on the track alone is weak evidence:
            # only the window's own best track may then support or start one.
            if c.score < p.support_margin or (rank > 0 and (c.score < best - p.runner_up_gap
                                                            or c.track_offset_s is None)):
                continue
            h = by_track.get(c.track)
            if h is None:
                if c.score > 0:
                    first = self._weak.earliest_on_line(c.track, t, c.track_offset_s)
                    h = by_track[c.track] = Hypothesis(c.track, first, t, t, c.track_offset_s, t_evidence=t)
                    self._hyps.append(h)
                    h.support(c, t, p, profile=det.profile)
            elif (h.key is None and c.score > 0 and t - h.t_last > p.restart_after_s
                  and h.fits(c, t, p) is None):
                # Long after its last support and off its line, this is not
                # the music that window heard (a stray look-alike before the
                # song): the play, if one comes, starts here, on this line.
                fresh = Hypothesis(c.track, self._weak.earliest_on_line(c.track, t, c.track_offset_s), t, t,
                                    c.track_offset_s, evidence=h.evidence, t_evidence=h.t_evidence,
                                    peak_evidence=h.peak_evidence)
                self._hyps[self._hyps.index(h)] = by_track[c.track] = fresh
                fresh.support(c, t, p, profile=det.profile)
            elif h.fits(c, t, p) is not None:
                h.support(c, t, p, profile=det.profile)
            elif c.score > 0:
                # Looped music repeats itself, so a window that passes on its
                # own may align with another repeat: it adds to the track's
                # evidence, and a second one that agrees with it moves the
                # hypothesis to their new line. One stray window (a wrong
                # offset through a room) never moves the line, so the weak
                # windows after it still find the line they belong to. A
                # weak window off the line supports nothing.
                line = "new" if h.confirms_pending(c, t, p) else "off"
                h.support(c, t, p, line=line, profile=det.profile)
        self._weak.add(t, det.candidates)

    def _open_ready(self, t: float) -> list[Play]:
        # A track heard now alongside a much stronger play is far more often
        # a look-alike of it than a second song at once; the strongest ready
        # hypothesis goes first, so two crossing the threshold together are
        # judged against each other too.
        # An open play heard within ``contrary_s`` counts, this window or not (a
        # room's missed windows must not let a look-alike in); one unheard for
        # longer has ended, and must not hold the next song back.
        strongest = max((h.evidence for h in self._hyps
                         if h.key is not None and t - h.t_last < self.params.contrary_s), default=0.0)
        opened = []
        for h in sorted(self._hyps, key=lambda x: -x.evidence):
            if (h.key is None and h.openable(self.params)
                    and h.evidence >= max(self.threshold, self.params.dominance * strongest)):
                h.key = uuid.uuid4().hex
                self._opened += 1
                h.order = self._opened
                opened.append(self._play(h, open_=True))
                strongest = max(strongest, h.evidence)
        return opened

    def _contradicted(self, t: float) -> list[Hypothesis]:
        # Contrary evidence: a play opened later and heard now ends an older
        # play that has not been heard for ``contrary_s`` (the next song). A
        # shorter gap is a room's usual missed window, not a change of song.
        newest_heard = max((h.order for h in self._hyps if h.key is not None and h.supported_now), default=0)
        return [h for h in self._hyps
                if h.key is not None and h.order < newest_heard and t - h.t_last >= self.params.contrary_s]

    def _close(self, hyps: list[Hypothesis]) -> list[Play]:
        out = [self._play(h, open_=False) for h in hyps]
        for h in hyps:
            self._peaks.append(h.peak_evidence)
            self._hyps.remove(h)
        return sorted(out, key=lambda play: play.start_s)

    def _prune(self, t: float) -> None:
        p = self.params
        stale = [h for h in self._hyps if h.key is None and t - h.t_last > p.hold_s]
        for h in stale:
            self._peaks.append(h.peak_evidence)
            self._hyps.remove(h)

    def _start_s(self, h: Hypothesis) -> float:
        # A window is recognised once about ``edge_s`` of the music is in it,
        # so music heard first by a window that starts later began about
        # ``edge_s`` into it; music already there in the stream's first window
        # began no later than the stream.
        if h.t_first <= self._first_window:
            return h.t_first
        return min(h.t_first + self.params.edge_s, h.t_last + self.window_s / 2)

    def _end_s(self, h: Hypothesis, start_s: float) -> float:
        # Likewise at the end, unless the stream itself ended with the music.
        if self._finishing and h.t_last >= self._last_window:
            return h.t_last + self.window_s
        return max(start_s, h.t_last + self.window_s - self.params.edge_s)

    def _play(self, h: Hypothesis, *, open_: bool) -> Play:
        start_s = self._start_s(h)
        end_s = self._end_s(h, start_s)
        track_start = h.first_line_offset(start_s)
        track_end = h.predicted_offset(end_s)
        pitch = self._pitch(h, track_start, track_end)
        return Play(track=h.track, source=self.source, start_s=start_s, end_s=end_s,
                    confidence=h.margin_sum / max(h.windows, 1), peak_score=h.peak_margin, windows=h.windows,
                    started_at=iso_utc(self.wall_start + start_s), ended_at=iso_utc(self.wall_start + end_s),
                    key=h.key or "", track_start_s=track_start, track_end_s=track_end, time_scale=h.long_rate,
                    pitch_semitones=pitch, alteration=alteration(h.long_rate, pitch), open=open_)

    def _pitch(self, h: Hypothesis, track_start: float | None, track_end: float | None) -> float | None:
        """The play's pitch shift against the stretch of the track it matched (``evidence``)."""
        if self._track_profile is None or h.profile_sum is None or track_start is None or track_end is None:
            return None
        reference = self._track_profile(h.track, track_start, track_end)
        if reference is None:
            return None
        return pitch_shift_semitones(h.profile_sum / h.profiles, reference, bins_per_octave=self._bins_per_octave)
