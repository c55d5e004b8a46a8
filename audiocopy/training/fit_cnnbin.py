"""Fitting and calibrating the per-track spectrogram CNNs (``CnnParams.kind = "spectrogram"``).

The epoch loop, the validation split and the calibration here are shared
with the embedding heads (``training.fit_head``).

Place in the pipeline: offline, between the dataset (``training.dataset``)
and the ``cnnbin`` engine's artifacts. For one licensed track it

1. takes the track's augmented windows as positives, holding out a random
   ``validation_fraction`` of them (unseen distortion draws at unseen
   offsets) to pick the best epoch;
2. draws fresh negatives every epoch: half from the other licensed tracks
   (the confusions that matter most in a catalogue) and half from the
   training "wrong" tracks, one random source then one random window, so a
   long licensed track does not drown out a hundred short wrong ones;
3. from the fifth epoch on, mines hard negatives: a third of each epoch's
   negatives are the highest-scoring of a larger fresh draw
   (``mine_hard_negatives``);
4. jitters features on the fly (a shift of up to two log-frequency bins and
   a few frames in time) so 400 windows act like many more;
5. sets the track's threshold at the ``track_fpr`` quantile of its logits on
   the calibration tracks: music no model has trained on.

Why not hold out whole time regions of the positive track for validation?
A recognizer must know *every* part of a licensed track; a region held out
of training would be a region we cannot recognise. The positive validation
windows are therefore unseen draws of distortions and offsets, and the
honest generalisation test is the benchmark's independent distortions.

``calibrate_catalog`` then sets one offset for the whole catalogue so that
the best-scoring track's margin exceeds 0 on at most ``catalog_fpr`` of
music outside the catalogue, with ``catalog_fpr_confidence``, judged on
the calibration windows.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import CnnParams, TrainParams
from ..decision.calibration import quantile_threshold
from ..errors import DatasetError
from .dataset import Dataset, Source

log = logging.getLogger(__name__)

#: Largest feature jitter used in training: log-frequency bins and frames.
MAX_BIN_SHIFT = 2
MAX_FRAME_SHIFT = 6
#: Hard-negative mining: from this epoch on, every MINE_EVERY epochs, score
#: MINE_POOL_FACTOR x an epoch's negatives and keep the hardest; they make up
#: MINE_SHARE of each later epoch's negatives (the rest stay random).
MINE_FROM_EPOCH = 4
MINE_EVERY = 4
MINE_POOL_FACTOR = 3
MINE_SHARE = 0.3


def _take(data: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows of a memory-mapped float16 array as float32 (sorted reads are faster)."""
    order = np.argsort(index)
    rows = np.asarray(data[index[order]], dtype=np.float32)
    out = np.empty_like(rows)
    out[order] = rows
    return out


def shift_features(x: np.ndarray, bins: int, frames: int) -> np.ndarray:
    """Shift one (frames, bands) feature image, filling with its minimum.

    Positive ``bins`` moves content up in pitch, positive ``frames`` later in
    time; what falls off the edge is lost, like a real transposition or crop.
    """
    out = np.full_like(x, x.min())
    f, b = x.shape
    src_t = slice(max(0, -frames), f - max(0, frames))
    dst_t = slice(max(0, frames), f - max(0, -frames))
    src_b = slice(max(0, -bins), b - max(0, bins))
    dst_b = slice(max(0, bins), b - max(0, -bins))
    out[dst_t, dst_b] = x[src_t, src_b]
    return out


def jitter(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random small pitch/time shifts of half the windows in (n, frames, bands)."""
    out = batch.copy()
    for i in np.flatnonzero(rng.random(len(batch)) < 0.5):
        out[i] = shift_features(batch[i], int(rng.integers(-MAX_BIN_SHIFT, MAX_BIN_SHIFT + 1)),
                                int(rng.integers(-MAX_FRAME_SHIFT, MAX_FRAME_SHIFT + 1)))
    return out


class NegativeSampler:
    """Draws negative windows for one track from the training split.

    rows: what one source's windows are (default ``dataset.windows``, the
    features; the embedding head passes its embedded windows instead).
    """

    def __init__(self, dataset: Dataset, track_id: str, rows: Callable[[Source], np.ndarray] | None = None):
        self.dataset = dataset
        self.rows = rows or dataset.windows
        self.licensed = [s for s in dataset.sources if s.role == "licensed" and s.track_id != track_id]
        self.wrong = [s for s in dataset.sources if s.role == "wrong" and s.split == "train"]
        if not self.licensed and not self.wrong:
            raise DatasetError("no negative windows: add wrong tracks or more licensed tracks")

    def _from(self, sources: list[Source], n: int, rng: np.random.Generator) -> list[np.ndarray]:
        picks = rng.integers(len(sources), size=n)
        rows = []
        for s_idx in np.unique(picks):
            data = self.rows(sources[s_idx])
            count = int((picks == s_idx).sum())
            rows.append(_take(data, rng.integers(len(data), size=count)))
        return rows

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, ...) float32 negative rows, half licensed and half wrong when both exist."""
        n_lic = n // 2 if self.wrong else n
        if not self.licensed:
            n_lic = 0
        rows = (self._from(self.licensed, n_lic, rng) if n_lic else []) + \
               (self._from(self.wrong, n - n_lic, rng) if n - n_lic else [])
        return np.concatenate(rows)


