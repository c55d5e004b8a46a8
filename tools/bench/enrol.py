"""Enrolling the benchmark's catalogue with either engine, measured; what the database holds.

Place in ``tools/bench``: between the queries and ``scoring``. Both engines
enrol ``WORK/catalog`` and calibrate on a hold-out of ``WORK/wrong``,
as ``audiocopy enroll --negatives`` does: the fingerprint on the hold-out
its encoder was trained without (``enroll_fingerprint.holdout_rule``: per
track for an encoder whose record predates the rule, whole packages for
one ``tools/train_encoder.py`` trains now), cnnbin on its dataset's hold-out
of whole packages (``calibration_holdout``: its heads train against the
rest). Each engine
and cnnbin model kind has its own database, so one work folder can compare
them on the same queries:

* fingerprint (``WORK/db-fingerprint``): ``enroll_fingerprint`` in this
  process (no training; seconds);
* cnnbin (``WORK/db-cnnbin-<kind>``): the dataset and the training run as
  separate ``audiocopy`` CLI processes, so each one's wall time and peak
  memory (worker processes included) can be measured; then the play
  threshold is calibrated as ``enroll`` does.
"""
from __future__ import annotations

import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from .common import REPO, BenchError, read_json, write_json
from .machine import run_measured

log = logging.getLogger(__name__)


def db_dir(work: Path, engine: str, model: str | None = None) -> Path:
    """The database of one engine (and cnnbin model kind) inside the work folder."""
    return Path(work) / ("db-fingerprint" if engine == "fingerprint" else f"db-cnnbin-{model}")


