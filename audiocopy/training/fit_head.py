"""Fitting and calibrating the per-track embedding heads (``CnnParams.kind = "embedding"``).

Place in the pipeline: offline, between the dataset (``training.dataset``)
and the ``cnnbin`` engine's artifacts; the counterpart of
``training.fit_cnnbin`` for the head of ``training.models.build_track_head``.

Why a head on a shared encoder instead of a CNN trained from scratch. A
binary CNN that sees one track's 400 distorted windows and a few thousand
negatives for half a minute has to learn, on its own, that a recording sped
up by 10 % or transposed by two semitones is the same recording, and that
another piece by the same composer is not. It learns the first partly and
the second hardly: on the benchmark it reached 42 % of hits at 1 % false
positives. The fingerprint encoder (``encoder``) already learned
that invariance, contrastively, from thousands of distorted pairs of music
that is in no catalogue. A per-track model that starts from its embeddings
only has to learn what makes *this* track this track.

For one licensed track:

1. **Prototypes.** The track itself, decoded and cut into encoder
   sub-windows every ``CnnParams.hop_frames`` frames (0.16 s), embedded:
   these unit vectors are the initial kernels of the head's first layer.
   Sub-windows of digital silence get a bias that silences them
   (``stacked_head.UNINFORMATIVE_BIAS``).
2. **Biases from negatives.** Each prototype's bias is the
   ``CnnParams.negative_quantile`` quantile of its similarity to sub-windows
   of negative music (other licensed tracks and the training "wrong"
   tracks). A prototype that resembles everything (a sustained chord, a
   drum loop) then needs a closer match to count; a distinctive one counts
   at a lower similarity. It is the role that inverse document frequency
   plays in text search.
3. **Logit.** A one-feature logistic regression on the training positives
   and negatives sets the head's scale and bias.
4. **Fine-tuning.** The whole head (prototypes, biases, logit) is then
   trained with binary cross-entropy on the track's augmented windows
   against fresh negatives every epoch, with hard negatives mined as in
   ``fit_cnnbin``. Epoch 0 (the initialisation) is a candidate too: the best
   epoch on held-out positives and negatives is kept, so fine-tuning can
   only be adopted where it helps on data it did not see.
5. **Threshold** at the ``track_fpr`` quantile of the head's logits on the
   calibration tracks, as for the spectrogram CNN.

The encoder's embeddings of every dataset window are computed once per
training run (``embed_dataset``) and shared by all tracks.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..config import CnnParams, TrainParams
from ..encoder.subwindows import track_subwindows
from ..engines.cnnbin.stacked_head import UNINFORMATIVE_BIAS, embed_query_windows, informative
from ..errors import DatasetError
from ..signal.audio import load_audio
from ..signal.features import track_band_db
from .dataset import Dataset, Source
from .fit_cnnbin import (
    FitResult,
    NegativeSampler,
    balanced_bce,
    batched_logits,
    calibrate_track,
    fit_epochs,
    split_positives,
)

log = logging.getLogger(__name__)

#: Windows per encoder call while embedding the dataset.
EMBED_WINDOWS = 256
#: Negative sub-windows the prototype biases are measured on.
BIAS_SUBWINDOWS = 20_000
#: Size budget of one track's saved model (the offline core's contract).
MODEL_BUDGET_MB = 2.5


@dataclass(frozen=True)
class HeadInputs:
    """The encoder's view of every dataset window, computed once per run.

    by_file: per source shard (``Source.file``), (n, n_sub, dim + 1) float16:
    the sub-window embeddings with the informative flag as a last column (one
    array per source, so the negative sampler draws rows of both at once).
    """

    by_file: dict
    n_sub: int
    dim: int

    def rows(self, source: Source) -> np.ndarray:
        return self.by_file[source.file]


def split_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_sub, dim + 1) -> embeddings (n, n_sub, dim) and mask (n, n_sub), float32."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows[..., :-1], rows[..., -1]


def embed_dataset(dataset: Dataset, encoder, *, hop_frames: int, progress: bool = False) -> HeadInputs:
    """Embed the sub-windows of every window of every source of ``dataset``.

    RAM: n_sub x (dim + 1) x 2 bytes per window, 1.3 kB: 100 licensed tracks
    of 400 windows and 1000 wrong tracks of 48 are 112 MB.
    """
    from tqdm import tqdm

    by_file, n_sub = {}, 0
    for source in tqdm(dataset.sources, desc="embed dataset", unit="track", disable=not progress):
        windows = dataset.windows(source)
        parts = []
        for i in range(0, len(windows), EMBED_WINDOWS):
            emb, mask = embed_query_windows(encoder, np.asarray(windows[i:i + EMBED_WINDOWS], np.float32),
                                            hop_frames=hop_frames)
            parts.append(np.concatenate([emb, mask[..., None]], axis=-1).astype(np.float16))
        by_file[source.file] = np.concatenate(parts)
        n_sub = by_file[source.file].shape[1]
    return HeadInputs(by_file, n_sub, encoder.dim)


def track_prototypes(path: str, encoder, *, audio, features, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The track's own sub-window embeddings, one every ``hop_frames`` frames.

    path: the licensed track's audio file. Returns prototypes (K, dim)
    float32 and their informative flags (K,) float32.
    Raises ``AudiocopyError`` subclasses for unreadable audio.
    """
    band = track_band_db(load_audio(path, params=audio), audio=audio, features=features)
    sub = track_subwindows(band, frames=encoder.params.frames, hop_frames=hop_frames, floor_db=features.floor_db)
    return encoder.embed(sub), informative(sub)


