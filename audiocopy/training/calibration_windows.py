"""Calibration windows of the fingerprint engine: which negatives, which windows, when to remake them.

Place in the pipeline: the offline side, between the negatives folder and
``enroll_fingerprint.calibrate``, which scores these windows against the
catalogue and sets the window threshold on them. Kept apart so the choice of
what a threshold is set on reads in one place:

* **Which negatives.** The hold-out the database's encoder was trained
  without (``holdout_rule``, read from its record), so the false-positive
  rate is measured on music it never heard. ``tools/train_encoder.py``
  holds out whole groups (``GROUP__TRACK`` ids: a package, an album;
  ``sources.calibration_holdout``) with every other track of those groups:
  music whose siblings the encoder trained on scores lower against a
  catalogue than music from a group it never met, so a threshold set on it
  lets more unseen music through than it states (measured: 0.6 % against
  0.5 %, ``docs/benchmarks.md``). Encoders whose record predates the rule
  (the shipped one) were trained without a per-track hash
  (``sources.is_calibration_track``) and are calibrated on it.
* **Which windows.** As many windows per track as a stream cuts from it
  (one per 0.5 s of audio, ``windows_for_track``), at random positions away
  from its ends, half of them clean and half distorted by
  ``augment.random_distortion`` (queries are), silent ones left out
  (``make_calibration_windows``). The bound that turns them into a
  threshold pays for every window it lacks: on 19 held-out tracks, 64
  per track let 2 of 1,216 through for a 0.5 % target and set the
  threshold 0.017 higher than the stream's grid does, 16 of 4,505
  (``docs/benchmarks.md``).
* **Which negatives for the play threshold.** A rate per hour wants hours,
  so the play threshold (``play_calibration``) is set on every negative the
  encoder never trained on (``play_negatives``: its record lists what it
  trained on), not only the hold-out: all of a user's own negatives, and
  only the hold-out of the corpus the shipped encoder came from.
* **When to remake them.** ``negatives_signature`` names the folder's
  content, the settings and the rules; stored windows with another
  signature are made again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_open
from ..config import AudioParams, AugmentParams, CalibrationParams, DecisionParams, FeatureParams
from ..decision.recognizer import silent_windows
from ..engines import catalog
from ..engines.fingerprint import db as fpdb
from ..errors import AudiocopyError, DatasetError, ModelError
from ..signal.audio import load_audio
from .dataset import EXCERPT_FACTOR
from .sources import CALIBRATION_SHARE, HOLDOUT_RULES, holdout_rule_name, holdout_tracks, list_audio, stable_seed

log = logging.getLogger(__name__)

#: Seconds at each end of a negative track that calibration windows avoid
#: (fade-ins and silence are not music anybody queries).
EDGE_SECONDS = 1.0


def encoder_holdout_rule(record: dict) -> str:
    """The calibration hold-out an encoder was trained without, from its record (``sources.HOLDOUT_RULES``).

    Records written before the field (``training.calibration_holdout``) name
    none: those encoders were trained without the per-track hold-out, "track".
    "none" (trained with ``--keep-calibration``, on every negative) is
    calibrated like "group", with a warning: no hold-out is unheard. A
    group hold-out at another share than the default
    (``training.calibration_share``) comes back as "group@SHARE"
    (``sources.holdout_rule_name``), so enrolment holds out exactly the
    packages the encoder did not train on. Raises ``ModelError`` for an
    unknown rule or share.
    """
    training = record.get("training") or {}
    rule = training.get("calibration_holdout", "track")
    if rule == "none":
        log.warning("the encoder was trained on the calibration negatives too: the false-positive rate "
                    "its threshold states is optimistic")
        return "group"
    try:
        return holdout_rule_name(rule, float(training.get("calibration_share", CALIBRATION_SHARE)))
    except (TypeError, ValueError) as e:
        raise ModelError(f"the encoder record's calibration hold-out is unusable: {e} "
                         f"(expected one of {HOLDOUT_RULES}, with a share between 0 and 1)") from None


def encoder_file_holdout_rule(json_path: Path | None = None) -> str:
    """The calibration hold-out rule (``encoder_holdout_rule``) of the encoder record at ``json_path``.

    json_path: an encoder's JSON record; default the shipped encoder, whose
    hold-out cnnbin's datasets follow (its embedding heads read that encoder).
    """
    from ..encoder.artifact import SHIPPED_ENCODER, read_encoder_record

    return encoder_holdout_rule(read_encoder_record(Path(json_path) if json_path else SHIPPED_ENCODER))


def holdout_rule(db: Path) -> str:
    """The calibration hold-out rule of a fingerprint database's own encoder copy (``encoder_holdout_rule``)."""
    return encoder_file_holdout_rule(Path(db) / fpdb.ENCODER_FILE)


