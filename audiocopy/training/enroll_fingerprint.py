"""Enrolment for the fingerprint engine: embed tracks, index them, calibrate.

Place in the pipeline: the offline side, called by ``audiocopy enroll
--engine fingerprint`` and ``audiocopy remove`` (and the benchmark). Nothing
is trained here: each track is decoded, its band levels computed once
(``signal.features.track_band_db``), every one-second sub-window every 0.256 s
embedded by the shared encoder, and the vectors stored and indexed. Adding
tracks to an existing database and removing tracks are the same cheap
operations, followed by a recalibration of the decision threshold.

Calibration. The threshold is the score that, with ``MatchParams.fpr_confidence``,
at most ``MatchParams.target_fpr`` of music outside the catalogue exceeds
(``decision.calibration.bounded_threshold``, like cnnbin's catalogue offset),
measured on negative windows of ``--negatives``: the hold-out the
database's encoder was trained without, half clean and half distorted
(``calibration_windows``, which says why). Their features are kept
in ``DB/calibration.npy``, so adding or removing tracks later recalibrates
without the negatives folder: the best score of a negative window grows
with the catalogue, and so must the threshold.

Speed. Decoding and the band levels of the next track are computed in a
helper thread while the encoder embeds the current one (NumPy, soxr and
TensorFlow release the GIL), which keeps both cores busy.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import AudioParams, CalibrationParams, FeatureParams, IndexParams, MatchParams
from ..decision.calibration import bounded_threshold
from ..encoder.subwindows import track_subwindows
from ..engines import catalog, metadata
from ..engines.fingerprint import db as fpdb
from ..engines.fingerprint import engine as fp
from ..errors import AudiocopyError, ConfigError, DatasetError
from ..signal.audio import load_audio
from ..signal.features import track_band_db
from .calibration_windows import holdout_rule, play_negatives, store_calibration_windows
from .play_calibration import PLAY_KEYS, calibrate_play_threshold
from .sources import list_audio

log = logging.getLogger(__name__)


@dataclass
class EnrollReport:
    """What an enrolment did, with its speed.

    audio_seconds: duration of the tracks embedded now; wall_seconds: time of
    the embedding loop (decode, features, encoder, index; not calibration);
    encoder_seconds: time inside the encoder alone.
    """

    enrolled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    encoder_seconds: float = 0.0
    vectors: int = 0
    threshold: float | None = None

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio enrolled per second of wall time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _prepare(path: Path, audio: AudioParams, features: FeatureParams, *, frames: int, hop_frames: int):
    """Decode a track and cut its encoder input (runs in the helper thread): (seconds, sub-windows)."""
    signal = load_audio(path, params=audio)
    band_db = track_band_db(signal, audio=audio, features=features)
    return (signal.size / audio.sample_rate, track_subwindows(band_db, frames=frames, hop_frames=hop_frames,
                                                              floor_db=features.floor_db),
            fpdb.coarse_levels(band_db, hop_frames))


def _prefetch(fn, items, depth: int = 2):
    """Yield (item, result or exception) in order, computing up to ``depth`` ahead in a thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= depth:
                break
        while pending:
            item, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            try:
                yield item, fut.result()
            except AudiocopyError as exc:
                yield item, exc


def _enrol_one(db: Path, path: Path, key: int, seconds: float, subwindows: np.ndarray, levels: np.ndarray, *,
               engine, config, report: EnrollReport) -> bool:
    """Embed one prepared track, save its vectors and record, add it to the index; False if it is empty."""
    hop = config.match.enrol_hop_frames
    t_enc = time.perf_counter()
    vectors = engine.encoder.embed(subwindows)
    report.encoder_seconds += time.perf_counter() - t_enc
    if len(vectors) == 0:
        report.failed.append((str(path), "shorter than one sub-window"))
        return False
    fpdb.save_track(db, path.stem, key, vectors, hop_frames=hop, encoder_sha256=config.encoder_sha256,
                    duration_s=seconds, levels=levels, extra={"source": str(path)})
    engine.index.add(key, vectors, np.arange(len(vectors), dtype=np.int64) * hop)
    report.enrolled.append(path.stem)
    report.audio_seconds += seconds
    report.vectors += len(vectors)
    return True


