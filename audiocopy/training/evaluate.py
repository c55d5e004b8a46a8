"""Accuracy metrics for labelled queries, shared by the CLI and the benchmark.

Place in the pipeline: beside the CLI, on top of the recognizer. A query is
an audio file with its expected answer: a track id, or None for music that
is not in the catalogue (an "unseen negative").

Reported figures (all in %):

* ``hit``: positives whose decision is the expected track;
* ``wrong``: positives decided as another track (the costly mistake);
* ``fp``: negatives decided as any track, at the calibrated decision;
* ``hit_at_fpr``: positives whose top candidate is the expected track with a
  score above the threshold that keeps ``fp`` <= ``max_fpr`` on the
  negatives. This fixes the operating point on the data, so engines with
  differently calibrated scores compare fairly.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..decision.calibration import quantile_threshold
from ..errors import AudiocopyError


@dataclass(frozen=True)
class QueryResult:
    """One evaluated query: expected answer, decision, top candidate and score."""

    expected: str | None
    decided: str | None
    top: str | None
    score: float


def threshold_for_fpr(negative_scores: np.ndarray, max_fpr: float) -> float:
    """Lowest score threshold with at most ``max_fpr`` of negatives strictly above it."""
    # Where every negative may pass (none, or max_fpr allows all), nothing is cut: -inf.
    if negative_scores.size == 0 or int(np.floor(max_fpr * negative_scores.size)) >= negative_scores.size:
        return float("-inf")
    return quantile_threshold(negative_scores, max_fpr)


def summarize(results: list[QueryResult], *, max_fpr: float, negatives: list[QueryResult] | None = None) -> dict:
    """Metrics of a set of queries.

    negatives: the negative queries that fix the ``hit_at_fpr`` threshold
    (default: the negatives inside ``results``); ``fp`` and ``negatives``
    always describe the negatives inside ``results``. Passing one shared
    negative set judges every distortion condition at one operating point.
    """
    pos = [r for r in results if r.expected is not None]
    neg = [r for r in results if r.expected is None]
    reference = neg if negatives is None else [r for r in negatives if r.expected is None]
    tau = threshold_for_fpr(np.array([r.score for r in reference], dtype=float), max_fpr)

    def pct(n, d):
        return round(100.0 * n / d, 1) if d else None

    return {
        "positives": len(pos),
        "negatives": len(neg),
        "hit": pct(sum(r.decided == r.expected for r in pos), len(pos)),
        "wrong": pct(sum(r.decided is not None and r.decided != r.expected for r in pos), len(pos)),
        "fp": pct(sum(r.decided is not None for r in neg), len(neg)),
        "hit_at_fpr": pct(sum(r.top == r.expected and r.score > tau for r in pos), len(pos)),
        "threshold_at_fpr": None if not np.isfinite(tau) else round(tau, 4),
    }


def read_truth(path: Path) -> list[tuple[str, str | None]]:
    """Read a TSV of ``file<TAB>expected track id`` (empty id = negative).

    Relative file paths are taken relative to the TSV's folder. Lines starting
    with '#' and a header line starting with 'file' are skipped.
    """
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AudiocopyError(f"cannot read truth file {path}: {exc}") from None
    out = []
    for n, row in enumerate(rows, 1):
        if not row or row[0].startswith("#") or (n == 1 and row[0] == "file"):
            continue
        file = Path(row[0]) if Path(row[0]).is_absolute() else path.parent / row[0]
        expected = row[1].strip() if len(row) > 1 and row[1].strip() else None
        out.append((str(file), expected))
    if not out:
        raise AudiocopyError(f"truth file {path} lists no queries")
    return out


def evaluate_queries(db: Path, truth: list[tuple[str, str | None]], *, max_fpr: float = 0.01,
                     progress: bool = True) -> dict:
    """Identify every query of ``truth`` with the database and summarise."""
    from tqdm import tqdm

    from ..decision.files import analyse_signal
    from ..decision.recognizer import Recognizer
    from ..signal.audio import load_audio

    recognizer = Recognizer.open(db)
    results, errors = [], []
    for file, expected in tqdm(truth, desc="evaluate", unit="file", disable=not progress):
        try:
            det = analyse_signal(recognizer, load_audio(file, params=recognizer.audio), source=str(file)).answer
        except AudiocopyError as exc:
            errors.append(str(exc))
            continue
        top = det.candidates[0].track if det.candidates else None
        results.append(QueryResult(expected, det.track, top, det.score))
    summary = summarize(results, max_fpr=max_fpr)
    summary["errors"] = errors
    return summary
