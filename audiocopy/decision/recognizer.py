"""Engine-agnostic recognition: audio in, ``Detection`` out.

Place in the pipeline: on top of the engines, under the CLI and the server.
It owns the steps every caller needs and no engine should repeat: cutting
windows, computing features (on the GPU when one is usable), asking the
engine for margins, and turning margins into a decision.

Decision rule. Engines return calibrated margins (see ``engines``): a margin
above 0 means the window passes that track's own threshold, which was set on
held-out negative audio for a target false-positive rate. So

* a window's answer is the track with the highest margin if it is > 0, and
  an explicit "no match" (``track=None``) otherwise; the score is that best
  margin either way, so one threshold sweep over scores trades hits against
  false positives for the whole catalogue at once;
* a longer input is cut into 2.5 s windows every 0.5 s, and each track's
  score is the mean of its best three window margins. One lucky window in a
  long recording is therefore not enough, but a single 2.5 s fragment (one
  window) is judged on its own;
* a window below -60 dBFS is silence, not music, and is "no match" without
  asking the engine's opinion (see ``SILENCE_DBFS``).

Live streams. A stream's windows overlap by 2 s, and an engine may reuse
the work it did on the overlap (``engines.StreamMemory``). The caller that
owns a stream (a server session) makes one ``StreamMemory`` and passes it
with each of the stream's windows to ``detect_windows``; the answers are
the same as without it, only cheaper.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from ..config import AudioParams, FeatureParams
from ..engines import Engine, EngineScores, StreamMemory, catalog, load_engine  # noqa: F401 (StreamMemory: re-exported)
from ..signal.features import log_spectrogram
from ..signal.windows import cut_windows
from ..signal.xp import get_xp

log = logging.getLogger(__name__)

#: How many of a track's best windows are averaged for a long input.
TOP_WINDOWS = 3
#: Windows quieter than this (RMS, dB below full scale) carry no music to
#: recognise: features standardise away loudness, so near-silence would be
#: blown up into amplified hiss and scored like music. They get ``SILENT_SCORE``.
SILENCE_DBFS = -60.0
#: Margin given to every track for a silent window: far below any decision.
SILENT_SCORE = -50.0


@dataclass(frozen=True)
class Candidate:
    """One ranked track for a query."""

    track: str
    score: float
    track_offset_s: float | None = None


@dataclass(frozen=True)
class Detection:
    """The answer for one window or one file.

    track: matched track id, or None for an explicit, calibrated "no match".
    score: the best margin (> 0 exactly when ``track`` is set); higher is more
        confident and comparable across queries.
    offset_s: start, in seconds from the start of the query, of the window
        that carried the decision (None when the query had no window).
    track_offset_s: where in the matched track that window aligns, for
        engines that know it (None for ``cnnbin``).
    candidates: the best-scoring tracks, best first.
    """

    track: str | None
    score: float
    offset_s: float | None
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    track_offset_s: float | None = None

    def to_json(self) -> dict:
        return {
            "match": self.track,
            "score": round(float(self.score), 4),
            "offset_s": None if self.offset_s is None else round(float(self.offset_s), 3),
            "track_offset_s": None if self.track_offset_s is None else round(float(self.track_offset_s), 3),
            "candidates": [
                {"track": c.track, "score": round(float(c.score), 4)} for c in self.candidates
            ],
        }


class Recognizer:
    """Windows or signals in, detections out, for any engine."""

    def __init__(self, engine: Engine, *, xp: ModuleType | None = None, top_k: int = 5):
        """engine: a loaded engine (``engines.load_engine``); xp: NumPy or CuPy
        (default: CuPy when a GPU is usable); top_k: candidates per detection."""
        self.engine = engine
        self.xp = xp if xp is not None else get_xp()
        self.top_k = top_k

    @classmethod
    def open(cls, db: str | Path, *, xp: ModuleType | None = None, top_k: int = 5) -> "Recognizer":
        """Load the database at ``db`` with the engine its metadata names."""
        info = catalog.open_db(Path(db))
        engine = load_engine(Path(db), engine_name=info.engine)
        return cls(engine, xp=xp, top_k=top_k)

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
        """Pick up tracks enrolled or removed since loading (engines that support it).

        Returns True when the engine reloaded. Track ids are read from the
        engine at every decision, so nothing else needs resetting. Call it
        between batches, from the thread that scores.
        """
        refresh = getattr(self.engine, "refresh", None)
        return bool(refresh()) if refresh is not None else False

    def score_windows(self, windows: np.ndarray, *, starts_s: np.ndarray | None = None,
                      streams: list | None = None) -> EngineScores:
        """Engine margins for a batch of windows.

        windows: (batch, audio.window_samples) float32 at ``audio.sample_rate``.
        streams: optional (batch,) ``StreamMemory`` (or None) of the stream each
        window belongs to, with starts_s: (batch,) its start in that stream
        (seconds); engines that reuse overlapping work use them.
        """
        windows = np.asarray(windows, dtype=np.float32)
        score_stream = getattr(self.engine, "score_stream", None)
        if streams is not None and score_stream is not None:
            if starts_s is None or len(starts_s) != len(windows) or len(streams) != len(windows):
                raise ValueError("streams and starts_s must give one entry per window")
            start_samples = np.rint(np.asarray(starts_s, dtype=np.float64) * self.audio.sample_rate)
            scores = score_stream(windows, start_samples.astype(np.int64), list(streams), xp=self.xp)
        else:
            feats = log_spectrogram(windows, audio=self.audio, params=self.features_params, xp=self.xp)
            scores = self.engine.score(feats)
        rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
        silent = rms < 10 ** (SILENCE_DBFS / 20)
        if silent.any():
            margins = scores.margins.copy()
            margins[silent] = SILENT_SCORE
            scores = EngineScores(margins, scores.track_offsets_s)
        return scores

    def _decide(self, scores: np.ndarray, offsets: np.ndarray | None, offset_s: float | None,
                track_offsets: np.ndarray | None, track_ids: list[str]) -> Detection:
        order = np.argsort(-scores)[: self.top_k]
        cands = tuple(
            Candidate(str(track_ids[i]), float(scores[i]),
                      None if track_offsets is None else float(track_offsets[i]))
            for i in order
        )
        if not cands:
            return Detection(None, float("-inf"), offset_s)
        best = cands[0]
        matched = best.score > 0
        return Detection(
            track=best.track if matched else None,
            score=best.score,
            offset_s=offset_s if offsets is None else float(offsets[order[0]]),
            candidates=cands,
            track_offset_s=best.track_offset_s if matched else None,
        )

    def detect_windows(self, windows: np.ndarray, starts_s: np.ndarray | None = None,
                       streams: list | None = None) -> list[Detection]:
        """One detection per window.

        windows: (batch, window_samples) float32; starts_s: (batch,) stream
        time of each window (used as ``offset_s``), default 0; streams:
        optional (batch,) ``StreamMemory`` of each window's stream (windows
        of one stream in stream order).
        """
        if len(windows) == 0:
            return []
        result = self.score_windows(windows, starts_s=starts_s, streams=streams)
        # Read after scoring: an engine that reloads (``refresh``) between
        # batches may have added or removed tracks since the last call.
        track_ids = self.engine.track_ids
        starts = np.zeros(len(windows)) if starts_s is None else np.asarray(starts_s, dtype=float)
        out = []
        for i in range(len(windows)):
            tro = None if result.track_offsets_s is None else result.track_offsets_s[i]
            out.append(self._decide(result.margins[i], None, float(starts[i]), tro, track_ids))
        return out

    def identify(self, signal: np.ndarray, *, batch_size: int = 32) -> Detection:
        """Identify a whole signal (at least one window long).

        signal: (n,) float32 at ``audio.sample_rate``. Windows every hop are
        scored and combined as described in the module docstring.
        """
        windows, starts = cut_windows(signal, audio=self.audio)
        if len(windows) == 0:
            return Detection(None, float("-inf"), None)
        parts = [self.score_windows(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
        margins = np.concatenate([p.margins for p in parts])  # (n_windows, n_tracks)
        has_offsets = parts[0].track_offsets_s is not None
        k = min(TOP_WINDOWS, len(windows))
        best_rows = np.argsort(-margins, axis=0)[:k]  # (k, n_tracks)
        combined = np.take_along_axis(margins, best_rows, axis=0).mean(axis=0)
        offsets = starts[best_rows[0]]  # window that scored best for each track
        track_offsets = None
        if has_offsets:
            tro = np.concatenate([p.track_offsets_s for p in parts])
            track_offsets = np.take_along_axis(tro, best_rows[:1], axis=0)[0]
        return self._decide(combined, offsets, None, track_offsets, self.engine.track_ids)