def prototype_bias(prototypes: np.ndarray, flags: np.ndarray, negatives: np.ndarray, quantile: float) -> np.ndarray:
    """Per-prototype bias: minus its ``quantile`` similarity to negative sub-windows.

    prototypes: (K, dim); flags: (K,) informative flags; negatives:
    (m, dim) embeddings of informative negative sub-windows. Returns (K,)
    float32; uninformative prototypes get ``UNINFORMATIVE_BIAS``.
    """
    if len(negatives) == 0:
        bias = np.zeros(len(prototypes), dtype=np.float32)
    else:
        sims = negatives @ prototypes.T  # (m, K)
        k = min(len(sims) - 1, int(round(quantile * (len(sims) - 1))))
        bias = -np.partition(sims, k, axis=0)[k].astype(np.float32)
    return np.where(flags > 0, bias, np.float32(UNINFORMATIVE_BIAS)).astype(np.float32)


def _fit_logistic(raw: np.ndarray, y: np.ndarray, *, ridge: float = 1e-2, iterations: int = 25) -> tuple[float, float]:
    """Class-balanced 1-D logistic regression by Newton's method: logit = a * raw + c.

    ridge: L2 penalty on the slope. When the training rows separate
    perfectly (easy tracks do), the unpenalised slope grows without bound and
    the logits, and every margin derived from them, become meaningless
    hundreds; the penalty keeps them on the scale of a few units.
    """
    w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum()))
    x = np.stack([raw, np.ones_like(raw)], axis=1).astype(np.float64)
    penalty = np.diag([ridge, 0.0])
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ theta, -30, 30)))
        grad = x.T @ (w * (p - y)) + penalty @ theta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(2)
        theta -= np.linalg.solve(hess, grad)
    return float(theta[0]), float(theta[1])


def _head_logits(model, rows: np.ndarray) -> np.ndarray:
    """(n,) logits of a head for (n, n_sub, dim + 1) rows."""
    return batched_logits(model, rows, inputs=lambda batch: list(split_rows(batch)))


