"""Thresholds set on negatives: the one rule behind every "no match".

Place in the pipeline: a pure helper under the engines' calibration
(``training.fit_cnnbin`` per track and per catalogue, ``training.
enroll_fingerprint`` for the fingerprint threshold) and the benchmark's
operating point (``evaluation``).

How a threshold is calibrated. Scores of music that is *not* in the
catalogue (held-out negative tracks no model was trained on) are collected,
and the threshold is placed so that at most a target share of them exceed
it: with ``n`` negatives and a false-positive rate ``fpr``, exactly
``k = floor(fpr * n)`` of them (ties aside) score strictly above the
(k+1)-th largest score, which becomes the threshold. The rate is therefore
measured, not assumed, and it holds on new music to the extent the
negatives resemble it.
"""
from __future__ import annotations

import numpy as np


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
