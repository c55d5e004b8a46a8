"""The encoder's training loop: epochs of NT-Xent steps, validation, checkpoints, export.

Place in the pipeline: offline, run by ``tools/train_encoder.py`` (see the
package docstring for what is learned and from which distortions). Each
epoch draws its batches from a generator seeded with (seed, epoch), so a run
resumed from its checkpoint continues exactly where an uninterrupted one
would have; the best encoder so far (by validation top-1) is exported after
every epoch that improves it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_write_json, read_json
from ...config import (
    ENCODER_AUGMENT,
    AudioParams,
    AugmentParams,
    EncoderParams,
    EncoderTrainParams,
    FeatureParams,
    as_dict,
)
from ...encoder.artifact import save_encoder
from ...engines import catalog
from ...errors import DatasetError
from ..models import encoder_model
from ..sources import stable_fraction, stable_seed
from .cache import build_cache, load_cache
from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .feature_views import FeatureAugmenter
from .loss import nt_xent
from .pairs import PairSampler
from .validation import make_validation

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------
# the cache


# --------------------------------------------------------------------------
# feature-space distortions


# --------------------------------------------------------------------------
# batches


# --------------------------------------------------------------------------
# loss and validation


# --------------------------------------------------------------------------
# the training loop


def split_tracks(paths: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, validation) split by a hash of the track id."""
    order = sorted(paths, key=lambda p: stable_fraction("val:" + p.stem))
    return sorted(order[n_val:]), sorted(order[:n_val])


def train_encoder(tracks: list[Path], work: Path, out: Path, *, audio: AudioParams = AudioParams(),
                  features: FeatureParams = FeatureParams(), encoder: EncoderParams = EncoderParams(),
                  aug: AugmentParams = ENCODER_AUGMENT, train: EncoderTrainParams = EncoderTrainParams(),
                  validation: list[Path] | None = None, track_weights: dict[str, float] | None = None,
                  max_minutes: float | None = None, provenance: dict | None = None,
                  next_stage: bool = False, progress: bool = True) -> TrainState:
    """Train (or resume training) the encoder and export the best weights to ``out``.

    tracks: training audio files. validation: held-out files whose retrieval
        picks the best epoch (default: ``train.val_tracks`` of ``tracks``,
        chosen by hash). work: cache and checkpoints. out: the encoder record
        path (``.json``; weights beside it as ``.npz``).
    track_weights: relative sampling weight by track id (file stem; default
        1 each), e.g. to draw real music as often as generated music.
    max_minutes: stop (after checkpointing) once this much wall time has
        been spent in this call; None runs all ``train.epochs``.
    provenance: extra JSON recorded in the exported artifact (corpus, command,
        the ids of the tracks trained on).
    next_stage: go on from the checkpoint in ``work`` with other augmentation
        (``aug``), as a new stage (``checkpoint.load_checkpoint``); the
        record lists every earlier stage's augmentation (``stages``).
    Returns the final training state (history: loss and validation per epoch).
    """
    # Long: the orchestration of a run (data, model, resume, epochs, export);
    # each step is its own function below.
    from ...quiet_imports import keras as quiet_keras

    keras = quiet_keras()

    if encoder.bands != features.n_bins:
        raise DatasetError(f"encoder bands {encoder.bands} != feature bands {features.n_bins}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    if validation is None:
        train_paths, val_paths = split_tracks(list(tracks), train.val_tracks)
    else:
        train_paths, val_paths = sorted(tracks), sorted(validation)
    train_cache, val_cache, hours = _training_data(train_paths, val_paths, work, audio=audio, features=features,
                                                   aug=aug, train=train, progress=progress)
    augmenter = FeatureAugmenter(audio=audio, features=features, aug=aug, seed=train.seed, frames=encoder.frames)
    weights = None if track_weights is None else {
        catalog.track_filename(p.stem): float(track_weights.get(p.stem, 1.0)) for p in train_paths}
    sampler = PairSampler(train_cache, augmenter=augmenter, train=train, floor_db=features.floor_db,
                          frames=encoder.frames, weights=weights)
    check = make_validation(val_cache, train_cache, sampler, train=train, floor_db=features.floor_db,
                            frames=encoder.frames)
    keras.utils.set_random_seed(train.seed)
    model = encoder_model(encoder)
    optimizer = _optimizer(train)
    # ``epochs`` is left out of the resume check so that a finished run can be
    # extended (the cosine schedule then stretches to the new length).
    meta = {"audio": as_dict(audio), "features": as_dict(features), "encoder": as_dict(encoder),
            "augment": as_dict(aug), "train": {k: v for k, v in as_dict(train).items() if k != "epochs"},
            "tracks": sorted(p.stem for p in train_paths), "val_tracks": sorted(p.stem for p in val_paths),
            "track_weights": None if weights is None else {k: weights[k] for k in sorted(weights)}}
    state = load_checkpoint(work, model, optimizer, meta, next_stage=next_stage)
    if state is None:
        state = TrainState()
        optimizer.build(model.trainable_variables)
    else:
        log.info("resuming at epoch %d (step %d, %.1f min trained)", state.epoch, state.step, state.seconds / 60)
        if next_stage and state.stages and state.stages[-1]["until_epoch"] == state.epoch:
            log.info("stage %d from epoch %d with other augmentation (the best validation starts afresh)",
                     len(state.stages) + 1, state.epoch)
    step, embed = _compiled(model, optimizer, train, encoder)
    deadline = None if max_minutes is None else t_start + 60 * max_minutes
    while state.epoch < train.epochs:
        if deadline is not None and time.monotonic() > deadline:
            log.info("time budget of %.1f min reached", max_minutes)
            break
        entry = _epoch(state, sampler, step, train, progress)
        entry.update(check.run(embed, encoder.frames))
        state.history.append(entry)
        log.info("epoch %d: loss %.3f, val top-1 %.3f (track %.3f), %.1f min", state.epoch, entry["loss"],
                 entry["top1"], entry["top1_track"], state.seconds / 60)
        improved = entry["top1"] > state.best_top1
        state.best_top1 = max(state.best_top1, entry["top1"])
        save_checkpoint(work, model, optimizer, state, meta)
        if improved:
            save_encoder(Path(out), model.get_weights(), [v.path for v in model.weights], params=encoder, audio=audio, features=features, training={
                **(provenance or {}), "epochs": state.epoch, "steps": state.step,
                "train_minutes": round(state.seconds / 60, 1), "train_tracks": len(train_cache),
                "train_hours": round(hours, 2), "val_tracks": len(val_cache), "best": entry,
                "history": state.history, "augment": as_dict(aug), "train": as_dict(train),
                **({"stages": state.stages} if state.stages else {})})
            log.info("exported the best encoder so far to %s", out)
    _record_run(Path(out), state)
    return state


def _training_data(train_paths: list[Path], val_paths: list[Path], work: Path, *, audio, features, aug, train,
                   progress: bool):
    """(training caches, validation caches, training hours), caching what is missing."""
    files = build_cache(train_paths + val_paths, work, audio=audio, features=features, aug=aug, train=train,
                        progress=progress)
    by_stem = {Path(f).stem: f for f in files}

    def cached(paths):
        return load_cache([by_stem[catalog.track_filename(p.stem)] for p in paths
                           if catalog.track_filename(p.stem) in by_stem])

    train_cache, val_cache = cached(train_paths), cached(val_paths)
    if not val_cache:
        raise DatasetError("no validation track could be cached")
    hours = sum(len(t.clean) for t in train_cache) * features.hop_length / audio.sample_rate / 3600
    log.info("training on %d tracks (%.2f h), validating on %d", len(train_cache), hours, len(val_cache))
    return train_cache, val_cache, hours


def _optimizer(train: EncoderTrainParams):
    """Adam on a cosine schedule with a linear warm-up."""
    from ...quiet_imports import keras as quiet_keras

    keras = quiet_keras()

    total_steps = train.epochs * train.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=train.learning_rate / 10, decay_steps=max(1, total_steps - train.warmup_steps),
        alpha=0.02, warmup_target=train.learning_rate, warmup_steps=train.warmup_steps)
    return keras.optimizers.Adam(learning_rate=schedule)


