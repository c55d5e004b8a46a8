"""Enrolment for the cnnbin engine: dataset -> trained, calibrated database.

Place in the pipeline: the top of the offline side, called by the CLI
(``audiocopy dataset``, ``train``, ``enroll``) and by ``tools/utility.py``.

``train_catalog`` trains every licensed track of a dataset that the database
does not hold yet (so an interrupted run resumes by skipping finished
tracks; each track is saved as soon as it is trained), in child processes
that are replaced every few tracks (TensorFlow leaks memory across models
in one process, see ``TRACKS_PER_PROCESS``), then stores the calibration windows in the database and sets the
catalogue offset (see ``engines.cnnbin``). Keeping the calibration windows
in ``DB/calibration.npy`` lets a later ``remove`` or ``add`` recalibrate
without the dataset.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import catalog
from ..config import AugmentParams, AudioParams, CnnParams, DatasetParams, FeatureParams, TrainParams
from ..engines import cnnbin
from ..errors import DatasetError, TrainingError
from .dataset import BuildPlan, Dataset, build_dataset
from .fit_cnnbin import calibration_windows, fit_track, quantile_threshold

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.npy"


@dataclass(frozen=True)
class TrainReport:
    trained: list[str]
    skipped: list[str]
    seconds_per_track: float
    score_offset: float


# Tracks trained by one child process before it is replaced. TensorFlow/Keras
# keep per-model state that ``keras.backend.clear_session()`` does not free
# (keras-team/keras#17458): in one process the resident memory grew by about
# 100 MB per track (5.7 GB after 50 tracks). A fresh process every few tracks
# bounds it; the import of TensorFlow it costs (a few seconds) is small
# beside ~30 s of training per track.
TRACKS_PER_PROCESS = 8


def _train_one(dataset_dir: str, db: str, track_id: str, cnn: CnnParams, train: TrainParams,
               seed: int) -> tuple[str, float, dict]:
    """Train, calibrate and save one track; runs in a training child process.

    Returns (track id, seconds, metrics). Everything it needs is re-read from
    disk (the dataset's shards are memory-mapped), so nothing large crosses
    the process boundary.
    """
    t0 = time.perf_counter()
    dataset = Dataset(Path(dataset_dir))
    calibration = calibration_windows(dataset)
    fit = fit_track(dataset, track_id, cnn=cnn, train=train, calibration=calibration, seed=seed)
    cnnbin.save_track(Path(db), cnnbin.TrackModel(track_id, fit.model, fit.threshold_logit, cnn, fit.metrics,
                                                  {"source": dataset.source(track_id).path,
                                                   "train": {"epochs": train.epochs, "seed": train.seed}}),
                      audio=dataset.audio, features=dataset.features)
    return track_id, time.perf_counter() - t0, fit.metrics


def train_catalog(dataset_dir: Path, db: Path, *, cnn: CnnParams = CnnParams(), train: TrainParams = TrainParams(),
                  tracks: list[str] | None = None, progress: bool = True,
                  tracks_per_process: int = TRACKS_PER_PROCESS) -> TrainReport:
    """Train (or resume training) every licensed track of a dataset into ``db``.

    tracks: restrict to these track ids (default: all licensed tracks).
    tracks_per_process: how many tracks one training child process handles
        before a fresh one replaces it (see ``TRACKS_PER_PROCESS``). Tracks
        are trained one at a time; TensorFlow already uses every core.
    Each track is saved as soon as it is trained, so an interruption loses at
    most the track in progress.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    dataset = Dataset(dataset_dir)
    catalog.create_db(db, catalog.DbInfo(cnnbin.NAME, dataset.audio, dataset.features))
    wanted = dataset.licensed_ids() if tracks is None else list(tracks)
    unknown = sorted(set(wanted) - set(dataset.licensed_ids()))
    if unknown:
        raise DatasetError(f"not in dataset {dataset_dir}: {unknown}")
    done = cnnbin.enrolled_track_ids(db)
    todo = [t for t in wanted if t not in done]
    trained, seconds = [], []
    per_process = max(1, int(tracks_per_process))
    bar = tqdm(total=len(todo), desc="train", unit="track", disable=not progress)
    try:
        for lo in range(0, len(todo), per_process):
            # One fresh pool per group of tracks rather than ``max_tasks_per_child``,
            # which deadlocks on Python 3.11-3.13 when a worker retires with work
            # still queued (CPython gh-115634). "spawn": a forked child would
            # inherit whatever TensorFlow state this process holds.
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_train_one, str(dataset_dir), str(db), t, cnn, train,
                                       train.seed + 1000 * (dataset.licensed_ids().index(t) + 1))
                           for t in todo[lo:lo + per_process]]
                try:
                    for future in futures:
                        track_id, secs, metrics = future.result()
                        trained.append(track_id)
                        seconds.append(secs)
                        bar.update()
                        log.info("trained %s in %.1f s: %s", track_id, secs, metrics)
                finally:
                    for future in futures:
                        future.cancel()
    except BrokenProcessPool as exc:
        raise TrainingError(f"the training process died (out of memory?) after {len(trained)} of "
                            f"{len(todo)} tracks; finished tracks are saved, run again to resume") from exc
    finally:
        bar.close()
    calibration = calibration_windows(dataset)
    if len(calibration):
        catalog.atomic_write_bytes(Path(db) / CALIBRATION_FILE, _npy_bytes(calibration.astype(np.float16)))
    offset = calibrate_catalog(db, catalog_fpr=train.catalog_fpr)
    return TrainReport(trained, [t for t in wanted if t in done],
                       float(np.mean(seconds)) if seconds else 0.0, offset)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def calibrate_catalog(db: Path, *, catalog_fpr: float) -> float:
    """Set the catalogue-wide score offset from the stored calibration windows.

    The offset is the ``catalog_fpr`` quantile of the best track's margin
    over the held-out windows, so a query of unrelated music is called a
    match with about that probability. Returns the offset (0 when the
    database has no calibration windows or no tracks).
    """
    path = Path(db) / CALIBRATION_FILE
    catalog.set_calibration(db, {})
    if not path.exists():
        log.warning("%s has no calibration windows; catalogue offset left at 0", db)
        return 0.0
    engine = cnnbin.load(Path(db))
    if not engine.track_ids:
        return 0.0
    windows = np.load(path).astype(np.float32)
    best = np.concatenate([engine.score(windows[i:i + 256]).margins.max(axis=1)
                           for i in range(0, len(windows), 256)])
    offset = max(0.0, quantile_threshold(best, catalog_fpr))
    catalog.set_calibration(db, {"score_offset": offset, "catalog_fpr": catalog_fpr,
                                 "calibration_windows": int(len(windows)), "tracks": len(engine.track_ids)})
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
    resume after an interruption.
    """
    work_dir = Path(work_dir) if work_dir is not None else Path(db) / "dataset"
    build_dataset(Path(catalog_dir), negatives_dir, work_dir, BuildPlan(audio, features, augment, dataset),
                  jobs=jobs, progress=progress)
    return train_catalog(work_dir, Path(db), cnn=cnn, train=train, progress=progress)
