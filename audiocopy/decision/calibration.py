"""Thresholds set on negatives: the rules behind every "no match" and every "no play".

Place in the pipeline: pure functions of ``decision``, used wherever a
threshold is calibrated: per track and per catalogue by cnnbin's training,
the fingerprint threshold at enrolment, the play threshold of the stream
decision, and the benchmark's operating point.

How a threshold is calibrated. Scores of music that is *not* in the
catalogue (held-out negative tracks no model was trained on) are collected,
and the threshold is placed so that at most a target share of them exceed
it: with ``n`` negatives and a false-positive rate ``fpr``, exactly
``k = floor(fpr * n)`` of them (ties aside) score strictly above the
(k+1)-th largest score, which becomes the threshold. The rate is therefore
measured, not assumed, and it holds on new music to the extent the
negatives resemble it.

Holding a stated rate, not only estimating it. A quantile read off ``n``
negatives is itself an estimate: on new music the true rate lands above
the target about as often as below it. The shipped decisions say "at most
0.5 %", so they use ``bounded_threshold``: it lets through only as many of
the ``n`` negatives (``k``) as keep the one-sided Clopper-Pearson upper
bound of the rate at or below the target with a stated confidence. Below
about ``n = log(1 - confidence) / log(1 - fpr)`` negatives no ``k``
qualifies, and the threshold is the largest negative score: no calibration
window passes, and a warning says the rate is not bounded.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def quantile_threshold(negative_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold with at most ``fpr`` of the negatives strictly above it.

    negative_scores: (n,) scores of negatives. With k = floor(fpr * n), the
    threshold is the (k+1)-th largest score, so exactly k negatives exceed it
    (ties aside); when fpr allows every negative, the smallest score.
    Raises ValueError when there are no negatives.
    """
    scores = np.asarray(negative_scores)
    if scores.size == 0:
        raise ValueError("no negatives to calibrate on")
    k = int(np.floor(fpr * scores.size))
    return float(np.sort(scores, axis=None)[::-1][min(k, scores.size - 1)])


def fpr_upper_bound(exceed: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``exceed`` of ``n``, at ``confidence``.

    With probability ``confidence`` the true rate is at most this (exact
    for independent trials; windows cut from one track are not quite, so it
    is a floor on the real uncertainty, never an overstatement of it).
    """
    from scipy.stats import beta

    if n <= 0:
        raise ValueError("no negatives to bound a rate on")
    if exceed >= n:
        return 1.0
    return float(beta.ppf(confidence, exceed + 1, n - exceed))


def bounded_threshold(negative_scores: np.ndarray, fpr: float, confidence: float) -> tuple[float, float]:
    """Threshold whose false-positive rate is at most ``fpr`` with ``confidence``; and that bound.

    negative_scores: (n,) scores of negatives. The threshold is the
    (k+1)-th largest score for the largest k whose upper bound
    (``fpr_upper_bound(k, n, confidence)``) is at most ``fpr``; when even
    k = 0 exceeds it, the largest score (no negative passes; logged as a
    warning). confidence 0
    is the plain ``quantile_threshold``.
    Returns (threshold, upper bound of the rate at it: 1.0 when unbounded;
    with confidence 0, the share of negatives above it).
    Raises ValueError when there are no negatives.
    """
    scores = np.sort(np.asarray(negative_scores), axis=None)[::-1]
    if scores.size == 0:
        raise ValueError("no negatives to calibrate on")
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0, 1), got {confidence!r}")
    k = min(int(np.floor(fpr * scores.size)), scores.size - 1)
    if confidence == 0.0:
        return float(scores[k]), k / scores.size
    while k >= 0 and fpr_upper_bound(k, scores.size, confidence) > fpr:
        k -= 1
    if k < 0:
        log.warning("%d negative windows are too few to hold %.3g false positives per window with %.0f %% "
                    "confidence: the threshold lets none of them through", scores.size, fpr, 100 * confidence)
        return float(scores[0]), 1.0
    return float(scores[k]), fpr_upper_bound(k, scores.size, confidence)


#: Largest hypotheses used to fit the tail of the negative evidence.
TAIL_SIZE = 20

#: What a database's play threshold was set on (``play_negatives`` in its
#: calibration, written by ``training.play_calibration``): the rate per hour
#: holds on new music only as far as these resemble it. Music the encoder
#: trained on forms fewer and weaker false hypotheses than music it never
#: heard, so a rate measured on it is optimistic.
PLAY_NEGATIVE_KINDS = {
    "unheard": "negatives its encoder never trained on",
    "holdout": "the calibration hold-out, which no track model was trained against",
    "heard": "negatives its encoder trained on (the false-play rate is optimistic)",
}


def play_threshold_floor(n_hypotheses: int, params) -> float:
    """The least play threshold a calibration on ``n_hypotheses`` negative hypotheses may set.

    params: the ``DecisionParams`` the threshold is for. Fewer than
    ``TAIL_SIZE`` hypotheses are too few to trust the fit of their tail, so
    the threshold is at least ``params.start_evidence``; with enough of them
    the fit stands down to three bare supporting windows
    (``3 * params.support_bonus``): a play rests on more than one weak window.
    Enrolment and the offline decision replay both read it, so a tuned
    variant is calibrated as enrolment would calibrate it.
    """
    return params.start_evidence if n_hypotheses < TAIL_SIZE else 3 * params.support_bonus


def play_threshold(peaks: np.ndarray, hours: float, *, rate_per_hour: float, floor: float) -> float:
    """Evidence a play needs so that negative music makes ``rate_per_hour`` false plays per hour.

    peaks: (n,) peak evidence of every hypothesis that negative streams
    formed (``StreamDecision.evidence_peaks`` with an infinite threshold);
    hours: how much negative audio that was; floor: the lowest threshold
    allowed (a play must rest on more than one weak window).

    Where the negatives are long enough to contain ``rate_per_hour * hours``
    or more hypotheses, the threshold is read off them like any quantile.
    A low rate (say 0.5 per hour) on an hour of negatives asks for fewer
    exceedances than one, so the tail is extrapolated: the excesses of the
    ``TAIL_SIZE`` largest peaks over the smallest of them are fitted by an
    exponential (the peaks-over-threshold model of extreme-value theory,
    whose maximum-likelihood scale is the mean excess), and the threshold is
    where the fitted rate falls to ``rate_per_hour``.
    """
    if hours <= 0 or rate_per_hour <= 0:
        raise ValueError(f"hours and rate_per_hour must be > 0, got {hours} and {rate_per_hour}")
    peaks = np.sort(np.asarray(peaks, dtype=np.float64))[::-1]
    allowed = int(np.floor(rate_per_hour * hours))
    if allowed >= TAIL_SIZE and allowed < peaks.size:
        return max(float(peaks[allowed]), floor)
    tail = peaks[:TAIL_SIZE]
    if tail.size < 2:
        return floor
    base = float(tail[-1])
    scale = max(float(np.mean(tail - base)), 1e-3)
    rate_at_base = tail.size / hours
    if rate_at_base <= rate_per_hour:
        return max(base, floor)
    return max(base + scale * float(np.log(rate_at_base / rate_per_hour)), floor)