def _initialised_head(model, prototypes: np.ndarray, flags: np.ndarray, *, split, sampler: NegativeSampler,
                      inputs: HeadInputs, cnn: CnnParams, train: TrainParams, rng: np.random.Generator):
    """Epoch 0: prototypes from the track, biases from negatives, a logistic fit of the logit."""
    # Biases from negative sub-windows with content.
    emb, mask = split_rows(sampler.sample(max(1, BIAS_SUBWINDOWS // inputs.n_sub), rng))
    bias = prototype_bias(prototypes, flags, emb[mask > 0], cnn.negative_quantile)
    model.get_layer("prototypes").set_weights([prototypes.T.copy(), bias])
    # Scale and bias of the logit from the raw evidence of training rows.
    init_neg = sampler.sample(len(split.pos_train) * train.negatives_per_positive, rng)
    model.get_layer("logit").set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    raw = _head_logits(model, np.concatenate([split.pos_train, init_neg]))
    a, c = _fit_logistic(raw, np.concatenate([np.ones(len(split.pos_train)), np.zeros(len(init_neg))]))
    model.get_layer("logit").set_weights([np.full((1, 1), a, np.float32), np.full(1, c, np.float32)])
    return model


def fit_track_head(dataset: Dataset, track_id: str, *, encoder, inputs: HeadInputs, cnn: CnnParams,
                   train: TrainParams, calibration: np.ndarray, seed: int | None = None) -> FitResult:
    """Build, fine-tune and calibrate the embedding head of one licensed track.

    inputs: ``embed_dataset`` of ``dataset`` with ``encoder``.
    calibration: (n, n_sub, dim + 1) rows of the calibration tracks.
    Returns the Keras model, its threshold (a logit) and metrics (as
    ``fit_cnnbin.fit_track``, plus the number of prototypes and the
    validation loss of the initialisation).
    """
    # Long: the head's life in order (prototypes, initialisation, fine-tuning,
    # calibration, metrics); the initialisation is ``_initialised_head``.
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()

    from .models import build_track_head

    t0 = time.perf_counter()
    rng = np.random.default_rng(train.seed if seed is None else seed)
    keras.utils.set_random_seed(int(rng.integers(2**31)))
    source = dataset.source(track_id)
    prototypes, flags = track_prototypes(source.path, encoder, audio=dataset.audio, features=dataset.features,
                                         hop_frames=cnn.hop_frames)
    if len(prototypes) < inputs.n_sub:
        raise DatasetError(f"track {track_id!r} is shorter than one window ({len(prototypes)} sub-windows)")
    size_mb = prototypes.size * 4 / 1e6
    if size_mb > MODEL_BUDGET_MB:
        # Every 0.16 s of audio is a prototype: ~26 minutes fill the budget.
        log.warning("track %r is long (%d prototypes): its model will be about %.1f MB, over the %.1f MB "
                    "budget per track; cut very long recordings into tracks", track_id, len(prototypes),
                    size_mb, MODEL_BUDGET_MB)
    pos = np.asarray(inputs.rows(source), dtype=np.float32)
    sampler = NegativeSampler(dataset, track_id, rows=inputs.rows)
    split = split_positives(pos, sampler, train, rng, track_id)

    def build():
        return build_track_head(len(prototypes), n_sub=inputs.n_sub, dim=inputs.dim, tolerance=cnn.tolerance,
                                name="track_head")

    model = _initialised_head(build(), prototypes, flags, split=split, sampler=sampler, inputs=inputs, cnn=cnn,
                              train=train, rng=rng)
    model.compile(optimizer=keras.optimizers.Adam(train.head_learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))

    def fit(x, y, class_weight):
        model.fit(list(split_rows(x)), y, batch_size=train.batch_size, epochs=1, verbose=0,
                  class_weight=class_weight, shuffle=False)

    init_loss = balanced_bce(_head_logits(model, split.val), split.y_val)
    best_loss, best_epoch = fit_epochs(model, split, sampler, train, rng, score=lambda x: _head_logits(model, x),
                                       fit=fit, start_loss=init_loss)
    # Saved without the optimiser: a compiled Keras model also stores Adam's
    # two moments per weight, which would triple the file for nothing.
    best = model.get_weights()
    model = build()
    model.set_weights(best)
    threshold, figures = calibrate_track(lambda x: _head_logits(model, x), split, calibration, train, track_id)
    metrics = {
        "best_epoch": best_epoch,
        "init_val_loss": round(float(init_loss), 4),
        "val_loss": round(best_loss, 4),
        **figures,
        "prototypes": int(len(prototypes)),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "positives": int(len(pos)),
    }
    return FitResult(model, threshold, metrics)
