"""The accuracy report's two operating points on a tiny synthetic result set (``tools/bench``).

The shipped decision (what ``identify`` answers) and the hit % at FP ≤ 1 %
on the pooled unseen negatives are different questions; the targets apply
to the first. The numbers below are worked out by hand.
"""
from __future__ import annotations

import pytest
from bench.conditions import BY_NAME
from bench.report import accuracy_table, before_after, operating_points_text
from bench.scoring import accuracy_tables


def row(cond, expected, decided, top, top_score):
    return {"file": f"{cond}/{expected}", "condition": cond, "expected": expected, "decided": decided,
            "score": top_score, "top": top, "top_score": top_score}


@pytest.fixture(scope="module")
def acc():
    rows = [
        row("clean", "A", "A", "A", 0.5),      # hit at both points
        row("clean", "C", "B", "B", 0.4),      # wrong track
        row("clean", "D", None, "D", -0.1),    # no shipped answer, but above the FP <= 1 % threshold
        row("clean", "E", None, "E", -0.3),    # missed at both points
        row("phone", "P", "P", "P", 0.1),      # hit at both points
        row("phone", "Q", None, "Q", -0.1),    # hit only at FP <= 1 %
    ]
    # 100 pooled negatives: one answered as a track (0.3), one just under (-0.2), the rest far below.
    rows += [row("clean", None, "X", "X", 0.3), row("phone", None, None, "Y", -0.2)]
    rows += [row("clean" if i % 2 else "phone", None, None, "Z", -0.5) for i in range(98)]
    return accuracy_tables(rows, [BY_NAME["clean"], BY_NAME["phone"]])


def by_label(acc):
    return {r["label"]: r for r in acc["conditions"] + [acc["all"]]}


def test_threshold_on_pooled_negatives(acc):
    # floor(1 % of 100) = 1 negative may be above: the threshold is the second largest score.
    assert acc["pooled_negatives"] == 100 and acc["threshold_at_fpr"] == pytest.approx(-0.2)


def test_shipped_and_fixed_fpr_columns(acc):
    r = by_label(acc)
    clean = r["clean"]
    assert (clean["hit"], clean["wrong"], clean["fp"], clean["hit_at_fpr"]) == (25.0, 25.0, 2.0, 50.0)
    assert (r["phone"]["hit"], r["phone"]["fp"], r["phone"]["hit_at_fpr"]) == (50.0, 0.0, 100.0)
    assert (r["all conditions"]["hit"], r["all conditions"]["hit_at_fpr"]) == (33.3, 66.7)
    assert r["all conditions"]["fp"] == 1.0 and acc["answer_differs"] == 0


def test_targets_apply_to_the_shipped_decision(acc):
    phone = by_label(acc)["phone"]
    assert phone["target"] == 85.0 and phone["hit_at_fpr"] >= 85.0 and phone["met"] is False
    table = "\n".join(accuracy_table(acc))
    line = next(x for x in table.splitlines() if x.startswith("| phone"))
    assert "| 50.0 | 0.0 | 0.0 | 100.0 | ≥ 85 | **miss** |" in line
    assert "target (shipped hit %)" in table.splitlines()[0]
    assert "The targets apply to this column" in operating_points_text(acc, 2.5)


def test_before_after_table(acc):
    before = {"accuracy": acc, "stream_accuracy": None}
    lines = before_after({"accuracy": acc, "before": before})
    clean = next(x for x in lines if x.startswith("| clean"))
    assert clean.split("|")[1:4] == [" clean ", " 50.0 ", " – "]


def test_the_report_says_which_hold_out_set_the_threshold():
    """A group hold-out is named by its packages and window count, never as "the held-out fifth"."""
    from bench.common import calibration_source

    split = {"calibration": ["pkg-a__one", "pkg-a__two", "pkg-b__three"],
             "track_packages": {"pkg-a__one": "pkg-a", "pkg-a__two": "pkg-a", "pkg-b__three": "pkg-b"}}
    text = calibration_source(split, {"calibration_windows": 4505})
    assert text == "4505 windows of the 3 wrong tracks of 2 package(s) its encoder never trained on (pkg-a, pkg-b)"
    assert calibration_source({}, {}) == "the hold-out of the wrong tracks its encoder never trained on"


def test_the_report_names_the_hold_out_of_the_databases_own_rule():
    """A database calibrated on a larger hold-out (its encoder trained with ``--calibration-share``) is described
    by that hold-out, not by the default one the split recorded."""
    from bench.common import calibration_source

    from audiocopy.training.sources import holdout_tracks

    wrong = [f"pkg-{g}__t{t}" for g in "abcdefgh" for t in range(3 + "abcdefgh".index(g) % 3)]
    split = {"wrong": wrong, "calibration": sorted(holdout_tracks(wrong, "group")),
             "track_packages": {t: t.split("__")[0] for t in wrong}}
    larger = sorted(holdout_tracks(wrong, "group@0.5"))
    assert len(larger) > len(split["calibration"])
    text = calibration_source(split, {"calibration_windows": 10, "holdout": "group@0.5"})
    assert text.startswith(f"10 windows of the {len(larger)} wrong tracks of ")
    assert calibration_source(split, {"calibration_windows": 10}).startswith(
        f"10 windows of the {len(split['calibration'])} wrong tracks of ")
