"""The offline replay of the stream decision (``tools/bench_decision.py``, ``tools/bench/decision_*.py``).

Synthetic detections only (no database, no audio): the cache's packing
gives back the detections the engine gave, for every smaller ``top_k``;
a replay gives the plays a ``StreamDecision`` fed directly gives; the
evidence rules tried by the harness change evidence the way they say; a
variant's threshold comes from its own negatives; bad grid specs fail.
"""
from __future__ import annotations

import bench_decision
import numpy as np
import pytest
from bench.common import BenchError
from bench.decision_data import pack, unpack
from bench.decision_replay import Detections, Rule, calibrate, new_decision, replay

from audiocopy.config import DecisionParams
from audiocopy.decision.detection import decide_window
from audiocopy.decision.stream import StreamDecision

TRACKS = [f"t{i}" for i in range(8)]
HOP, WINDOW = 0.5, 2.5


def song(rng, n=120, track=3, mean=-0.04, silent_at=()):
    """Windows of one song on a line (offset = 10 + t) among random look-alikes; margins around ``mean``."""
    out = []
    for i in range(n):
        t = i * HOP
        margins = rng.normal(-0.4, 0.1, len(TRACKS)).astype(np.float32)
        margins[track] = mean + rng.normal(0, 0.05)
        offsets = rng.uniform(0, 100, len(TRACKS))
        offsets[track] = 10 + t + rng.normal(0, 0.1)
        if i % 17 == 0:
            offsets[2] = np.nan  # an engine that cannot tell
        out.append(decide_window(margins, offsets, TRACKS, start_s=t, top_k=10, silent=i in silent_at))
    return out


def noise(rng, n=600):
    """Negative music: every track weak, offsets anywhere."""
    return [decide_window(rng.normal(-0.3, 0.15, len(TRACKS)).astype(np.float32), rng.uniform(0, 100, len(TRACKS)),
                          TRACKS, start_s=i * HOP, top_k=10) for i in range(n)]


def test_pack_unpack_gives_the_detections_back_for_every_smaller_top_k():
    rng = np.random.default_rng(0)
    dets = song(rng, silent_at=(5,))
    arrays = pack(dets, TRACKS)
    assert unpack(arrays, TRACKS) == dets
    for k in (1, 3, 5):
        expect = [d.__class__(d.track, d.score, d.offset_s, d.candidates[:k], d.track_offset_s, d.silent)
                  for d in dets]
        assert unpack(arrays, TRACKS, top_k=k) == expect
    assert unpack(arrays, TRACKS)[5].silent and not unpack(arrays, TRACKS)[4].silent
    with pytest.raises(BenchError, match="top_k 11"):
        unpack(arrays, TRACKS, top_k=11)


def test_replay_gives_the_plays_of_a_decision_fed_directly():
    rng = np.random.default_rng(1)
    dets = noise(rng, 40) + [d.__class__(d.track, d.score, d.offset_s + 20, d.candidates, d.track_offset_s)
                             for d in song(rng)]
    params = DecisionParams()
    plays, rows = replay(dets, params, 1.0, WINDOW, Rule())
    direct = StreamDecision("x", window_s=WINDOW, wall_start=0.0, threshold=1.0, params=params)
    expect = [p for d in dets for p in direct.update(d).closed] + direct.finish()
    strip = [(p["track"], p["start_s"], p["end_s"]) for p in plays]
    assert strip == [(p.track, round(p.start_s, 3), round(p.end_s, 3)) for p in expect]
    assert [p["track"] for p in plays] == ["t3"]
    assert len(rows) == len(dets) and rows[-1]["now"] == "t3" and rows[0]["now"] is None


def _peak(dets, rule):
    d = new_decision(DecisionParams(), float("inf"), WINDOW, rule)
    for det in dets:
        d.update(det)
    return max(d.evidence_peaks())


def test_rules_change_evidence_as_they_say():
    rng = np.random.default_rng(2)
    dets = song(rng, n=60, mean=0.02)
    plain = _peak(dets, Rule())
    assert _peak(dets, Rule(online_extra=0.05, online_after=4)) > plain + 0.3
    # Only on-line support here, so dropping the bonus off the line changes nothing.
    assert _peak(dets, Rule(offline_no_bonus=True)) == pytest.approx(plain)
    # Passing windows at another offset each time: off-line support only, the bonus goes.
    jumpy = [d.__class__(d.track, d.score, d.offset_s,
                         tuple(c.__class__(c.track, 0.05 if c.track == "t3" else c.score,
                                           None if c.track_offset_s is None else (7 * k) % 90.0)
                               for c in d.candidates), d.track_offset_s) for k, d in enumerate(dets)]
    assert _peak(jumpy, Rule(offline_no_bonus=True)) < _peak(jumpy, Rule())


def test_a_variant_is_calibrated_on_its_own_negatives():
    rng = np.random.default_rng(3)
    negatives = Detections([{**pack(noise(rng), TRACKS), "seconds": 300.0} for _ in range(6)], TRACKS)
    low = calibrate(negatives, DecisionParams(support_margin=-0.08), WINDOW, Rule())
    high = calibrate(negatives, DecisionParams(support_margin=-0.3, support_bonus=0.3), WINDOW, Rule())
    assert negatives.hours == pytest.approx(0.5)
    assert high["threshold"] > low["threshold"] > 0
    assert high["hypotheses"] > 0 and high["negatives_over"] <= high["hypotheses"]


def test_grid_specs():
    vs = bench_decision.variants(["support_margin=-0.1,-0.2", "hold_s=20"], ["online_extra=0,0.05"])
    assert vs[0].name == "current" and len(vs) == 1 + 4
    assert {v.name for v in vs[1:]} == {"support_margin=-0.1 hold_s=20", "support_margin=-0.2 hold_s=20",
                                        "support_margin=-0.1 hold_s=20 online_extra=0.05",
                                        "support_margin=-0.2 hold_s=20 online_extra=0.05"}
    assert bench_decision.variants([], ["online_extra=0"]) == [vs[0]]
    for bad in (["nonsense=1"], ["support_margin"], ["support_margin="]):
        with pytest.raises(BenchError):
            bench_decision.variants(bad, [])


def test_a_variant_reads_its_margin_overrides_in_the_fingerprint_units_and_scales_them_with_the_rest():
    """``--vary line_bonus=0.2`` on cnnbin (unit 24) means what ``DecisionParams(line_bonus=0.2)`` means there:
    0.2 fingerprint units, 4.8 logits; the variant that overrides a field with its default is the defaults."""
    from bench.decision_replay import Variant

    base = DecisionParams()
    assert Variant("v", (("line_bonus", 0.2),)).params(base, unit=24.0) == \
        DecisionParams(line_bonus=0.2).in_margin_units(24.0)
    assert Variant("same", (("line_bonus", base.line_bonus),)).params(base, unit=24.0) == \
        Variant("current").params(base, unit=24.0)
    over_unit = Variant("u", (("margin_unit", 8.0), ("half_life_s", 12.0))).params(base, unit=24.0)
    assert over_unit == DecisionParams(half_life_s=12.0).in_margin_units(8.0)
