"""Enrolment for the cnnbin engine: dataset -> trained, calibrated database.

Place in the pipeline: the top of the offline side, called by the CLI
(``audiocopy dataset``, ``train``, ``enroll``) and by ``tools/utility.py``.

``train_catalog`` trains every licensed track of a dataset that the database
does not hold yet (so an interrupted run resumes by skipping finished
tracks; each track is saved as soon as it is trained), then stores the
calibration windows in the database and sets the catalogue offset (see
``engines.cnnbin``). Keeping the calibration windows in
``DB/calibration.npy`` lets a later ``remove`` or ``add`` recalibrate
without the dataset.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_open
from ..config import AudioParams, AugmentParams, CnnParams, DatasetParams, DecisionParams, FeatureParams, TrainParams
from ..decision.calibration import bounded_threshold
from ..decision.recognizer import stored_margin_unit
from ..engines import catalog, metadata
from ..engines.cnnbin import engine as cnnbin
from ..errors import DatasetError
from .dataset import BuildPlan, Dataset, build_dataset
from .fit_cnnbin import calibration_windows, fit_track
from .play_calibration import PLAY_KEYS, calibrate_play_threshold
from .sources import list_audio

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.npy"


@dataclass(frozen=True)
class TrainReport:
    trained: list[str]
    skipped: list[str]
    seconds_per_track: float
    score_offset: float


def train_catalog(dataset_dir: Path, db: Path, *, cnn: CnnParams = CnnParams(), train: TrainParams = TrainParams(),
                  tracks: list[str] | None = None, progress: bool = True) -> TrainReport:
    """Train (or resume training) every licensed track of a dataset into ``db``.

    tracks: restrict to these track ids (default: all licensed tracks).
    """
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()
    from tqdm import tqdm

    dataset = Dataset(dataset_dir)
    catalog.create_db(db, catalog.DbInfo(cnnbin.NAME, dataset.audio, dataset.features))
    wanted = dataset.licensed_ids() if tracks is None else list(tracks)
    unknown = sorted(set(wanted) - set(dataset.licensed_ids()))
    if unknown:
        raise DatasetError(f"not in dataset {dataset_dir}: {unknown}")
    done = cnnbin.enrolled_track_ids(db)
    kinds = cnnbin.enrolled_kinds(db)
    if kinds and kinds != {cnn.kind}:
        raise DatasetError(f"{db} holds {sorted(kinds)} track models; cannot add {cnn.kind!r} ones to it "
                           "(use another --db, or remove its tracks first)")
    todo = [t for t in wanted if t not in done]
    calibration = calibration_windows(dataset)
    fit = _track_fitter(dataset, cnn, train, progress, Path(db))
    trained, seconds = [], []
    for track_id in tqdm(todo, desc="train", unit="track", disable=not progress):
        t0 = time.perf_counter()
        result, extra = fit(track_id, calibration,
                            seed=train.seed + 1000 * (dataset.licensed_ids().index(track_id) + 1))
        cnnbin.save_track(db, cnnbin.TrackModel(track_id, result.model, result.threshold_logit, cnn, result.metrics,
                                                {"source": dataset.source(track_id).path,
                                                 "train": {"epochs": train.epochs, "seed": train.seed}, **extra}),
                          audio=dataset.audio, features=dataset.features)
        seconds.append(time.perf_counter() - t0)
        trained.append(track_id)
        # Keras keeps every model ever built in its global state; this lets the
        # finished track's model and traced functions be freed.
        keras.backend.clear_session()
        log.info("trained %s in %.1f s: %s", track_id, seconds[-1], result.metrics)
    if len(calibration):
        with atomic_open(Path(db) / CALIBRATION_FILE) as fh:
            np.save(fh, calibration.astype(np.float16))
    offset = calibrate_catalog(db, catalog_fpr=train.catalog_fpr, confidence=train.catalog_fpr_confidence)
    # The play threshold, on the same held-out negatives as the thresholds
    # (each played whole, as a stream), when the catalogue changed, it has
    # none, or it was set for another margin unit than this version's.
    held_out = [Path(s.path) for s in dataset.calibration_sources()]
    cal = catalog.open_db(db).calibration
    stale = stored_margin_unit(cal) != DecisionParams().margin_unit(cnnbin.NAME)
    if held_out and (trained or "play_threshold" not in cal or stale):
        calibrate_play_threshold(Path(db), [p for p in held_out if p.exists()], kind="holdout")
    return TrainReport(trained, [t for t in wanted if t in done],
                       float(np.mean(seconds)) if seconds else 0.0, offset)


def _track_fitter(dataset: Dataset, cnn: CnnParams, train: TrainParams, progress: bool, db: Path):
    """``fit(track_id, calibration, seed) -> (FitResult, extra record fields)`` for ``cnn.kind``.

    The embedding kind uses the database's own copy of the encoder (a new
    database copies the shipped one, so retraining the shipped encoder never
    breaks it) and embeds the whole dataset once (only when there is a track
    to train); every track's head reuses those embeddings, and its record
    names the encoder's SHA-256, which ``engines.cnnbin.load`` checks.
    """
    if cnn.kind == "spectrogram":
        def fit_spectrogram(track_id, calibration, seed):
            return fit_track(dataset, track_id, cnn=cnn, train=train, calibration=calibration, seed=seed), {}

        return fit_spectrogram
    if cnn.kind != "embedding":
        raise DatasetError(f"unknown track model kind {cnn.kind!r} (expected 'embedding' or 'spectrogram')")
    from ..encoder.artifact import SHIPPED_ENCODER, copy_encoder, load_encoder
    from ..engines.cnnbin.engine import ENCODER_FILE
    from .fit_head import embed_dataset, fit_track_head

    state: dict = {}

    def fit_embedding(track_id, calibration, seed):
        if not state:  # first track: load the encoder and embed the dataset
            if not (Path(db) / ENCODER_FILE).exists():
                copy_encoder(SHIPPED_ENCODER, Path(db), name=Path(ENCODER_FILE).stem)
            encoder = load_encoder(Path(db) / ENCODER_FILE, audio=dataset.audio, features=dataset.features)
            inputs = embed_dataset(dataset, encoder, hop_frames=cnn.hop_frames, progress=progress)
            state.update(encoder=encoder, inputs=inputs, calibration=calibration_windows(dataset, inputs.rows))
        result = fit_track_head(dataset, track_id, encoder=state["encoder"], inputs=state["inputs"], cnn=cnn,
                                train=train, calibration=state["calibration"], seed=seed)
        return result, {"encoder_sha256": state["encoder"].sha256}

    return fit_embedding


def recalibrate_catalog(db: Path) -> float:
    """``calibrate_catalog`` with the rate and confidence the database was calibrated with (after a removal).

    A database calibrated before the confidence existed keeps its plain
    quantile (confidence 0) until it is trained again.
    """
    cal = catalog.open_db(db).calibration
    return calibrate_catalog(db, catalog_fpr=cal.get("catalog_fpr", TrainParams().catalog_fpr),
                             confidence=cal.get("catalog_fpr_confidence", 0.0))


def calibrate_catalog(db: Path, *, catalog_fpr: float, confidence: float = TrainParams().catalog_fpr_confidence
                      ) -> float:
    """Set the catalogue-wide score offset from the stored calibration windows.

    The offset is set on the best track's margin over the held-out windows
    so that, with ``confidence``, at most ``catalog_fpr`` of unrelated music
    is called a match (``decision.calibration.bounded_threshold``; 0 reads
    the plain quantile). Returns the offset (0 when the database has no
    calibration windows or no tracks).
    """
    path = Path(db) / CALIBRATION_FILE
    # The play threshold is carried over (``enroll`` redoes it with negatives).
    kept = {k: v for k, v in catalog.open_db(db).calibration.items() if k in PLAY_KEYS}
    catalog.set_calibration(db, kept)
    if not path.exists():
        log.warning("%s has no calibration windows; catalogue offset left at 0", db)
        return 0.0
    engine = cnnbin.load(Path(db))
    if not engine.track_ids:
        return 0.0
    windows = np.load(path).astype(np.float32)
    best = np.concatenate([engine.score_features(windows[i:i + 256]).margins.max(axis=1)
                           for i in range(0, len(windows), 256)])
    raw, bound = bounded_threshold(best, catalog_fpr, confidence)
    offset = max(0.0, raw)
    catalog.set_calibration(db, {"score_offset": offset, "catalog_fpr": catalog_fpr,
                                 "catalog_fpr_confidence": confidence, "fpr_upper_bound": round(bound, 6),
                                 "calibration_windows": int(len(windows)), "tracks": len(engine.track_ids), **kept})
    log.info("catalogue offset %.3f for %d tracks at %.3g false positives per window",
             offset, len(engine.track_ids), catalog_fpr)
    return offset


def enroll(catalog_dir: Path, db: Path, *, negatives_dir: Path | None, work_dir: Path | None = None,
           audio: AudioParams = AudioParams(), features: FeatureParams = FeatureParams(),
           augment: AugmentParams = AugmentParams(), dataset: DatasetParams = DatasetParams(),
           cnn: CnnParams = CnnParams(), train: TrainParams = TrainParams(), jobs: int | None = None,
           progress: bool = True) -> TrainReport:
    """Build the dataset for a catalogue folder and train it into ``db``.

    work_dir: where the dataset is kept (default ``DB/dataset``); both steps
    resume after an interruption (``train_catalog`` also calibrates the play
    threshold on the dataset's held-out negatives).
    """
    work_dir = Path(work_dir) if work_dir is not None else Path(db) / "dataset"
    build_dataset(Path(catalog_dir), negatives_dir, work_dir, BuildPlan(audio, features, augment, dataset),
                  jobs=jobs, progress=progress)
    report = train_catalog(work_dir, Path(db), cnn=cnn, train=train, progress=progress)
    # Titles and artists from the files' tags, for tracks that have no metadata yet.
    metadata.fill_from_files(Path(db), list_audio(Path(catalog_dir)), cnnbin.enrolled_track_ids(Path(db)))
    return report
