"""A whole recording answered by the same decision as a live stream.

Place in the pipeline: the top of ``decision``, under the CLI (``identify``,
``evaluate``), the web Identify page and the calibration of the play
threshold. A file is cut into the same 2.5 s windows every 0.5 s as a live
stream (``signal.windows``), scored with one ``StreamState`` (so each
sub-window is analysed once, as live), and its detections go through one
``StreamDecision``: a file gets exactly the plays a live stream of the same
audio would get.

The file's single answer (``FileAnalysis.answer``, what ``identify`` prints):

* its best play: the one with the most supporting windows (then the best
  peak margin). The score is that play's peak window margin (> 0), the
  offsets are where the play starts in the file and in the track;
* a fragment (at most ``DecisionParams.fragment_windows`` windows, 2.5 to
  3.5 s) cannot accumulate stream evidence, so it is answered by its best
  window's own calibrated decision: the product's promise is a 2.5 s
  fragment, and the window threshold was calibrated for exactly that;
* otherwise "no match", with a score below 0: the best hypothesis'
  evidence minus the play threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..signal.windows import window_starts
from .detection import Candidate, Detection
from .play import Play
from .recognizer import Recognizer


@dataclass(frozen=True)
class FileAnalysis:
    """Everything one recording gave.

    windows: one detection per window, in time order. plays: every play,
    by start time. answer: the file's single answer (module docstring).
    seconds: length of what was analysed. peaks: evidence peaks of every
    hypothesis (what the play threshold is calibrated on).
    """

    windows: tuple[Detection, ...]
    plays: tuple[Play, ...]
    answer: Detection
    seconds: float
    peaks: tuple[float, ...]


class FileStream:
    """One recording fed through the stream decision a batch at a time.

    recognizer: the loaded recognizer. signal: (n,) float32 at
    ``recognizer.audio.sample_rate``. source: the plays' source label.
    batch_size: windows per engine call (cut per batch: all windows at once
    would be five times the audio). threshold: the play threshold (default:
    the recognizer's; calibration passes infinity to watch evidence without
    plays). wall_start: epoch seconds of the recording's start (default: now).

    ``step()`` scores the next batch and returns whether there is more; a
    server calls it in its compute executor between live batches, so a long
    upload never holds live streams up for more than one batch.
    """

    def __init__(self, recognizer: Recognizer, signal: np.ndarray, *, source: str = "file", batch_size: int = 32,
                 threshold: float | None = None, wall_start: float | None = None):
        audio = recognizer.audio
        self.recognizer = recognizer
        self.signal = np.asarray(signal, dtype=np.float32)
        self.batch_size = batch_size
        self.starts = window_starts(self.signal.size, audio=audio)
        self.decision = recognizer.stream_decision(source, wall_start=wall_start, threshold=threshold)
        self._state = recognizer.new_stream_state()
        self._next = 0
        self.detections: list[Detection] = []
        self.plays: list[Play] = []

    @property
    def fraction_done(self) -> float:
        return 1.0 if not len(self.starts) else self._next / len(self.starts)

    def step(self) -> bool:
        """Score the next batch of windows; False once every window is done."""
        audio = self.recognizer.audio
        chunk = self.starts[self._next:self._next + self.batch_size]
        if len(chunk):
            window = np.arange(audio.window_samples)
            dets = self.recognizer.detect_windows(self.signal[chunk[:, None] + window[None, :]],
                                                  chunk / audio.sample_rate, [self._state] * len(chunk))
            for det in dets:
                self.plays += self.decision.update(det).closed
            self.detections += dets
            self._next += len(chunk)
        return self._next < len(self.starts)

    def result(self) -> FileAnalysis:
        """Close the stream and give the windows, the plays and the answer (call once, after the last step)."""
        plays = self.plays + self.decision.finish()
        peaks = tuple(self.decision.evidence_peaks())
        answer = file_answer(self.detections, plays, peaks, threshold=self.decision.threshold,
                             fragment_windows=self.recognizer.params.fragment_windows)
        return FileAnalysis(tuple(self.detections), tuple(sorted(plays, key=lambda p: p.start_s)), answer,
                            self.signal.size / self.recognizer.audio.sample_rate, peaks)


def analyse_signal(recognizer: Recognizer, signal: np.ndarray, *,
                   on_progress: Callable[[float], None] | None = None, **kwargs) -> FileAnalysis:
    """Windows, plays and the single answer of one recording (``FileStream`` run to the end).

    kwargs: as ``FileStream``; on_progress: called with the fraction done
    after each batch.
    """
    stream = FileStream(recognizer, signal, **kwargs)
    while stream.step():
        if on_progress is not None:
            on_progress(stream.fraction_done)
    if on_progress is not None:
        on_progress(1.0)
    return stream.result()


def negative_evidence(recognizer: Recognizer, signals) -> tuple[np.ndarray, float]:
    """Evidence peaks that music outside the catalogue builds up, and its length in hours.

    signals: iterable of (n,) float32 recordings at the recognizer's rate,
    none of them in the catalogue. Each is run as a stream with an infinite
    play threshold, so hypotheses grow as far as the audio takes them
    without one play cutting another short. ``calibration.play_threshold``
    turns the result into the play threshold.
    """
    peaks: list[float] = []
    seconds = 0.0
    for signal in signals:
        result = analyse_signal(recognizer, signal, threshold=float("inf"), source="calibration")
        peaks += result.peaks
        seconds += result.seconds
    return np.asarray(peaks, dtype=np.float64), seconds / 3600.0


def file_answer(detections: list[Detection], plays: list[Play], peaks: tuple[float, ...], *, threshold: float,
                fragment_windows: int) -> Detection:
    """The file's single answer from its windows and plays (see the module docstring)."""
    if not detections:
        return Detection(None, float("-inf"), None)
    if plays:
        best = max(plays, key=lambda p: (p.windows, p.peak_score))
        ranked = _ranked_tracks(plays)
        return Detection(best.track, best.peak_score, best.start_s, ranked, best.track_start_s)
    if len(detections) <= fragment_windows:
        return max(detections, key=lambda d: d.score)
    # Every hypothesis stayed under the threshold (or there would be a play),
    # so this is below 0: how far the best one was from becoming a play.
    below = min(max(peaks, default=0.0) - threshold, 0.0)
    return Detection(None, below, None, max(detections, key=lambda d: d.score).candidates)


def _ranked_tracks(plays: list[Play]) -> tuple[Candidate, ...]:
    """Each played track once, best play first (the answer's candidates)."""
    best: dict[str, Play] = {}
    for p in plays:
        if p.track not in best or (p.windows, p.peak_score) > (best[p.track].windows, best[p.track].peak_score):
            best[p.track] = p
    order = sorted(best.values(), key=lambda p: (p.windows, p.peak_score), reverse=True)
    return tuple(Candidate(p.track, p.peak_score, p.track_start_s) for p in order)
