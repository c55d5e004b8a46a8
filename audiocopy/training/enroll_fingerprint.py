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
measured on negative windows. The negative windows come from
``--negatives``: about a fifth of them, whole groups at a time where the
track ids name groups (``GROUP__TRACK``: a package, an album; ``sources.
calibration_holdout``, the hold-out cnnbin uses too), which the encoder's
training (``tools/train_encoder.py``) leaves out with every other track of
their groups, so it never heard them nor their siblings. Music whose
siblings the encoder trained on scores lower against a catalogue than music
from a group it never met, so a threshold set on it would let more unseen
music through than it states (measured: 0.6 % against 0.5 %, see
``docs/benchmarks.md``). Half are clean and half distorted by
``augment.random_distortion``, because queries are. Their features are kept
in ``DB/calibration.npy``, so adding or removing tracks later recalibrates
without the negatives folder: the best score of a negative window grows
with the catalogue, and so must the threshold.

Speed. Decoding and the band levels of the next track are computed in a
helper thread while the encoder embeds the current one (NumPy, soxr and
TensorFlow release the GIL), which keeps both cores busy.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_open
from ..config import (
    AudioParams,
    AugmentParams,
    CalibrationParams,
    DecisionParams,
    FeatureParams,
    IndexParams,
    MatchParams,
)
from ..decision.calibration import bounded_threshold
from ..decision.recognizer import silent_windows
from ..encoder.subwindows import track_subwindows
from ..engines import catalog, metadata
from ..engines.fingerprint import db as fpdb
from ..engines.fingerprint import engine as fp
from ..errors import AudiocopyError, ConfigError, DatasetError
from ..signal.audio import load_audio
from ..signal.features import track_band_db
from .play_calibration import PLAY_KEYS, calibrate_play_threshold
from .sources import calibration_holdout, list_audio, stable_seed

log = logging.getLogger(__name__)

#: Seconds at each end of a negative track that calibration windows avoid
#: (fade-ins and silence are not music anybody queries).
EDGE_SECONDS = 1.0


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



def calibration_tracks(files: list[Path], params: CalibrationParams) -> list[Path]:
    """The calibration hold-out of the negatives (``calibration_holdout``: whole groups), or all if too few."""
    held = calibration_holdout([p.stem for p in files])
    held_out = [p for p in files if p.stem in held]
    if len(held_out) >= params.min_tracks:
        return held_out
    log.warning("only %d of %d negatives are in the calibration split; calibrating on all of them",
                len(held_out), len(files))
    return list(files)


