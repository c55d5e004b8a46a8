"""The per-track CNN engine: one small binary classifier per licensed track.

Place in the pipeline: an ``Engine`` (see ``engines``) between features and
the recognizer. Training lives in ``training.fit_cnnbin``; this module only
stores, loads and scores.

Each enrolled track owns two files in ``DB/tracks/``:

* ``<name>.keras``: the Keras model, of one of two kinds (``CnnParams.kind``):
  ``"embedding"`` (default), a head over the shared fingerprint encoder's
  sub-window embeddings (``training.models.build_track_head``, about 300 kB for a
  three-minute track), or ``"spectrogram"``, the seed's CNN on the
  log-frequency spectrogram (``training.models.build_track_cnn``, ~200 kB);
* ``<name>.json``: its self-description: the audio, feature and CNN
  parameters it was trained with (for the embedding kind also the SHA-256
  of the encoder whose embeddings it reads), its calibrated threshold (a
  logit), and its validation metrics.

All tracks of one database are of one kind. The embedding kind embeds each
window once with the encoder (ten sub-windows) and then scores every head
in one pass (``stacked_head``); the spectrogram kind runs the stacked CNNs
(``stacked_cnn``).

The threshold turns a raw logit into a **margin** = logit - threshold -
offset. Each track's threshold was chosen on held-out negative tracks so
that only ``track_fpr`` of their windows score above it, which puts all
tracks on one scale (distance from each track's own operating point, in
logits). The catalogue-wide ``score_offset`` in ``db.json`` then moves the
decision so that the *best* track's margin exceeds 0 on at most
``catalog_fpr`` of music outside the catalogue, with a stated confidence,
judged on those held-out windows: with many tracks the per-track false
positives add up, and the catalogue rate is what a user sees.

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

from ...atomic_files import atomic_write_json
from ...config import AudioParams, CnnParams, FeatureParams, as_dict, check_compatible, from_dict
from ...errors import ModelError, ParamsMismatch
from ...signal.features import standardise_windows, window_band_db
from ...signal.xp import array_module, to_numpy
from .. import EngineScores, WindowBatch, catalog
from .stacked_head import StackedHeads, embed_query_windows

log = logging.getLogger(__name__)

NAME = "cnnbin"
#: The database's own copy of the encoder the embedding heads read (older
#: databases have none and use the shipped encoder, if it is still the same).
ENCODER_FILE = "encoder.json"


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
    atomic_write_json(path, record)
    return path


def enrolled_track_ids(db: Path) -> set[str]:
    """Ids of tracks whose record is complete (used to resume training)."""
    if not (Path(db) / catalog.TRACKS_DIR).is_dir():
        return set()
    return {r["track_id"] for r in catalog.track_records(db)}


def record_kind(record: dict) -> str:
    """The model kind of a track record; records written before kinds existed are spectrogram CNNs."""
    cnn = record.get("cnn")
    return str(cnn.get("kind", "spectrogram")) if isinstance(cnn, dict) else "spectrogram"


def enrolled_kinds(db: Path) -> set[str]:
    """Model kinds of the tracks already in ``db`` (empty for a new database)."""
    if not (Path(db) / catalog.TRACKS_DIR).is_dir():
        return set()
    return {record_kind(r) for r in catalog.track_records(db)}


def _load_keras(path: Path):
    from ...quiet_imports import keras as quiet_keras

    keras = quiet_keras()

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zip errors
        raise ModelError(f"cannot load track model {path}: {exc}") from None


class CnnBinEngine:
    """Scores windows against every enrolled track in one batched pass.

    stack: the spectrogram kind's ``StackedCnn`` (None otherwise or without
    tracks); encoder and heads: the embedding kind's encoder and
    ``HeadWeights``. The heads are stacked on NumPy at once, and once more on
    the GPU the first time features arrive as CuPy arrays (the recognizer
    computes them there when a GPU is usable).
    """

    name = NAME

    def __init__(self, *, audio: AudioParams, features: FeatureParams, track_ids: list[str], stack,
                 thresholds: np.ndarray, cnn: CnnParams, score_offset: float = 0.0, encoder=None,
                 heads: list | None = None):
        self.audio = audio
        self.features = features
        self.track_ids = list(track_ids)
        self.cnn = cnn
        self.encoder = encoder
        # The catalogue offset is folded into the per-track thresholds once.
        self.thresholds = np.asarray(thresholds, dtype=np.float32) + np.float32(score_offset)
        self._stack = stack
        self._heads = heads
        self._head_stacks = {np: StackedHeads(heads)} if heads else {}

    def _heads_on(self, xp):
        """The stacked heads on array module ``xp`` (built once per module)."""
        if xp not in self._head_stacks:
            self._head_stacks[xp] = StackedHeads(self._heads, xp=xp)
        return self._head_stacks[xp]

    def score(self, batch: WindowBatch) -> EngineScores:
        """Margins of every track for every window, and offsets with the embedding heads.

        The window's log-frequency spectrogram is computed on the batch's
        array module (``signal.features.log_spectrogram``), the features
        every track model was trained on. Stream states are not needed:
        every window is scored whole.
        """
        levels = window_band_db(batch.samples, audio=self.audio, params=self.features, xp=batch.xp)
        scores = self.score_features(standardise_windows(levels, params=self.features, xp=batch.xp))
        profiles = np.asarray(to_numpy(levels.mean(axis=1)), dtype=np.float32)
        return EngineScores(scores.margins, scores.track_offsets_s, profiles)

    def score_features(self, features) -> EngineScores:
        """features: (batch, frames, bands), NumPy or CuPy -> margins (batch, n_tracks).

        With the embedding heads, each track's offset is where its best
        diagonal starts (the window's first sub-window matched that
        prototype); the spectrogram CNNs cannot tell (None).

        The entry point for features that are already computed (the
        dataset's calibration windows).
        """
        if not self.track_ids:
            return EngineScores(np.zeros((len(features), 0), dtype=np.float32))
        if self.encoder is None:
            return EngineScores(self._stack.logits(features) - self.thresholds[None, :])
        emb, mask = embed_query_windows(self.encoder, features, hop_frames=self.cnn.hop_frames)
        logits, where = self._heads_on(array_module(features)).logits(emb, mask, with_where=True)
        # Prototype k sits k * hop_frames feature frames into its track.
        seconds_per_prototype = self.cnn.hop_frames * self.features.hop_length / self.audio.sample_rate
        offsets = (where * seconds_per_prototype).astype(np.float32)
        return EngineScores(logits - self.thresholds[None, :], offsets)

    def track_profile(self, track_id: str, start_s: float, end_s: float) -> None:
        """cnnbin keeps no track spectra: its plays carry no pitch measurement."""
        return None

    def close(self) -> None:
        """Nothing to release: the models live in memory."""

    def refresh(self) -> bool:
        """cnnbin databases are reloaded whole by their owner (``Recognizer.open``): never in place."""
        return False


def _read_record(rec: dict, db: Path, info) -> tuple[CnnParams, float, Path]:
    """A track record's CNN parameters, threshold and model file, checked against the database."""
    where = rec["_path"]
    try:
        rec_audio = from_dict(AudioParams, rec["audio"])
        rec_feat = from_dict(FeatureParams, rec["features"])
        rec_cnn = from_dict(CnnParams, {**rec["cnn"], "kind": record_kind(rec)})
        threshold = float(rec["threshold_logit"])
        model_file = Path(db) / catalog.TRACKS_DIR / rec["model_file"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"track record {where} is malformed ({exc})") from None
    diffs = check_compatible(rec_audio, info.audio, "audio") + check_compatible(rec_feat, info.features, "features")
    if diffs:
        raise ParamsMismatch(f"track {rec['track_id']!r} ({where}) does not fit {db}: " + "; ".join(diffs))
    return rec_cnn, threshold, model_file


def _load_encoder_for(records: list[dict], info, db: Path):
    """The encoder every embedding record names (one SHA-256 for the whole database)."""
    from ...encoder.artifact import SHIPPED_ENCODER, load_encoder

    shas = {rec.get("encoder_sha256") for rec in records}
    if len(shas) != 1 or None in shas:
        raise ParamsMismatch(f"the track models of {db} name {len(shas)} different encoders "
                             f"({sorted(str(s)[:12] for s in shas)}); re-enrol them with one encoder")
    own = Path(db) / ENCODER_FILE
    return load_encoder(own if own.exists() else SHIPPED_ENCODER, audio=info.audio, features=info.features,
                        expect_sha256=shas.pop())


def _head_weights(records: list[dict], models: list, info, cnn: CnnParams, encoder) -> list:
    """The embedding heads' weights, each checked against the database's windows and encoder."""
    from ...encoder.subwindows import subwindow_starts
    from ...signal.features import feature_shape
    from .stacked_head import HeadWeights

    frames = feature_shape(audio=info.audio, params=info.features)[0]
    n_sub = len(subwindow_starts(frames, frames=encoder.params.frames, hop_frames=cnn.hop_frames))
    expected = (n_sub, encoder.dim)
    heads = []
    for rec, model in zip(records, models):
        shape = tuple(model.input_shape[0][1:]) if isinstance(model.input_shape, list) else None
        if shape != expected:
            raise ParamsMismatch(f"track model of {rec['track_id']!r} expects embeddings {shape}, the "
                                 f"database's windows and encoder give {expected}")
        heads.append(HeadWeights.from_keras(model))
    return heads


def _spectrogram_stack(records: list[dict], models: list, info):
    """The spectrogram CNNs stacked, each checked against the database's feature shape."""
    from ...signal.features import feature_shape
    from .stacked_cnn import CnnWeights, StackedCnn

    expected_shape = feature_shape(audio=info.audio, params=info.features)
    for rec, model in zip(records, models):
        if tuple(model.input_shape[1:]) != expected_shape:
            raise ParamsMismatch(f"track model of {rec['track_id']!r} expects input {model.input_shape[1:]}, "
                                 f"the database's features are {expected_shape}")
    return StackedCnn([CnnWeights.from_keras(m) for m in models])


def load(db: Path) -> CnnBinEngine:
    """Load every track of a cnnbin database, refusing mismatched artifacts."""
    info = catalog.open_db(db)
    if info.engine != NAME:
        raise ModelError(f"{db} is a {info.engine!r} database, not {NAME!r}")
    records = catalog.track_records(db)
    ids, models, thresholds, cnn = [], [], [], None
    for rec in records:
        rec_cnn, threshold, model_file = _read_record(rec, db, info)
        if cnn is not None and rec_cnn != cnn:
            raise ParamsMismatch(f"track {rec['track_id']!r} ({rec['_path']}) does not fit {db}: "
                                 f"cnn: {rec_cnn} differs from the other tracks' {cnn}")
        cnn = rec_cnn
        ids.append(rec["track_id"])
        models.append(_load_keras(model_file))
        thresholds.append(threshold)
    cnn = cnn or CnnParams()
    stack, encoder, heads = None, None, None
    if ids and cnn.kind == "embedding":
        encoder = _load_encoder_for(records, info, db)
        heads = _head_weights(records, models, info, cnn, encoder)
    elif ids:
        stack = _spectrogram_stack(records, models, info)
    if not ids:
        log.warning("database %s has no enrolled tracks; every query will be 'no match'", db)
    log.info("loaded %d cnnbin track models (%s) from %s", len(ids), cnn.kind, db)
    return CnnBinEngine(audio=info.audio, features=info.features, track_ids=ids, stack=stack,
                        thresholds=np.array(thresholds), cnn=cnn, encoder=encoder, heads=heads,
                        score_offset=float(info.calibration.get("score_offset", 0.0)))
