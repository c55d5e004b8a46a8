"""Calibrating the play threshold of a database on negative music, for both engines.

Place in the pipeline: the last step of enrolment (``enroll_fingerprint``,
``enroll_cnnbin``), after the per-window threshold is set. The stream
decision (``decision.stream``) starts a play when a hypothesis' evidence
passes this threshold, so the threshold is what sets the rate of false plays
per hour on music outside the catalogue.

Which music. Negative tracks (for cnnbin its dataset's calibration hold-out,
which no track model was trained against; for fingerprint every negative its
encoder never trained on, ``calibration_windows.play_negatives``), each played as a whole
stream twice: as it is, and through a generated room and
microphone (``augment.chain``), because a room changes which wrong tracks
look alike and how long a false hypothesis survives. Each stream runs with
an infinite threshold, so hypotheses grow as far as the audio takes them
(``decision.files.negative_evidence``), and ``decision.calibration.
play_threshold`` sets the threshold for ``DecisionParams.false_plays_per_hour``.

The threshold is evidence in the engine's margin units (``DecisionParams.
in_margin_units``), so the unit it was set in is stored beside it
(``play_margin_unit``): a recognizer keeps using that unit until the
threshold is recalibrated. Which negatives it was set on is stored too
(``play_negatives``, ``decision.calibration.PLAY_NEGATIVE_KINDS``): a
recognizer warns when they do not stand for music the database never met.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import AudioParams, DecisionParams
from ..decision.calibration import PLAY_NEGATIVE_KINDS, TAIL_SIZE, play_threshold, play_threshold_floor
from ..decision.files import negative_evidence
from ..decision.recognizer import Recognizer
from ..engines import catalog, load_engine
from ..errors import AudiocopyError, ConfigError
from ..signal.audio import load_audio
from .augment.chain import apply_chain, random_chain
from .sources import stable_seed

log = logging.getLogger(__name__)

#: At most this many tracks of negatives are played (each twice): about two
#: hours of streams, enough to fit the tail, a few minutes of compute.
MAX_TRACKS = 24

#: Keys of ``db.json``'s calibration written here (kept when a later
#: recalibration has no negatives to redo them).
PLAY_KEYS = ("play_threshold", "play_rate_per_hour", "play_calibration_hours", "play_hypotheses", "play_margin_unit",
             "play_negatives")


def negative_streams(files: list[Path], *, audio: AudioParams, seed: int = 0) -> Iterator[np.ndarray]:
    """Each negative file as it is, then through a room chain drawn from its track id.

    Undecodable files are logged and skipped.
    """
    for path in files:
        try:
            signal = load_audio(path, params=audio)
        except AudiocopyError as exc:
            log.warning("skipped negative %s", exc)
            continue
        yield signal
        rng = np.random.default_rng(stable_seed(seed, "play-calibration", path.stem))
        yield apply_chain(signal, random_chain(rng, kind="room"), sample_rate=audio.sample_rate, rng=rng)


def calibrate_play_threshold(db: Path, files: list[Path], *, kind: str,
                             params: DecisionParams = DecisionParams()) -> dict:
    """Set ``play_threshold`` in ``db.json`` from negative streams; returns the calibration entries.

    files: negative tracks no model of the database was trained on (at most
    ``MAX_TRACKS`` of them are played, chosen by hash); kind: what they are,
    a key of ``decision.calibration.PLAY_NEGATIVE_KINDS``, stored as
    ``play_negatives`` so that the database says what its rate was measured
    on. The database's per-window threshold must already be calibrated:
    margins are measured against it. Raises ``ConfigError`` for an unknown
    kind.
    """
    if kind not in PLAY_NEGATIVE_KINDS:
        raise ConfigError(f"unknown kind of play-calibration negatives {kind!r} (known: {sorted(PLAY_NEGATIVE_KINDS)})")
    # A fixed, hash-chosen subset when there are many: enrolment stays minutes.
    files = sorted(files, key=lambda f: stable_seed("play-calibration-order", f.stem))[:MAX_TRACKS]
    info = catalog.open_db(db)
    # Any threshold will do: the negatives run with an infinite one.
    engine = load_engine(Path(db), engine_name=info.engine)
    recognizer = Recognizer(engine, xp=np, params=params)  # in this version's margin unit for the engine
    scaled = recognizer.params  # the decision's margin fields in this engine's units
    try:
        if not recognizer.track_ids:
            return {}
        peaks, hours = negative_evidence(recognizer, negative_streams(files, audio=recognizer.audio))
    finally:
        recognizer.close()
    if hours <= 0:
        log.warning("no usable negatives for the play threshold of %s; keeping %.2f", db,
                    recognizer.play_threshold)
        return {}
    if len(peaks) < TAIL_SIZE:
        log.warning("%s: only %d hypotheses in %.2f h of negative music, too few to fit the tail of their "
                    "evidence; the play threshold is at least the default %.2f (give more negatives)", db,
                    len(peaks), hours, scaled.start_evidence)
    threshold = play_threshold(peaks, hours, rate_per_hour=params.false_plays_per_hour,
                               floor=play_threshold_floor(len(peaks), scaled))
    entries = {"play_threshold": round(threshold, 4), "play_rate_per_hour": params.false_plays_per_hour,
               "play_calibration_hours": round(hours, 3), "play_hypotheses": int(len(peaks)),
               "play_margin_unit": recognizer.margin_unit, "play_negatives": kind}
    info = catalog.open_db(db)
    catalog.set_calibration(db, {**info.calibration, **entries})
    log.info("play threshold %.3f for %.2f false plays per hour (%d hypotheses in %.2f h of negatives)",
             threshold, params.false_plays_per_hour, len(peaks), hours)
    return entries