def add_tracks(db: Path, files: list[Path], *, save_every_s: float = 60.0, progress: bool = True) -> EnrollReport:
    """Embed and index audio files into an initialised fingerprint database.

    files: audio files; track id = file stem. Tracks already enrolled are
    skipped (so an interrupted enrolment resumes), and so are files that
    cannot be decoded (reported in ``failed``). The index is saved every
    ``save_every_s`` seconds and at the end.
    """
    from tqdm import tqdm

    db = Path(db)
    engine = fp.load(db, writable=True)
    config, encoder, index = engine.config, engine.encoder, engine.index
    hop = config.match.enrol_hop_frames
    done = set(engine.track_ids)
    report = EnrollReport()
    todo = []
    for path in files:
        (report.skipped if path.stem in done else todo).append(path)
    if report.skipped:
        log.info("%d track(s) already enrolled, skipped", len(report.skipped))
    t0 = last_save = time.perf_counter()
    bar = tqdm(total=len(todo), desc="enrol", unit="track", disable=not progress)
    key = config.next_key
    # Keys for every track to come are reserved in the configuration before any
    # record exists, so a crash can waste keys but never reuse one.
    config = replace(config, next_key=key + len(todo))
    fpdb.write_config(db, config)
    frames = encoder.params.frames
    for path, result in _prefetch(lambda p: _prepare(p, engine.audio, engine.features, frames=frames,
                                                     hop_frames=hop), todo):
        bar.update()
        if isinstance(result, Exception):
            report.failed.append((str(path), str(result)))
            log.warning("skipped %s", result)
            continue
        seconds, subwindows, levels = result
        if _enrol_one(db, path, key, seconds, subwindows, levels, engine=engine, config=config, report=report):
            key += 1
        if time.perf_counter() - last_save > save_every_s:
            fpdb.save_index(db, config, index)
            last_save = time.perf_counter()
        bar.set_postfix(x_realtime=f"{report.audio_seconds / max(time.perf_counter() - t0, 1e-9):.0f}")
    bar.close()
    if getattr(index, "wants_rebuild", lambda: False)():
        log.info("the catalogue outgrew the index structure: rebuilding it")
        records = catalog.track_records(db)
        index.rebuild((int(r["key"]), *fpdb.track_vectors(db, r)) for r in records)
    fpdb.save_index(db, config, index)
    report.wall_seconds = time.perf_counter() - t0
    engine.close()
    log.info("enrolled %d tracks (%.0f s of audio, %d vectors) in %.1f s: %.0fx real time (encoder alone %.0fx)",
             len(report.enrolled), report.audio_seconds, report.vectors, report.wall_seconds,
             report.realtime_factor, report.audio_seconds / max(report.encoder_seconds, 1e-9))
    return report


# --------------------------------------------------------------------------
# calibration



def calibrate(db: Path, *, negatives_dir: Path | None = None, params: CalibrationParams = CalibrationParams(),
              progress: bool = True) -> float | None:
    """(Re)compute the threshold; returns it, or None without calibration windows.

    negatives_dir: make (and store) calibration windows from it, unless the
    stored ones were made from the same folder content with the same
    settings (the server's add-track job passes it every time); None
    reuses the stored windows. With ``negatives_dir`` the play threshold of
    the stream decision is calibrated too (``play_calibration``); without
    it the stored one is kept.
    """
    db = Path(db)
    info = catalog.open_db(db)
    path = db / fpdb.CALIBRATION_FILE
    signature, holdout = info.calibration.get("negatives_signature"), info.calibration.get("holdout")
    if negatives_dir is not None:
        signature = store_calibration_windows(db, Path(negatives_dir), params=params, progress=progress)
        holdout = holdout_rule(db)  # which negatives the windows came from, for reports
    if not path.exists():
        catalog.set_calibration(db, {})
        log.warning("%s has no calibration windows (enrol with --negatives): the threshold stays at the "
                    "minimum and the false-positive rate is unknown", db)
        return None
    engine = fp.load(db, warn_uncalibrated=False)
    windows = np.load(path)
    if not engine.track_ids:
        catalog.set_calibration(db, {"negatives_signature": signature})
        engine.close()
        return None
    best = np.concatenate([engine.raw_level_scores(windows[i:i + 256]).max(axis=1)
                           for i in range(0, len(windows), 256)])
    match = engine.match
    raw, bound = bounded_threshold(best, match.target_fpr, match.fpr_confidence)
    threshold = max(raw, match.min_threshold)
    # The play threshold is carried over unless negatives are here to redo it.
    kept = {k: info.calibration[k] for k in PLAY_KEYS if k in info.calibration}
    catalog.set_calibration(db, {"threshold": round(threshold, 6), "quantile": round(raw, 6),
                                 "target_fpr": match.target_fpr, "fpr_confidence": match.fpr_confidence,
                                 "fpr_upper_bound": round(bound, 6), "calibration_windows": int(len(windows)),
                                 "tracks": len(engine.track_ids), "negatives_signature": signature,
                                 **({"holdout": holdout} if holdout else {}),
                                 "fpr_at_threshold": round(float((best > threshold).mean()), 6), **kept})
    log.info("threshold %.3f (%.3g of %d negative windows above it) for %d tracks", threshold,
             float((best > threshold).mean()), len(windows), len(engine.track_ids))
    n_tracks = len(engine.track_ids)
    engine.close()  # embedded Qdrant locks its folder; the play calibration opens it again
    if negatives_dir is not None and n_tracks:
        # Every negative the encoder never heard, not only the window
        # threshold's hold-out: a rate per hour needs hours.
        negatives = play_negatives(db, list_audio(Path(negatives_dir)))
        calibrate_play_threshold(db, negatives.files, kind=negatives.kind)
    return threshold