def mine_hard_negatives(score: Callable[[np.ndarray], np.ndarray], sampler: NegativeSampler,
                        rng: np.random.Generator, *, pool: int, keep: int) -> np.ndarray:
    """The ``keep`` negatives the model currently scores highest, out of ``pool`` fresh draws.

    A catalogue of T tracks is judged on the *maximum* of T classifiers, so
    what limits it is each classifier's rare confident mistake, not its
    average one. Random negatives are mostly easy; training on the hardest
    ones (as in detector cascades and hard-example mining) spends the
    epochs on the tail that produces false positives.
    score: the model's logits of a batch of rows, (n, ...) -> (n,).
    Returns (keep, ...) float32 rows.
    """
    candidates = sampler.sample(pool, rng)
    scores = score(candidates)
    return candidates[np.argsort(-scores)[:keep]]


def calibration_windows(dataset: Dataset, rows: Callable[[Source], np.ndarray] | None = None) -> np.ndarray:
    """All windows of the calibration split, (n, ...) float16.

    rows: what one source's windows are (default ``dataset.windows``, the
    (frames, bands) features; the embedding heads pass their embedded rows).
    Kept in float16: with 1000 wrong tracks this is ~20,000 windows, 200 MB
    of features instead of 400 MB; consumers convert batch by batch.

    Empty (0 rows) when the dataset has no calibration tracks; training then
    falls back to the training negatives and logs that the thresholds are
    optimistic.
    """
    rows = rows or dataset.windows
    parts = [np.asarray(rows(s), dtype=np.float16) for s in dataset.calibration_sources()]
    if not parts:
        return np.zeros((0, *rows(dataset.sources[0]).shape[1:]), dtype=np.float16)
    return np.concatenate(parts)


@dataclass(frozen=True)
class FitResult:
    model: object
    threshold_logit: float
    metrics: dict


@dataclass(frozen=True)
class ValidationSplit:
    """One track's rows for training and epoch selection.

    pos_train: positives to train on; val, y_val: held-out positives (unseen
    distortion draws at unseen offsets) and fresh negatives with their labels;
    neg_val: those negatives alone (the threshold's fallback).
    """

    pos_train: np.ndarray
    val: np.ndarray
    y_val: np.ndarray
    neg_val: np.ndarray


def split_positives(pos: np.ndarray, sampler: NegativeSampler, train: TrainParams,
                    rng: np.random.Generator, track_id: str) -> ValidationSplit:
    """Hold out ``validation_fraction`` of a track's positive rows, with negatives to match.

    Raises ``DatasetError`` below 10 positive rows (nothing left to learn from).
    """
    if len(pos) < 10:
        raise DatasetError(f"track {track_id!r} has only {len(pos)} windows in the dataset")
    perm = rng.permutation(len(pos))
    n_val = max(2, int(len(pos) * train.validation_fraction))
    pos_val, pos_train = pos[perm[:n_val]], pos[perm[n_val:]]
    neg_val = sampler.sample(n_val * train.negatives_per_positive, rng)
    y_val = np.concatenate([np.ones(len(pos_val)), np.zeros(len(neg_val))]).astype(np.float32)
    return ValidationSplit(pos_train, np.concatenate([pos_val, neg_val]), y_val, neg_val)


def fit_epochs(model, split: ValidationSplit, sampler: NegativeSampler, train: TrainParams,
               rng: np.random.Generator, *, score: Callable[[np.ndarray], np.ndarray],
               fit: Callable[[np.ndarray, np.ndarray, dict], None],
               transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
               start_loss: float = np.inf) -> tuple[float, int]:
    """The epoch loop both track models share; leaves the best epoch's weights in ``model``.

    Every epoch draws fresh negatives (``negatives_per_positive`` per
    positive), from ``MINE_FROM_EPOCH`` on partly the hardest of a larger
    draw (``mine_hard_negatives``), trains one epoch with the positives
    weighted up to balance the classes, and keeps the weights with the lowest
    class-balanced loss on the validation rows; ``patience`` epochs without
    improvement stop it.
    score: rows -> (n,) logits; fit: (rows, labels, class_weight) -> one
    epoch of training; transform: optional augmentation of each epoch's rows;
    start_loss: the validation loss of the initial weights when they are a
    candidate themselves (epoch 0), else infinity.
    Returns the best validation loss and its epoch (0 = the initial weights).
    """
    class_weight = {0: 1.0, 1: float(train.negatives_per_positive)}
    best_loss, best_epoch, waited = start_loss, 0, 0
    best_weights = model.get_weights() if np.isfinite(start_loss) else None
    n_neg = len(split.pos_train) * train.negatives_per_positive
    hard = np.zeros((0, *split.pos_train.shape[1:]), dtype=np.float32)
    for epoch in range(train.epochs):
        if epoch >= MINE_FROM_EPOCH and (epoch - MINE_FROM_EPOCH) % MINE_EVERY == 0:
            hard = mine_hard_negatives(score, sampler, rng, pool=n_neg * MINE_POOL_FACTOR,
                                       keep=int(n_neg * MINE_SHARE))
        neg = np.concatenate([sampler.sample(n_neg - len(hard), rng), hard])
        x = np.concatenate([split.pos_train, neg])
        if transform is not None:
            x = transform(x, rng)
        y = np.concatenate([np.ones(len(split.pos_train)), np.zeros(len(neg))]).astype(np.float32)
        order = rng.permutation(len(x))
        fit(x[order], y[order], class_weight)
        val_loss = balanced_bce(score(split.val), split.y_val)
        if val_loss < best_loss - 1e-4:
            best_loss, best_weights, best_epoch, waited = val_loss, model.get_weights(), epoch + 1, 0
        else:
            waited += 1
            if waited >= train.patience:
                break
    model.set_weights(best_weights)
    return float(best_loss), best_epoch