def calibration_tracks(files: list[Path], params: CalibrationParams, rule: str = "group") -> list[Path]:
    """The negatives held out by ``rule`` (``sources.holdout_tracks``), or all of them if too few."""
    held = holdout_tracks([p.stem for p in files], rule)
    held_out = [p for p in files if p.stem in held]
    if len(held_out) >= params.min_tracks:
        return held_out
    log.warning("only %d of %d negatives are in the calibration split; calibrating on all of them",
                len(held_out), len(files))
    return list(files)


@dataclasses.dataclass(frozen=True)
class PlayNegatives:
    """The negatives a play threshold is set on, and which kind they are.

    files: the tracks to play; kind: one of ``PLAY_NEGATIVE_KINDS``, stored
    with the threshold (``play_negatives``) so that a database says what
    its false-play rate was measured on.
    """

    files: list[Path]
    kind: str


def play_negatives(db: Path, files: list[Path]) -> PlayNegatives:
    """The negatives a fingerprint database's play threshold is set on: those its encoder never trained on.

    db: the database (its own copy of the encoder's record says what the
    encoder trained on, ``training.trained_track_ids``); files: the negatives
    folder's audio. A track the encoder learnt to tell apart forms fewer and
    weaker false hypotheses than music it never heard, so a rate per hour
    measured on it would be optimistic. A record without the list (older
    encoders) gives the hold-out (``calibration_tracks``); when the encoder
    heard every negative, all of them are used and a warning says the rate
    is optimistic. Returns the files with their kind ("unheard", "holdout"
    or "heard").
    """
    from ..encoder.artifact import read_encoder_record, trained_track_ids

    record = read_encoder_record(Path(db) / fpdb.ENCODER_FILE)
    heard = trained_track_ids(record)
    if heard is None:
        return PlayNegatives(calibration_tracks(list(files), CalibrationParams(), encoder_holdout_rule(record)),
                             "holdout")
    unheard = [p for p in files if p.stem not in heard]
    if not unheard:
        log.warning("the encoder trained on every one of the %d negatives: the play threshold's false-play rate "
                    "is optimistic (give negatives it never heard)", len(files))
        return PlayNegatives(list(files), "heard")
    return PlayNegatives(unheard, "unheard")


#: Raw windows made at once (40,000 samples each at 16 kHz: 160 kB).
WINDOW_BLOCK = 256


def windows_for_track(usable_seconds: float, params: CalibrationParams) -> int:
    """How many calibration windows one negative gives: a fixed count, or by its length.

    usable_seconds: the span window starts are drawn from (the track less
    its edges and one excerpt). With ``params.windows_per_track`` set, that
    count; otherwise ``windows_per_minute`` of the span, kept within
    ``min_windows_per_track`` and ``max_windows_per_track``.
    """
    if params.windows_per_track > 0:
        return params.windows_per_track
    by_length = int(round(params.windows_per_minute * max(0.0, usable_seconds) / 60.0))
    return int(min(max(by_length, params.min_windows_per_track), params.max_windows_per_track))


