"""Thresholds that hold a stated false-positive rate (``decision.calibration.bounded_threshold``).

A quantile read off n negatives lands, on new music, above its target about
half the time: the rate it states is an estimate. The shipped decisions
bound it instead. These tests draw negatives whose true tail is known (a
standard normal), so the true rate at any threshold is exact.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from audiocopy.config import MatchParams, TrainParams
from audiocopy.decision.calibration import bounded_threshold, fpr_upper_bound, quantile_threshold
from audiocopy.errors import ConfigError

FPR = 0.005


def true_rates(n: int, confidence: float, seeds: int = 300) -> np.ndarray:
    """The true false-positive rate at the threshold set on n normal negatives, for each seed."""
    out = []
    for seed in range(seeds):
        scores = np.random.default_rng(seed).normal(size=n)
        out.append(norm.sf(bounded_threshold(scores, FPR, confidence)[0]))
    return np.array(out)


def test_the_bounded_threshold_holds_the_rate_with_its_confidence():
    held = (true_rates(2000, 0.9) <= FPR).mean()
    assert held >= 0.85  # nominal 0.9; binomial sd of the share over 300 seeds ~0.017


def test_the_plain_quantile_does_not_hold_it():
    """What the bound mends: the plain quantile's true rate is above the target about half the time."""
    held = (true_rates(2000, 0.0) <= FPR).mean()
    assert 0.3 < held < 0.7


def test_confidence_zero_is_the_plain_quantile():
    scores = np.random.default_rng(1).normal(size=1088)
    threshold, seen = bounded_threshold(scores, FPR, 0.0)
    assert threshold == quantile_threshold(scores, FPR)
    assert seen == pytest.approx((scores > threshold).mean())


def test_the_bound_reported_is_the_clopper_pearson_bound_at_the_threshold():
    scores = np.random.default_rng(2).normal(size=1088)
    threshold, bound = bounded_threshold(scores, FPR, 0.9)
    k = int((scores > threshold).sum())
    assert bound == pytest.approx(fpr_upper_bound(k, scores.size, 0.9))
    assert bound <= FPR < fpr_upper_bound(k + 1, scores.size, 0.9)


def test_too_few_negatives_let_none_through_and_say_the_rate_is_unbounded(caplog):
    # 0.9 confidence of at most 0.5 % needs ~460 negatives even with none above.
    scores = np.random.default_rng(3).normal(size=300)
    with caplog.at_level("WARNING", logger="audiocopy.decision.calibration"):
        threshold, bound = bounded_threshold(scores, FPR, 0.9)
    assert threshold == scores.max() and bound == 1.0
    assert "300 negative windows are too few" in caplog.text


def test_upper_bound_of_a_known_case():
    # No exceedance in n trials: the bound is 1 - (1 - confidence) ** (1 / n) (the "rule of three" at 95 %).
    assert fpr_upper_bound(0, 1000, 0.95) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert fpr_upper_bound(5, 5, 0.9) == 1.0


@pytest.mark.parametrize("confidence", [-0.1, 1.0, 1.5])
def test_bad_confidence_is_refused(confidence):
    with pytest.raises(ValueError, match="confidence"):
        bounded_threshold(np.zeros(10), FPR, confidence)


def test_no_negatives_is_refused():
    with pytest.raises(ValueError, match="no negatives"):
        bounded_threshold(np.zeros(0), FPR, 0.9)
    with pytest.raises(ValueError, match="no negatives"):
        fpr_upper_bound(0, 0, 0.9)


@pytest.mark.parametrize("confidence", [-0.1, 1.0])
def test_match_params_refuse_a_bad_confidence(confidence):
    with pytest.raises(ConfigError, match="fpr_confidence"):
        MatchParams(fpr_confidence=confidence)


def test_shipped_decisions_bound_their_rate():
    assert MatchParams().fpr_confidence == 0.9
    assert TrainParams().catalog_fpr_confidence == 0.9