def make_calibration_windows(negatives_dir: Path, *, audio: AudioParams, features: FeatureParams,
                             params: CalibrationParams = CalibrationParams(), progress: bool = True,
                             silence_dbfs: float = DecisionParams().silence_dbfs) -> np.ndarray:
    """Band levels of negative windows: (n, frames, bands) float16 dB (``signal.features.band_db``).

    Band levels, not standardised features: the engine floors and
    standardises each sub-window on its own, exactly as it does for a
    stream (``engines.fingerprint.stream``), so the threshold is set on
    what live and file queries really go through.

    Silent windows (``decision.recognizer.silent_windows`` with
    ``silence_dbfs``) are left out: a query window that silent is answered
    "silent" before any threshold is read, so it can never be a false
    positive. Counted, it can only raise the threshold: digital silence
    inside a negative track matches digital silence inside a catalogue
    track perfectly (score 1.0). Found on the real corpus: 3 such windows
    among 448 from 40 negative tracks set the threshold to 0.999997, and
    the catalogue named none of its own tracks' clean fragments.
    """
    from tqdm import tqdm

    from ..signal.features import band_db, power_spectrogram
    from .augment import random_distortion
    from .sources import list_audio

    files = calibration_tracks(list_audio(negatives_dir), params)
    length = audio.window_samples
    excerpt = int(1.3 * length)
    augment = AugmentParams()
    out = []
    for path in tqdm(files, desc="calibration", unit="track", disable=not progress):
        try:
            signal = load_audio(path, params=audio)
        except AudiocopyError as exc:
            log.warning("skipped negative %s", exc)
            continue
        rng = np.random.default_rng(stable_seed(params.seed, path.stem))
        edge = int(EDGE_SECONDS * audio.sample_rate)
        lo, hi = min(edge, max(0, signal.size - excerpt)), max(0, signal.size - excerpt - edge)
        windows = np.empty((params.windows_per_track, length), dtype=np.float32)
        for i in range(params.windows_per_track):
            start = int(rng.integers(lo, max(lo, hi) + 1))
            chunk = signal[start:start + excerpt]
            if rng.random() < params.distorted_fraction:
                windows[i] = random_distortion(chunk, rng, params=augment, sample_rate=audio.sample_rate,
                                               length=length)
            else:
                windows[i] = np.pad(chunk[:length], (0, max(0, length - chunk[:length].size)))
        heard = windows[~silent_windows(windows, silence_dbfs=silence_dbfs)]
        if len(heard) < len(windows):
            log.info("calibration: %d silent window(s) of %s left out", len(windows) - len(heard), path.name)
        if not len(heard):
            continue
        levels = band_db(power_spectrogram(heard, params=features), audio=audio, params=features)
        out.append(levels.astype(np.float16))
    if not out:
        raise DatasetError(f"no usable negative tracks in {negatives_dir}")
    return np.concatenate(out)


#: Version of the rules ``make_calibration_windows`` follows, part of ``negatives_signature``:
#: windows stored by an older rule are made again (2: silent windows left out;
#: 3: the hold-out takes whole groups).
CALIBRATION_WINDOWS_RULE = 3


def negatives_signature(negatives_dir: Path, params: CalibrationParams) -> str:
    """Identity of a negatives folder and the calibration settings (names, sizes, times)."""
    from dataclasses import asdict

    from .sources import list_audio

    h = hashlib.sha1(json.dumps(asdict(params), sort_keys=True).encode())
    h.update(f"rule {CALIBRATION_WINDOWS_RULE}\n".encode())  # rule 1 hashed nothing here: its windows differ
    for p in list_audio(Path(negatives_dir)):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def store_calibration_windows(db: Path, negatives_dir: Path, *, params: CalibrationParams = CalibrationParams(),
                              progress: bool = True) -> str:
    """Make ``DB/calibration_levels.npy`` from ``negatives_dir``; returns the windows' ``negatives_signature``.

    Skipped when the stored windows were made from the same folder content
    with the same settings (the signature ``calibrate`` records).
    """
    info = catalog.open_db(db)
    path = Path(db) / fpdb.CALIBRATION_FILE
    wanted = negatives_signature(negatives_dir, params)
    if path.exists() and wanted == info.calibration.get("negatives_signature"):
        log.info("calibration windows of %s are up to date", negatives_dir)
        return wanted
    windows = make_calibration_windows(negatives_dir, audio=info.audio, features=info.features, params=params,
                                       progress=progress)
    with atomic_open(path) as fh:
        np.save(fh, windows)
    return wanted


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
    signature = info.calibration.get("negatives_signature")
    if negatives_dir is not None:
        signature = store_calibration_windows(db, Path(negatives_dir), params=params, progress=progress)
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
                                 "fpr_at_threshold": round(float((best > threshold).mean()), 6), **kept})
    log.info("threshold %.3f (%.3g of %d negative windows above it) for %d tracks", threshold,
             float((best > threshold).mean()), len(windows), len(engine.track_ids))
    n_tracks = len(engine.track_ids)
    engine.close()  # embedded Qdrant locks its folder; the play calibration opens it again
    if negatives_dir is not None and n_tracks:
        # Every negative, not only the held-out fifth: nothing in a fingerprint
        # database was trained on them, and a rate per hour needs hours.
        calibrate_play_threshold(db, list_audio(Path(negatives_dir)))
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
