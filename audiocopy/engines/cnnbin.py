"""The per-track CNN engine: one small binary classifier per licensed track.

Place in the pipeline: an ``Engine`` (see ``engines``) between features and
the recognizer. Training lives in ``training.fit_cnnbin``; this module only
stores, loads and scores.

Each enrolled track owns two files in ``DB/tracks/``:

* ``<name>.keras``: the Keras model (``models.build_track_cnn``), ~100 kB;
* ``<name>.json``: its self-description: the audio, feature and CNN
  parameters it was trained with, its calibrated threshold (a logit), and
  its validation metrics.

The threshold turns a raw logit into a **margin** = logit - threshold -
offset. Each track's threshold was chosen on held-out negative tracks so
that only ``track_fpr`` of their windows score above it, which puts all
tracks on one scale (distance from each track's own operating point, in
logits). The catalogue-wide ``score_offset`` in ``db.json`` then moves the
decision so that the *best* track's margin exceeds 0 on only
``catalog_fpr`` of those held-out windows: with many tracks the per-track
false positives add up, and the catalogue rate is what a user sees.

Loading refuses any track whose parameters differ from the database's or
from the running code's: a model fed features it was not trained on returns
confident nonsense, which is worse than an error.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import catalog
from ..config import AudioParams, CnnParams, FeatureParams, as_dict, check_compatible, from_dict
from ..errors import ModelError, ParamsMismatch
from . import EngineScores

log = logging.getLogger(__name__)

NAME = "cnnbin"


@dataclass(frozen=True)
class TrackModel:
    """A trained, calibrated track classifier ready to be saved.

    model: the Keras model; threshold_logit: the calibrated decision
    threshold; metrics: validation/calibration figures (JSON-serialisable);
    extra: any other JSON-serialisable provenance (source file, timings).
    """

    track_id: str
    model: object
    threshold_logit: float
    cnn: CnnParams
    metrics: dict
    extra: dict


def save_track(db: Path, track: TrackModel, *, audio: AudioParams, features: FeatureParams) -> Path:
    """Write one track's model and record atomically; returns the record path.

    The model file is renamed into place before the record is written, and
    loaders only look at records, so an interrupted save leaves either the
    old state or the complete new one.
    """
    tracks_dir = Path(db) / catalog.TRACKS_DIR
    tracks_dir.mkdir(parents=True, exist_ok=True)
    base = catalog.track_filename(track.track_id)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=tracks_dir)
    os.close(fd)
    try:
        track.model.save(tmp)
        os.replace(tmp, tracks_dir / f"{base}.keras")
    finally:
        Path(tmp).unlink(missing_ok=True)
    record = {
        "track_id": track.track_id,
        "engine": NAME,
        "model_file": f"{base}.keras",
        "threshold_logit": float(track.threshold_logit),
        "audio": as_dict(audio),
        "features": as_dict(features),
        "cnn": as_dict(track.cnn),
        "metrics": track.metrics,
        **track.extra,
    }
    path = tracks_dir / f"{base}.json"
    catalog.atomic_write_json(path, record)
    return path


def enrolled_track_ids(db: Path) -> set[str]:
    """Ids of tracks whose record is complete (used to resume training)."""
    if not (Path(db) / catalog.TRACKS_DIR).is_dir():
        return set()
    return {r["track_id"] for r in catalog.track_records(db)}


def _load_keras(path: Path):
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zip errors
        raise ModelError(f"cannot load track model {path}: {exc}") from None


class CnnBinEngine:
    """Scores windows against every enrolled track in one batched pass."""

    name = NAME

    def __init__(self, *, audio: AudioParams, features: FeatureParams, track_ids: list[str],
                 models: list, thresholds: np.ndarray, cnn: CnnParams, score_offset: float = 0.0):
        from .stacked_cnn import CnnWeights, StackedCnn

        self.audio = audio
        self.features = features
        self.track_ids = list(track_ids)
        self.cnn = cnn
        # The catalogue offset is folded into the per-track thresholds once.
        self.thresholds = np.asarray(thresholds, dtype=np.float32) + np.float32(score_offset)
        self._stack = StackedCnn([CnnWeights.from_keras(m) for m in models]) if models else None

    def score(self, features) -> EngineScores:
        """features: (batch, frames, bands) -> margins (batch, n_tracks)."""
        if self._stack is None:
            return EngineScores(np.zeros((len(features), 0), dtype=np.float32))
        return EngineScores(self._stack.logits(features) - self.thresholds[None, :])


def load(db: Path) -> CnnBinEngine:
    """Load every track of a cnnbin database, refusing mismatched artifacts."""
    from ..features import feature_shape

    info = catalog.open_db(db)
    if info.engine != NAME:
        raise ModelError(f"{db} is a {info.engine!r} database, not {NAME!r}")
    records = catalog.track_records(db)
    ids, models, thresholds, cnn = [], [], [], None
    expected_shape = feature_shape(audio=info.audio, params=info.features)
    for rec in records:
        where = rec["_path"]
        try:
            rec_audio = from_dict(AudioParams, rec["audio"])
            rec_feat = from_dict(FeatureParams, rec["features"])
            rec_cnn = from_dict(CnnParams, rec["cnn"])
            threshold = float(rec["threshold_logit"])
            model_file = Path(db) / catalog.TRACKS_DIR / rec["model_file"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"track record {where} is malformed ({exc})") from None
        diffs = check_compatible(rec_audio, info.audio, "audio") + check_compatible(rec_feat, info.features, "features")
        if cnn is not None and rec_cnn != cnn:
            diffs.append(f"cnn: {rec_cnn} differs from the other tracks' {cnn}")
        if diffs:
            raise ParamsMismatch(f"track {rec['track_id']!r} ({where}) does not fit {db}: " + "; ".join(diffs))
        cnn = rec_cnn
        model = _load_keras(model_file)
        if tuple(model.input_shape[1:]) != expected_shape:
            raise ParamsMismatch(f"track model {model_file} expects input {model.input_shape[1:]}, "
                                 f"the database's features are {expected_shape}")
        ids.append(rec["track_id"])
        models.append(model)
        thresholds.append(threshold)
    if not ids:
        log.warning("database %s has no enrolled tracks; every query will be 'no match'", db)
    log.info("loaded %d cnnbin track models from %s", len(ids), db)
    return CnnBinEngine(audio=info.audio, features=info.features, track_ids=ids, models=models,
                        thresholds=np.array(thresholds), cnn=cnn or CnnParams(),
                        score_offset=float(info.calibration.get("score_offset", 0.0)))