# --------------------------------------------------------------------------
# the commands


def update_vote(db: Path, match: MatchParams = MatchParams()) -> bool:
    """Give an existing database ``match``'s vote settings (``fpdb.VOTE_FIELDS``); True when any changed.

    Its thresholds were calibrated on the old scores, so the caller must
    recalibrate both (``calibrate`` with the negatives), as
    ``enroll_fingerprint(..., update_vote_settings=True)`` does.
    """
    config = fpdb.read_config(db)
    wanted = replace(config.match, **fpdb.vote_settings(match))
    if wanted == config.match:
        return False
    fpdb.write_config(db, replace(config, match=wanted))
    log.info("%s: vote settings %s -> %s; recalibrating", db, fpdb.vote_settings(config.match),
             fpdb.vote_settings(wanted))
    return True


def enroll_fingerprint(catalog_dir: Path, db: Path, *, negatives_dir: Path | None = None,
                       encoder_path: Path | None = None, audio: AudioParams = AudioParams(),
                       features: FeatureParams = FeatureParams(), match: MatchParams = MatchParams(),
                       index: IndexParams = IndexParams(), calibration: CalibrationParams = CalibrationParams(),
                       update_vote_settings: bool = False, progress: bool = True) -> EnrollReport:
    """``audiocopy enroll --engine fingerprint``: add every track of a folder, then calibrate.

    catalog_dir: audio files (track id = file stem). An existing database
    gets the tracks it lacks; calibration windows come from
    ``negatives_dir`` when given, else from the database's stored ones.
    index: the vector index of a new database (backend, and for a server
    its URI and index type: ``--index``, ``--qdrant-url``, ``--milvus-uri``);
    it is stored in the database, and an existing database keeps its own.
    update_vote_settings: an existing database adopts ``match``'s vote
    settings (``update_vote``) and both thresholds are recalibrated; needs
    ``negatives_dir`` (the play threshold is set on them). Raises
    ``ConfigError`` without it.
    """
    from .sources import list_audio

    if update_vote_settings and negatives_dir is None:
        raise ConfigError("updating the vote settings recalibrates both thresholds: give the negatives "
                          "(--negatives DIR) the database was calibrated on")
    files = list_audio(Path(catalog_dir))
    if not files:
        raise DatasetError(f"no audio files in {catalog_dir}")
    fpdb.init_db(Path(db), audio=audio, features=features, encoder_path=encoder_path, match=match, index=index)
    if update_vote_settings:
        update_vote(Path(db), match)
    report = add_tracks(Path(db), files, progress=progress)
    # Titles and artists from the files' tags, for tracks that have no metadata yet.
    metadata.fill_from_files(Path(db), files, (r["track_id"] for r in catalog.track_records(Path(db))))
    report.threshold = calibrate(Path(db), negatives_dir=negatives_dir, params=calibration, progress=progress)
    return report


def remove_tracks(db: Path, track_ids: list[str], *, progress: bool = False) -> list[str]:
    """Remove tracks from a fingerprint database and recalibrate; returns the ids that were not enrolled."""
    db = Path(db)
    engine = fp.load(db, writable=True)
    records = {r["track_id"]: r for r in catalog.track_records(db)}
    missing = []
    for track_id in track_ids:
        rec = records.get(track_id)
        if rec is None:
            missing.append(track_id)
            continue
        engine.index.remove(int(rec["key"]))
        catalog.remove_track(db, track_id)  # record first, then the vectors
    fpdb.save_index(db, engine.config, engine.index)
    if getattr(engine.index, "kind", "") in ("qdrant", "milvus"):
        engine.index.close()  # embedded Qdrant locks its folder; a server connection is released
    calibrate(db, progress=progress)
    return missing