def _compiled(model, optimizer, train: EncoderTrainParams, encoder: EncoderParams):
    """(step(views, ids) -> loss, embed(x) -> vectors), traced once by TensorFlow."""
    from ...quiet_imports import tensorflow

    tf = tensorflow()

    variables = model.trainable_variables
    temperature, n_views = float(train.temperature), 1 + train.positives_per_anchor

    @tf.function(reduce_retracing=True)
    def step(views, ids):
        with tf.GradientTape() as tape:
            z = model(tf.reshape(views, (-1, encoder.frames, encoder.bands)), training=True)
            loss = nt_xent(z, ids, temperature, n_views)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def embed(x):
        return np.concatenate([np.asarray(infer(x[i:i + 512])) for i in range(0, len(x), 512)])

    return step, embed


def _epoch(state: TrainState, sampler: PairSampler, step, train: EncoderTrainParams, progress: bool) -> dict:
    """One epoch of steps (batches seeded by the epoch number); updates ``state``, returns its history entry."""
    from tqdm import tqdm

    rng = np.random.default_rng(stable_seed(train.seed, "epoch", state.epoch))
    t0 = time.monotonic()
    losses = []
    bar = tqdm(range(train.steps_per_epoch), desc=f"epoch {state.epoch + 1}/{train.epochs}", unit="step",
               disable=not progress, leave=False)
    for _ in bar:
        views, ids = sampler.batch(rng, train.batch_pairs)
        losses.append(float(step(views, ids)))
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    state.epoch += 1
    state.step += train.steps_per_epoch
    state.seconds += time.monotonic() - t0
    return {"epoch": state.epoch, "loss": round(float(np.mean(losses)), 4), "minutes": round(state.seconds / 60, 2)}


def _record_run(out: Path, state: TrainState) -> None:
    """Add the whole run (every epoch so far) to the exported record; the weights are untouched.

    The record was written when the best epoch was exported; later epochs
    that did not improve are only known here. Minutes are time inside the
    epochs, accumulated over resumed runs (cache building is not counted).
    """
    if not out.exists():
        return
    record = read_json(out, "encoder record")
    training = dict(record.get("training") or {})
    training.update({"run_epochs": state.epoch, "run_steps": state.step,
                     "run_train_minutes": round(state.seconds / 60, 1), "history": state.history})
    record["training"] = training
    atomic_write_json(out, record)
