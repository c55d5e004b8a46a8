"""Parameters of the decision: how window margins become plays.

Place in the pipeline: read by ``decision`` (the stream decision that every
file, live stream and monitor goes through) and by the calibration of the
play threshold at enrolment. Times are stream seconds; margins and evidence
are in the engines' margin units (0 = the window's calibrated threshold).

One set of numbers, two engines. The margin-valued fields
(``DecisionParams.MARGIN_FIELDS``) were tuned on the fingerprint engine,
whose margin is a vote of cosine similarities above its threshold (tenths).
The per-track heads' margin is a logit above theirs (units), so the same
numbers would ask almost nothing of a cnnbin window below its threshold and
pay it almost no bonus. ``margin_unit(engine)`` says how wide an engine's
margins are against the fingerprint engine's, and the recognizer hands the
decision ``in_margin_units(unit)``: the same rules in that engine's units.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ..errors import ConfigError


@dataclass(frozen=True)
class DecisionParams:
    """How a stream's windows become plays (see ``decision.stream``).

    top_k: candidates per window the decision looks at (best margins first).
    support_margin: the weakest window margin that still supports a
        hypothesis whose offset line it continues. Below the per-window
        threshold (0) on purpose: through a room a real play has many windows
        just under it, and a track *and* an offset that agree with the last
        seconds are unlikely by chance.
    runner_up_gap: a candidate other than the window's best supports or
        starts a hypothesis only within this margin of the best one: a
        look-alike far below the real track is explained away by it.
    support_bonus: added to a supporting window's margin, so the weakest
        support adds nothing and a window at the threshold adds this much.
    line_bonus: added for a window that supports a hypothesis on its offset
        line once that line holds more than ``line_after`` windows: a track
        *and* an offset agreeing over several windows is what chance rarely
        gives, so it counts even where each window's margin is weak.
    line_after: windows a line must hold before ``line_bonus`` is paid.
    offset_tolerance_s: how far (track seconds) a window's offset may sit
        from the hypothesis' line and still support it: sub-window steps and
        enrolment hops quantise offsets by ~0.25 s.
    max_time_scale: relative speed/tempo change a line may have (0.12 =
        ±12 %); until the line's slope is fitted, the tolerance grows by this
        much per second since the last support.
    rate_span_s: the slope (time scale) is fitted once a line's support spans
        this long; after that the tolerance grows by ``rate_tolerance`` per s.
    half_life_s: evidence decays with this half-life, so old support counts
        less and a hypothesis fades once its music stops (6 s: chosen on the
        stream benchmark's tuning programmes, ``tools/bench_decision.py``).
    start_evidence: evidence a hypothesis needs to become a play, used when a
        database has no calibrated value, and the least the calibration may
        set when its negatives formed too few hypotheses to trust the fit of
        their tail (``training.play_calibration``). 0.3 is two windows each
        0.07 above the window threshold: a play still rests on more than two
        bare passes, and ``min_play_windows`` keeps one strong window from
        becoming one. (It was 0.5, set before that rule existed; with the
        shipped encoder the negatives' strongest hypothesis peaks near 0.17
        and their fit asks for ~0.35, so 0.5 held every song back by a window
        or two: ``tools/bench_decision.py``, docs/benchmarks.md.)
    min_play_windows: supporting windows a hypothesis needs before it may
        become a play, whatever its evidence. One window is one look at the
        music, and a single confident window of a wrong track happens (an
        unusual sound, a song cutting to silence half-way through a window);
        a play is a claim about the stream, so it waits for a second window
        to agree (half a second at the server's hop). The calibration reads
        only evidence a hypothesis held with this many windows, so the play
        threshold is set for the rule as it is applied.
    dominance: a hypothesis becomes a play only if its evidence is at least
        this share of the strongest open play heard within ``contrary_s``.
    contrary_s: a play opened later and heard now ends an older play that
        has not been heard for this long (the next song; a shorter gap is a
        room's missed window).
    reanchor_within_s: a window that passes on its own off a hypothesis'
        line moves it to a new line (looped music) only if another such
        window agrees with it within this long; alone it adds evidence only.
    show_hold_s: "now playing" names only a play heard within this long; the
        play itself is held for ``hold_s``.
    now_pitch_every_s: "now playing" re-measures its play's pitch shift this
        often (stream seconds; it reads the track's stored band levels).
    hold_s: an open play survives this long without support (a quiet
        passage, a presenter talking over it); its end is the last support.
    restart_after_s: a hypothesis that is not yet a play and has had no
        support for this long starts afresh (its start, its line) at a
        passing window off its line: one stray window of other music must
        not date the next song's play back to itself. Its decayed evidence
        is kept, so the calibration reads the same peaks.
    backdate_s: a new hypothesis' start is dated back to the weak windows
        (``support_margin`` to 0) on its line seen within this long before
        it (``decision.backdate``); as long as a hypothesis may go unsupported
        and still be the same music (``restart_after_s``).
    silence_end_s: this much silence (below ``silence_dbfs``) ends a play.
    edge_s: a window is recognised once about this much of the music is in
        it: a play starts ``edge_s`` after its first supporting window starts
        and ends ``edge_s`` before its last one ends.
    fragment_windows: a file of at most this many windows (2.5 to 3.5 s) is a
        fragment: no stream evidence can accumulate in it, so its answer is
        its best window's own calibrated decision.
    false_plays_per_hour: the rate at which enrolment calibrates the play
        threshold on held-out negative music.
    silence_dbfs: windows quieter than this (RMS) are silence, not music.
    cnnbin_margin_unit: how many logits of a cnnbin head's margin make one
        unit of the margin fields above (``margin_unit``). 24: chosen on the
        stream benchmark's tuning programmes (seed 1, never the reported
        seed 0) among 1-64 (``tools/bench_decision.py --engine cnnbin --vary
        margin_unit=...``): at 1 a room recording's songs whose windows sit a
        little under the heads' threshold never gather evidence; past 24
        false plays came back. The spread of the two engines' best margins
        on their calibration negatives differs by a factor of ~33 (IQR),
        the same order.
    """

    top_k: int = 5
    support_margin: float = -0.12
    runner_up_gap: float = 0.15
    support_bonus: float = 0.08
    line_bonus: float = 0.1
    line_after: int = 4
    offset_tolerance_s: float = 0.5
    max_time_scale: float = 0.12
    rate_span_s: float = 4.0
    rate_tolerance: float = 0.01
    half_life_s: float = 6.0
    start_evidence: float = 0.3
    min_play_windows: int = 2
    dominance: float = 0.5
    contrary_s: float = 2.0
    reanchor_within_s: float = 2.0
    show_hold_s: float = 4.0
    now_pitch_every_s: float = 5.0
    hold_s: float = 15.0
    restart_after_s: float = 8.0
    backdate_s: float = 8.0
    silence_end_s: float = 3.0
    edge_s: float = 1.0
    fragment_windows: int = 3
    false_plays_per_hour: float = 0.5
    silence_dbfs: float = -60.0
    cnnbin_margin_unit: float = 24.0

    #: Fields measured in margin units, scaled together by ``in_margin_units`` (evidence sums margins and bonuses).
    MARGIN_FIELDS: ClassVar[tuple[str, ...]] = ("support_margin", "runner_up_gap", "support_bonus", "line_bonus",
                                                "start_evidence")

    def __post_init__(self):
        if self.min_play_windows < 1:
            raise ConfigError(f"min_play_windows must be >= 1, got {self.min_play_windows}")
        if not self.cnnbin_margin_unit > 0:
            raise ConfigError(f"cnnbin_margin_unit must be > 0, got {self.cnnbin_margin_unit}")

    def margin_unit(self, engine: str) -> float:
        """How wide ``engine``'s margins are against the fingerprint engine's, in whose units the margin
        fields were tuned: 1 for ``"fingerprint"``, ``cnnbin_margin_unit`` for ``"cnnbin"``."""
        units = {"fingerprint": 1.0, "cnnbin": self.cnnbin_margin_unit}
        if engine not in units:
            raise ConfigError(f"no margin unit for engine {engine!r} (known: {sorted(units)})")
        return units[engine]

    def in_margin_units(self, unit: float) -> "DecisionParams":
        """These parameters for an engine whose margins are ``unit`` times as wide as the fingerprint engine's.

        unit: > 0; 1 (the fingerprint engine) returns ``self`` unchanged.
        Every field of ``MARGIN_FIELDS`` is multiplied by it; times, counts
        and shares are not margins and stay as they are.
        """
        if not unit > 0:
            raise ConfigError(f"margin unit must be > 0, got {unit!r}")
        if unit == 1:
            return self
        return replace(self, **{f: getattr(self, f) * unit for f in self.MARGIN_FIELDS})