def draw_windows(signal: np.ndarray, rng: np.random.Generator, count: int, *, span: tuple[int, int], length: int,
                 params: CalibrationParams, sample_rate: int) -> np.ndarray:
    """``count`` raw windows of one negative: (count, length) float32 samples.

    Each starts at a random sample of ``span`` (first and last start) and is
    distorted by ``augment.random_distortion`` with probability
    ``params.distorted_fraction``, clean otherwise (zero-padded if the track
    is shorter than a window).
    """
    from .augment import random_distortion

    lo, hi = span
    excerpt = int(EXCERPT_FACTOR * length)
    augment = AugmentParams()
    windows = np.empty((count, length), dtype=np.float32)
    for i in range(count):
        start = int(rng.integers(lo, max(lo, hi) + 1))
        chunk = signal[start:start + excerpt]
        if rng.random() < params.distorted_fraction:
            windows[i] = random_distortion(chunk, rng, params=augment, sample_rate=sample_rate, length=length)
        else:
            windows[i] = np.pad(chunk[:length], (0, max(0, length - chunk[:length].size)))
    return windows


def make_calibration_windows(negatives_dir: Path, *, audio: AudioParams, features: FeatureParams,
                             params: CalibrationParams = CalibrationParams(), progress: bool = True,
                             silence_dbfs: float = DecisionParams().silence_dbfs, holdout: str = "group") -> np.ndarray:
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

    files = calibration_tracks(list_audio(negatives_dir), params, holdout)
    length = audio.window_samples
    excerpt = int(EXCERPT_FACTOR * length)
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
        count = windows_for_track((hi - lo) / audio.sample_rate, params)
        silent = 0
        # In blocks, so a long negative never holds all its raw windows at once.
        for block in range(0, count, WINDOW_BLOCK):
            windows = draw_windows(signal, rng, min(WINDOW_BLOCK, count - block), span=(lo, hi), length=length,
                                   params=params, sample_rate=audio.sample_rate)
            heard = windows[~silent_windows(windows, silence_dbfs=silence_dbfs)]
            silent += len(windows) - len(heard)
            if len(heard):
                levels = band_db(power_spectrogram(heard, params=features), audio=audio, params=features)
                out.append(levels.astype(np.float16))
        if silent:
            log.info("calibration: %d silent window(s) of %s left out", silent, path.name)
    if not out:
        raise DatasetError(f"no usable negative tracks in {negatives_dir}")
    return np.concatenate(out)


#: Version of the rules ``make_calibration_windows`` follows, part of ``negatives_signature``:
#: windows stored by an older rule are made again (2: silent windows left out; 3: the count follows
#: each negative's length, ``windows_for_track``).
CALIBRATION_WINDOWS_RULE = 3


def negatives_signature(negatives_dir: Path, params: CalibrationParams, holdout: str = "group") -> str:
    """Identity of a negatives folder and the calibration settings (names, sizes, times, hold-out rule)."""
    from dataclasses import asdict

    h = hashlib.sha1(json.dumps(asdict(params), sort_keys=True).encode())
    h.update(f"rule {CALIBRATION_WINDOWS_RULE}\n".encode())  # rule 1 hashed nothing here: its windows differ
    if holdout != "track":  # the per-track rule hashed nothing: databases calibrated with it stay up to date
        h.update(f"holdout {holdout}\n".encode())
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
    holdout = holdout_rule(db)
    wanted = negatives_signature(negatives_dir, params, holdout)
    if path.exists() and wanted == info.calibration.get("negatives_signature"):
        log.info("calibration windows of %s are up to date", negatives_dir)
        return wanted
    windows = make_calibration_windows(negatives_dir, audio=info.audio, features=info.features, params=params,
                                       progress=progress, holdout=holdout)
    with atomic_open(path) as fh:
        np.save(fh, windows)
    return wanted