def calibrate_track(score: Callable[[np.ndarray], np.ndarray], split: ValidationSplit, calibration: np.ndarray,
                    train: TrainParams, track_id: str) -> tuple[float, dict]:
    """A trained track model's threshold and its validation figures.

    The threshold is the ``track_fpr`` quantile of the model's logits on the
    calibration rows (music no model trained on); without calibration tracks
    it falls back to the validation negatives and says so.
    Returns (threshold logit, metrics: validation recall and negative false-positive rate at it,
    calibration windows used).
    """
    cal = calibration if len(calibration) else split.neg_val
    if not len(calibration):
        log.warning("no calibration tracks: threshold of %r set on training negatives (optimistic)", track_id)
    threshold = quantile_threshold(score(cal), train.track_fpr)
    val_logits = score(split.val)
    return threshold, {
        "val_recall": round(float((val_logits[split.y_val == 1] > threshold).mean()), 4),
        "val_negative_fpr": round(float((val_logits[split.y_val == 0] > threshold).mean()), 4),
        "calibration_windows": int(len(cal)),
    }


def fit_track(dataset: Dataset, track_id: str, *, cnn: CnnParams, train: TrainParams,
              calibration: np.ndarray, seed: int | None = None) -> FitResult:
    """Train and calibrate the spectrogram classifier of one licensed track.

    calibration: (n, frames, bands) float16 or float32 held-out negatives
    (see ``calibration_windows``).
    Returns the Keras model, its threshold (a logit) and metrics:
    best epoch, validation recall at the threshold, calibration false-positive
    rate, seconds spent.
    """
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()

    from ..signal.features import feature_shape
    from .models import build_track_cnn

    t0 = time.perf_counter()
    rng = np.random.default_rng(train.seed if seed is None else seed)
    keras.utils.set_random_seed(int(rng.integers(2**31)))
    source = dataset.source(track_id)
    pos = np.asarray(dataset.windows(source), dtype=np.float32)
    sampler = NegativeSampler(dataset, track_id)
    split = split_positives(pos, sampler, train, rng, track_id)

    model = build_track_cnn(feature_shape(audio=dataset.audio, params=dataset.features), cnn, name="track_cnn")
    model.compile(optimizer=keras.optimizers.Adam(train.learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))

    def fit(x, y, class_weight):
        model.fit(x, y, batch_size=train.batch_size, epochs=1, verbose=0, class_weight=class_weight, shuffle=False)

    best_loss, best_epoch = fit_epochs(model, split, sampler, train, rng, score=lambda x: batched_logits(model, x),
                                       fit=fit, transform=jitter)
    threshold, figures = calibrate_track(lambda x: batched_logits(model, x), split, calibration, train, track_id)
    metrics = {
        "best_epoch": best_epoch,
        "val_loss": round(best_loss, 4),
        **figures,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "positives": int(len(pos)),
    }
    return FitResult(model, threshold, metrics)


def batched_logits(model, x: np.ndarray, batch: int = 512,
                   inputs: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """(n,) logits of a Keras model, called directly (``predict`` retraces on every new size).

    x: (n, ...) rows, float16 or float32, converted batch by batch: by
    ``inputs`` when given (the embedding heads split each row into their two
    inputs), else to float32 (the spectrogram CNN's (frames, bands) features).
    """
    inputs = inputs or (lambda rows: np.asarray(rows, dtype=np.float32))
    out = [np.asarray(model(inputs(x[i:i + batch]), training=False))[:, 0] for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def balanced_bce(logits: np.ndarray, y: np.ndarray) -> float:
    """Class-balanced binary cross-entropy of logits (for epoch selection)."""
    loss = np.logaddexp(0, -logits) * y + np.logaddexp(0, logits) * (1 - y)
    return float(0.5 * loss[y == 1].mean() + 0.5 * loss[y == 0].mean())
