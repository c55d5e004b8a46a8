"""Windows in, one ``Detection`` per window out, for any engine.

Place in the pipeline: between the engines and the stream decision. It owns
what every caller needs and no engine should repeat: choosing the array
module (CuPy on a usable GPU, NumPy otherwise), treating silence as silence,
and ranking each window's tracks into a ``Detection``
(``detection.decide_window``). How windows become plays is
``decision.stream``; how a whole file is answered is ``decision.files``.

Margin units. The decision's margin parameters were tuned on the
fingerprint engine's margins; the recognizer hands its stream decisions
``params.in_margin_units(unit)`` with the engine's unit
(``DecisionParams.margin_unit``). A database's play threshold holds only
for the unit it was calibrated with (``play_margin_unit`` in its
calibration; databases calibrated before units existed were calibrated in
1), so that unit is used until the threshold is recalibrated; and it holds
only as far as the negatives it was set on stand for new music
(``play_negatives``): a database that cannot say so, or says they were
music its encoder trained on, is named in a warning when it is opened.

Silence. A window below ``DecisionParams.silence_dbfs`` (RMS) carries no
music: the features standardise loudness away, so near-silence would be
blown up into amplified hiss and scored like music. Its margins are set to
``SILENT_SCORE`` and the detection says ``silent``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from ..config import AudioParams, DecisionParams, FeatureParams
from ..engines import Engine, EngineScores, StreamState, WindowBatch, catalog, load_engine
from ..signal.xp import get_xp
from .calibration import PLAY_NEGATIVE_KINDS
from .detection import Detection, decide_window
from .stream import StreamDecision

log = logging.getLogger(__name__)

#: Margin given to every track for a silent window: far below any decision.
SILENT_SCORE = -50.0


def silent_windows(windows: np.ndarray, *, silence_dbfs: float) -> np.ndarray:
    """Which windows are silence: (batch,) bool, RMS below ``silence_dbfs`` (dB re full scale).

    windows: (batch, samples) float32 audio. The recognizer answers these
    "silent" whatever the engine says, and calibration leaves them out
    (``training.enroll_fingerprint``): a threshold must be set on what can
    actually reach a decision.
    """
    windows = np.asarray(windows, dtype=np.float32)
    if not len(windows):
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    return rms < 10 ** (silence_dbfs / 20)


def stored_margin_unit(calibration: dict) -> float:
    """The margin unit a database's play threshold was calibrated in: ``play_margin_unit``, or 1 for a
    threshold calibrated before units were recorded (they were all in the fingerprint engine's)."""
    return float(calibration.get("play_margin_unit", 1.0))


def calibrated_margin_unit(calibration: dict, engine_unit: float) -> float | None:
    """The margin unit a database's play threshold holds for; None when it has no play threshold.

    calibration: the database's calibration record (``catalog.open_db``);
    engine_unit: the unit this version gives its engine
    (``DecisionParams.margin_unit``). A threshold calibrated before units
    were recorded was calibrated in 1. A unit other than ``engine_unit`` is
    logged: the database keeps its own until it is recalibrated.
    """
    if calibration.get("play_threshold") is None:
        return None
    unit = stored_margin_unit(calibration)
    if unit != engine_unit:
        log.warning("the play threshold was calibrated with the stream decision's margins in units of %g, this "
                    "version uses %g for this engine; keeping %g until the threshold is recalibrated "
                    "(audiocopy train or enroll on the database)", unit, engine_unit, unit)
    return unit


def play_negatives_warning(calibration: dict, engine: str) -> str | None:
    """Why a database's false-play rate may be higher than it states, or None.

    calibration: its calibration record (``catalog.open_db``); engine: its
    engine's name. Its ``play_negatives`` says what the play threshold was
    set on (``calibration.PLAY_NEGATIVE_KINDS``). A fingerprint database
    calibrated before that was recorded played every negative, music its
    encoder trained on included; a cnnbin one always played its dataset's
    hold-out. Enrolling again with negatives recalibrates the threshold.
    """
    if calibration.get("play_threshold") is None:
        return None
    kind = calibration.get("play_negatives")
    if kind is None:
        if engine != "fingerprint":
            return None
        return ("its play threshold was set by an older version on every negative, music its encoder trained on "
                "included, so its false plays per hour may be more than stated; enrol again with --negatives DIR "
                "to recalibrate it")
    if kind == "heard":
        return (f"its play threshold was set on {PLAY_NEGATIVE_KINDS[kind]}; enrol again with --negatives DIR of "
                "music the encoder never heard")
    if kind not in PLAY_NEGATIVE_KINDS:
        return f"its play threshold was set on negatives of an unknown kind {kind!r} (a newer version's database?)"
    return None


class Recognizer:
    """An engine plus the decision parameters and the array module to run it on.

    engine: a loaded engine (``engines.load_engine``); xp: NumPy or CuPy
    (default: CuPy when a GPU is usable); params: the decision parameters,
    in the fingerprint engine's margin units; play_threshold: the database's
    calibrated evidence a play needs (None: the scaled
    ``params.start_evidence``); margin_unit: the unit that threshold was
    calibrated in (None: the engine's, ``params.margin_unit``).
    ``self.params`` are ``params`` in that unit.
    """

    def __init__(self, engine: Engine, *, xp: ModuleType | None = None, params: DecisionParams = DecisionParams(),
                 play_threshold: float | None = None, margin_unit: float | None = None):
        self.engine = engine
        self.xp = xp if xp is not None else get_xp()
        self.margin_unit = params.margin_unit(engine.name) if margin_unit is None else float(margin_unit)
        self.params = params.in_margin_units(self.margin_unit)
        self.play_threshold = self.params.start_evidence if play_threshold is None else float(play_threshold)

    @classmethod
    def open(cls, db: str | Path, *, xp: ModuleType | None = None,
             params: DecisionParams = DecisionParams()) -> "Recognizer":
        """Load the database at ``db`` with the engine and play threshold its metadata names."""
        info = catalog.open_db(Path(db))
        engine = load_engine(Path(db), engine_name=info.engine)
        threshold = info.calibration.get("play_threshold")
        unit = calibrated_margin_unit(info.calibration, params.margin_unit(engine.name))
        recognizer = cls(engine, xp=xp, params=params, play_threshold=threshold, margin_unit=unit)
        doubt = play_negatives_warning(info.calibration, engine.name)
        if doubt:
            log.warning("%s: %s", db, doubt)
        if threshold is None and engine.track_ids:
            log.info("%s has no calibrated play threshold; using %.2f (enrol with --negatives to calibrate)",
                     db, recognizer.play_threshold)
        return recognizer

    @property
    def audio(self) -> AudioParams:
        return self.engine.audio

    @property
    def features_params(self) -> FeatureParams:
        return self.engine.features

    @property
    def track_ids(self) -> list[str]:
        return list(self.engine.track_ids)

    def refresh(self) -> bool:
        """Pick up tracks enrolled or removed on disk since loading (call between batches)."""
        return bool(self.engine.refresh())

    def score_windows(self, windows: np.ndarray, *, starts_s: np.ndarray | None = None,
                      states: list | None = None) -> tuple[EngineScores, np.ndarray]:
        """Engine margins for a batch of windows, silence applied.

        windows: (batch, audio.window_samples) float32 at ``audio.sample_rate``.
        starts_s: (batch,) stream time of each window (s), default 0.
        states: (batch,) ``StreamState`` (or None) of each window's stream.
        Returns (scores, silent (batch,) bool).
        """
        windows = np.asarray(windows, dtype=np.float32)
        n = len(windows)
        starts = np.zeros(n) if starts_s is None else np.asarray(starts_s, dtype=np.float64)
        start_samples = np.rint(starts * self.audio.sample_rate).astype(np.int64)
        batch = WindowBatch(windows, start_samples, tuple(states) if states is not None else (None,) * n, self.xp)
        scores = self.engine.score(batch)
        silent = silent_windows(windows, silence_dbfs=self.params.silence_dbfs)
        if silent.any():
            margins = scores.margins.copy()
            margins[silent] = SILENT_SCORE
            scores = EngineScores(margins, scores.track_offsets_s, scores.profiles)
        return scores, silent

    def detect_windows(self, windows: np.ndarray, starts_s: np.ndarray | None = None,
                       states: list | None = None) -> list[Detection]:
        """One detection per window.

        windows: (batch, window_samples) float32; starts_s: (batch,) stream
        time of each window (its ``offset_s``), default 0; states: optional
        (batch,) ``StreamState`` of each window's stream (a stream's windows
        in stream order).
        """
        if len(windows) == 0:
            return []
        scores, silent = self.score_windows(windows, starts_s=starts_s, states=states)
        # Read after scoring: an engine that reloads (``refresh``) between
        # batches may have added or removed tracks since the last call.
        track_ids = self.engine.track_ids
        starts = np.zeros(len(windows)) if starts_s is None else np.asarray(starts_s, dtype=float)
        offsets, profiles = scores.track_offsets_s, scores.profiles
        return [decide_window(scores.margins[i], None if offsets is None else offsets[i], track_ids,
                              start_s=float(starts[i]), top_k=self.params.top_k, silent=bool(silent[i]),
                              profile=None if profiles is None else profiles[i])
                for i in range(len(windows))]

    def track_profile(self, track_id: str, start_s: float, end_s: float):
        """The track's mean band level (dB) over a stretch of it (``Engine.track_profile``), or None."""
        return self.engine.track_profile(track_id, start_s, end_s)

    def stream_decision(self, source: str, *, wall_start: float | None = None,
                        threshold: float | None = None) -> StreamDecision:
        """A new stream's decision, with this database's play threshold, parameters and track spectra.

        source: the plays' source label; wall_start: epoch seconds of stream
        time 0 (default: now); threshold: overrides the play threshold
        (calibration passes infinity to watch evidence without plays).
        """
        return StreamDecision(source, window_s=self.audio.window_seconds,
                              wall_start=time.time() if wall_start is None else wall_start,
                              threshold=self.play_threshold if threshold is None else threshold, params=self.params,
                              track_profile=self.track_profile, bins_per_octave=self.features_params.bins_per_octave)

    def close(self) -> None:
        """Release the engine's files and connections."""
        self.engine.close()

    def new_stream_state(self) -> StreamState:
        """A fresh per-stream state for the engine's cache (see ``engines.StreamState``)."""
        return StreamState()
