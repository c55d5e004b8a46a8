"""Replaying the stream decision on cached detections: calibrate, decide, score, for one parameter variant.

Place in ``tools/bench``: the fast half of ``tools/bench_decision.py``,
after ``decision_data`` (the cached detections).

Why a replay is the real thing. ``StreamDecision`` is a pure function of
the detections it is fed in stream order (and of its parameters and play
threshold); the server, ``identify`` and the enrolment's calibration all
feed it ``Recognizer.detect_windows``' detections one window at a time.
Feeding it the cached detections therefore gives the plays the server
would give for the same windows, in seconds instead of minutes, and a
parameter variant can be judged honestly end to end:

1. its play threshold is recalibrated as enrolment would calibrate it
   for that variant: every calibration negative stream replayed with an
   infinite threshold, the evidence peaks of its hypotheses into
   ``decision.calibration.play_threshold`` at
   ``DecisionParams.false_plays_per_hour`` (floor as in
   ``training.play_calibration``);
2. every programme is replayed with that threshold;
3. the plays and the "now playing" answers are scored by
   ``broadcast_score`` against the programme's truth, as ``bench_broadcast``
   scores the server's.

A variant may also carry a **rule** (``Rule``): a small change of how a
supporting window adds evidence, tried here before it is proposed for
``decision/stream.py``. It is applied around the decision's own window
assignment (``RuleDecision``), so the rest of the decision is untouched.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .decision_data import unpack


@dataclass(frozen=True)
class Rule:
    """Evidence rules tried on top of ``StreamDecision`` (all off: the decision as it is).

    online_extra: evidence added for a window that supports its hypothesis
        *on* its offset line once the line already holds ``online_after``
        supporting windows (line agreement is what chance rarely gives).
    offline_no_bonus: a window that adds evidence off the line (a passing
        window at another offset) gets its margin only, not
        ``support_bonus``.
    """

    online_extra: float = 0.0
    online_after: int = 4
    offline_no_bonus: bool = False

    @property
    def active(self) -> bool:
        return self.online_extra > 0 or self.offline_no_bonus


def rule_decision_class():
    """``StreamDecision`` with the ``Rule`` applied after each window's assignment (imported lazily)."""
    from audiocopy.decision.stream import StreamDecision

    class RuleDecision(StreamDecision):
        """The stream decision plus a ``Rule``: evidence is adjusted right after the decision assigned a window.

        A hypothesis supported on its line by this window has no pending
        off-line window (``support`` clears it); one supported off its line
        keeps this window as pending.
        """

        def __init__(self, *args, rule: Rule, **kwargs):
            super().__init__(*args, **kwargs)
            self.rule = rule

        def _assign(self, det, t):
            peaks = {id(h): h.peak_evidence for h in self._hyps}
            super()._assign(det, t)
            p, r = self.params, self.rule
            scores = {c.track: c.score for c in det.candidates[:p.top_k]}
            for h in self._hyps:
                if not h.supported_now or h.track not in scores:
                    continue
                score = scores[h.track]
                off_line = h.pending is not None and h.pending[0] == t
                if off_line and r.offline_no_bonus:
                    h.evidence -= max(0.0, score + p.support_bonus) - max(0.0, score)
                elif not off_line and r.online_extra > 0 and len(h.observations) > r.online_after:
                    h.evidence += r.online_extra
                # The peak as it stood before this window, raised by the adjusted evidence by the decision's own rule.
                h.peak_evidence = peaks.get(id(h), 0.0)
                h.raise_peak(p)

    return RuleDecision


@dataclass(frozen=True)
class Variant:
    """One thing to try: a name, ``DecisionParams`` overrides and a ``Rule``."""

    name: str
    overrides: tuple = ()  # ((field, value), ...)
    rule: Rule = Rule()

    def params(self, base, unit: float = 1.0):
        """``base`` with the overrides, then in margin unit ``unit`` (the engine's, or a ``margin_unit``
        override: ``DecisionParams.in_margin_units``).

        The overrides are ``DecisionParams`` fields, so they are read as a configuration reads them: margin
        fields in the fingerprint engine's units, scaled with the rest (``--vary line_bonus=0.2`` is 4.8 logits
        for cnnbin at unit 24, as ``DecisionParams(line_bonus=0.2)`` would be).
        """
        over = dict(self.overrides)
        scale = over.pop("margin_unit", unit)
        return replace(base, **over).in_margin_units(scale)

    def to_json(self) -> dict:
        return {"name": self.name, "overrides": dict(self.overrides), "rule": asdict(self.rule)}