def child_env() -> dict:
    """The environment of an ``audiocopy`` child process: this repository first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def fingerprint_current(db: Path, encoder_sha: str) -> bool:
    """Whether ``db`` was made with this encoder and today's match settings (``MatchParams()``).

    The vote's scores, and so both calibrated thresholds, depend on the
    match settings a database stores (e.g. ``density_weight``): a database
    made with other ones measures the code that made it, not this one.
    """
    from audiocopy.config import MatchParams
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.errors import AudiocopyError

    try:
        config = fpdb.read_config(db)
    except AudiocopyError:
        return False
    return config.encoder_sha256 == encoder_sha and config.match == MatchParams()


def fingerprint_complete(db: Path, catalog_ids: list[str], encoder_sha: str) -> bool:
    """Every catalogue track enrolled with this encoder and today's match settings, with its band levels
    (a play's pitch is measured against them; databases made before they were stored have none), and
    both thresholds calibrated."""
    from audiocopy.engines import catalog

    if not (db / catalog.DB_FILE).is_file() or not (db / "fingerprint.json").is_file():
        return False
    info = catalog.open_db(db)
    records = {r["track_id"]: r for r in catalog.track_records(db)}
    return (fingerprint_current(db, encoder_sha)
            and all(i in records and "levels_file" in records[i] for i in catalog_ids)
            and "threshold" in info.calibration and "play_threshold" in info.calibration)


def enrol_fingerprint(work: Path, catalog_ids: list[str], *, encoder_path: Path) -> dict:
    """Enrol ``WORK/catalog`` with the fingerprint engine (skipped when complete); returns timings."""
    from audiocopy.encoder.artifact import read_encoder_record
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    db = db_dir(work, "fingerprint")
    sha = read_encoder_record(encoder_path)["weights_sha256"]
    timings = read_json(Path(work) / "timings.json", {})
    if fingerprint_complete(db, catalog_ids, sha):
        log.info("enrol: %s is complete, skipped", db)
        return timings.get("fingerprint", {})
    if (db / "fingerprint.json").is_file() and not fingerprint_current(db, sha):
        log.info("enrol: %s was made with another encoder or other match settings; starting over", db)
        shutil.rmtree(db)
    t0 = time.perf_counter()
    report = enroll_fingerprint(Path(work) / "catalog", db, negatives_dir=Path(work) / "wrong",
                                encoder_path=encoder_path)
    timings["fingerprint"] = {"wall_s": round(time.perf_counter() - t0, 1), "tracks": len(report.enrolled),
                              "x_realtime": round(report.realtime_factor), "threshold": report.threshold}
    write_json(Path(work) / "timings.json", timings)
    return timings["fingerprint"]


def cnnbin_complete(db: Path, catalog_ids: list[str]) -> bool:
    """Every catalogue track trained, the catalogue offset and the play threshold calibrated."""
    from audiocopy.engines import catalog
    from audiocopy.engines.cnnbin import engine as cnnbin

    if not (db / catalog.DB_FILE).is_file():
        return False
    info = catalog.open_db(db)
    return (set(catalog_ids) <= cnnbin.enrolled_track_ids(db) and "score_offset" in info.calibration
            and "play_threshold" in info.calibration)


def _build_dataset(work: Path, *, jobs: int, flags: list[str], timings: dict) -> None:
    dataset = Path(work) / "dataset"
    if read_json(dataset / "manifest.json", {}).get("complete"):
        log.info("dataset: %s is complete, skipped", dataset)
        return
    resumed = (dataset / "windows").is_dir() and any((dataset / "windows").iterdir())
    cmd = [sys.executable, "-m", "audiocopy.cli", "dataset", "--licensed", str(Path(work) / "catalog"),
           "--wrong", str(Path(work) / "wrong"), "--out", str(dataset), "--jobs", str(jobs), *flags]
    timings["dataset"] = {**run_measured(cmd, child_env()), "resumed": resumed}
    write_json(Path(work) / "timings.json", timings)


def enrol_cnnbin(work: Path, catalog_ids: list[str], *, model: str, jobs: int, dataset_flags: list[str],
                 train_flags: list[str]) -> dict:
    """Build the dataset, train ``model`` heads/CNNs and calibrate the play threshold; returns timings."""
    from audiocopy.engines.cnnbin import engine as cnnbin
    from audiocopy.training.dataset import Dataset
    from audiocopy.training.play_calibration import calibrate_play_threshold

    timings = read_json(Path(work) / "timings.json", {})
    db, key = db_dir(work, "cnnbin", model), f"train-{model}"
    if cnnbin_complete(db, catalog_ids):
        log.info("train: every catalogue track of %s is trained, skipped", db)
        return timings
    _build_dataset(work, jobs=jobs, flags=dataset_flags, timings=timings)
    before = len(cnnbin.enrolled_track_ids(db)) if db.is_dir() else 0
    result = run_measured([sys.executable, "-m", "audiocopy.cli", "train", "--dataset", str(Path(work) / "dataset"),
                           "--db", str(db), "--model", model, *train_flags], child_env())
    trained = len(cnnbin.enrolled_track_ids(db)) - before
    # A rerun that trained nothing (only recalibrated) must not replace the real measurement.
    if trained or key not in timings:
        timings[key] = {**result, "tracks_trained": trained, "resumed": before > 0,
                        "wall_per_track_s": round(result["wall_s"] / trained, 2) if trained else None}
    # The dataset's own hold-out (whole packages: ``sources.calibration_holdout``), which no head trained on.
    held_out = [Path(s.path) for s in Dataset(Path(work) / "dataset").calibration_sources()]
    t0 = time.perf_counter()
    calibrate_play_threshold(db, held_out, kind="holdout")
    timings[f"play-{model}"] = {"wall_s": round(time.perf_counter() - t0, 1), "tracks": len(held_out)}
    write_json(Path(work) / "timings.json", timings)
    return timings


def cnnbin_stats(db: Path) -> dict:
    """Per-track training seconds and model sizes (KiB) of a cnnbin database, and its calibration."""
    from audiocopy.engines import catalog

    records = catalog.track_records(db)
    if not records:
        raise BenchError(f"{db} holds no trained tracks")
    fit = [r["metrics"]["train_seconds"] for r in records if "train_seconds" in r.get("metrics", {})]
    sizes = [(db / catalog.TRACKS_DIR / r["model_file"]).stat().st_size for r in records]
    return {"tracks": len(records),
            "fit_seconds_mean": round(statistics.mean(fit), 2) if fit else None,
            "fit_seconds_max": round(max(fit), 2) if fit else None,
            "model_kib_mean": round(statistics.mean(sizes) / 1024, 1),
            "model_kib_max": round(max(sizes) / 1024, 1),
            "calibration": catalog.open_db(db).calibration}


def fingerprint_stats(db: Path) -> dict:
    """Tracks, vectors and calibration of a fingerprint database."""
    from audiocopy.engines import catalog

    records = catalog.track_records(db)
    return {"tracks": len(records), "vectors": int(sum(int(r.get("n_vectors", 0)) for r in records)),
            "calibration": catalog.open_db(db).calibration}