def new_decision(params, threshold: float, window_s: float, rule: Rule):
    """A fresh stream decision (plain ``StreamDecision`` when no rule is active), no pitch measurement."""
    from audiocopy.decision.stream import StreamDecision

    kwargs = {"window_s": window_s, "wall_start": 0.0, "threshold": threshold, "params": params}
    if rule.active:
        return rule_decision_class()("bench-decision", rule=rule, **kwargs)
    return StreamDecision("bench-decision", **kwargs)


class Detections:
    """Cached detections of many streams, unpacked once per ``top_k`` (unpacking costs more than a replay)."""

    def __init__(self, streams: list[dict], track_ids: list[str]):
        self.streams, self.track_ids = streams, track_ids
        self._unpacked: dict[int, list[list]] = {}

    def get(self, top_k: int) -> list[list]:
        if top_k not in self._unpacked:
            self._unpacked[top_k] = [unpack(s, self.track_ids, top_k=top_k) for s in self.streams]
        return self._unpacked[top_k]

    @property
    def hours(self) -> float:
        return sum(float(s["seconds"]) for s in self.streams) / 3600.0


def calibrate(negatives: Detections, params, window_s: float, rule: Rule) -> dict:
    """The play threshold this variant would get at enrolment (``training.play_calibration``'s rule)."""
    from audiocopy.decision.calibration import play_threshold, play_threshold_floor

    peaks: list[float] = []
    for dets in negatives.get(params.top_k):
        decision = new_decision(params, float("inf"), window_s, rule)
        for det in dets:
            decision.update(det)
        decision.finish()
        peaks += decision.evidence_peaks()
    hours = negatives.hours
    threshold = play_threshold(np.asarray(peaks), hours, rate_per_hour=params.false_plays_per_hour,
                               floor=play_threshold_floor(len(peaks), params))
    top = sorted(peaks, reverse=True)
    return {"threshold": threshold, "hypotheses": len(peaks), "hours": round(hours, 3),
            "top_peaks": [round(x, 3) for x in top[:5]],
            "negatives_over": sum(x >= threshold for x in peaks)}


def replay(dets: list, params, threshold: float, window_s: float, rule: Rule) -> tuple[list[dict], list[dict]]:
    """One stream's plays (as the server's ``play`` messages) and window rows (as ``broadcast_stream`` keeps)."""
    decision = new_decision(params, threshold, window_s, rule)
    plays, rows = [], []
    for det in dets:
        update = decision.update(det)
        plays += update.closed
        now = update.now
        start = float(det.offset_s or 0.0)
        rows.append({"start_s": start, "end_s": start + window_s, "match": det.track, "score": det.score,
                     "cands": [[c.track, c.score] for c in det.candidates[:3]],
                     "now": None if now is None else now.track,
                     "offset": None if now is None else now.track_offset_s})
    plays += decision.finish()
    return [p.to_json() for p in plays], rows


def run_variant(variant: Variant, base, negatives: Detections, programmes: dict, plans: dict,
                window_s: float, threshold: float | None = None, unit: float = 1.0) -> dict:
    """Calibrate (unless ``threshold`` is given), replay and score one variant.

    programmes: {chain: {programme name: Detections of one stream}};
    plans: {programme name: ``Plan.to_json()``}. Returns the calibration,
    the per-chain summaries (``broadcast_score.summarise``) and the false plays.
    """
    from .broadcast_score import score_stream, summarise

    params = variant.params(base, unit)
    cal = calibrate(negatives, params, window_s, variant.rule) if threshold is None else {"threshold": threshold}
    out = {"variant": variant.to_json(), "calibration": cal, "summary": {}, "false": {}}
    every = []
    for chain, streams in programmes.items():
        scored = []
        for name, dets in streams.items():
            plays, rows = replay(dets.get(params.top_k)[0], params, cal["threshold"], window_s, variant.rule)
            scored.append(score_stream(plans[name], plays, rows))
        out["summary"][chain] = summarise(scored)
        out["false"][chain] = [f for s in scored for f in s["false"]]
        out["missed"] = {**out.get("missed", {}), chain: [
            [it["programme"], it["item"], it["track"]] for s in scored for it in s["items"]
            if it["eligible"] and not it["found"]]}
        every += scored
    out["summary"]["all"] = summarise(every)
    return out
