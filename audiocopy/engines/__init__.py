"""Recognition engines: 2.5 s windows in, one calibrated margin per track out.

Place in the pipeline: after ``signal`` and ``encoder``, before ``decision``.
Every engine implements one method, ``score(WindowBatch) -> EngineScores``,
so the recognizer, the CLI, the server and the benchmarks never care which
one they hold:

* ``cnnbin``: one small binary model per licensed track, all evaluated in
  one batched pass; its cost grows with the catalogue.
* ``fingerprint`` (default): one shared encoder and a vector index;
  enrolment embeds tracks without training, and its cost hardly grows with
  the catalogue.

Each engine computes the features it needs with the pure functions of
``signal.features`` on the batch's array module (NumPy, or CuPy on a GPU).

An engine returns **margins**: for each window and each track, a score whose
sign is the calibrated decision (> 0: this window is that track at the
target false-positive rate) and whose size is comparable across tracks,
windows and files; and, where it knows them, the **track offsets**: where in
each track the window aligns, which is what lets the decision follow a play
along its offset line.

Streams. A stream's windows overlap by 2 s of their 2.5 s, so an engine
that analyses pieces of a window (the fingerprint engine's one-second
sub-windows) would repeat 80 % of its work. The owner of a stream (a server
session, a monitor, a file being scanned) keeps one ``StreamState`` and puts
it in the batch with each of that stream's windows; an engine that can reuse
work keeps its cache in it. The cache only saves work: answers are the same
with a fresh state.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from ..config import AudioParams, FeatureParams
from ..errors import ModelError

#: Engine name -> module implementing ``load(db, info) -> Engine``.
ENGINE_MODULES = {"cnnbin": "audiocopy.engines.cnnbin.engine", "fingerprint": "audiocopy.engines.fingerprint.engine"}


@dataclass(frozen=True)
class EngineScores:
    """What an engine says about a batch of windows.

    margins: (batch, n_tracks) float32; > 0 means "match" for that track.
    track_offsets_s: (batch, n_tracks) float32 position in the track (s)
        where each window's first sample aligns, NaN where a track had no
        evidence; None for engines that cannot tell.
    profiles: (batch, bands) float32, each window's mean band level in dB
        (its long-term spectrum, which the decision compares with the
        track's to measure a pitch shift); None where not computed.
    """

    margins: np.ndarray
    track_offsets_s: np.ndarray | None = None
    profiles: np.ndarray | None = None


class StreamState:
    """What an engine may remember about one stream between its windows.

    Made by the stream's owner, passed explicitly with each of the stream's
    windows (in stream order; gaps such as dropped windows are fine) and
    dropped with the stream. ``cache`` belongs to the engine that scores the
    stream (anything it likes, checked by the engine before use).
    """

    __slots__ = ("cache",)

    def __init__(self) -> None:
        self.cache = None


@dataclass(frozen=True)
class WindowBatch:
    """Windows to score, with where each sits in its stream.

    samples: (batch, window_samples) float32 NumPy at ``AudioParams.sample_rate``.
    start_samples: (batch,) int64 first sample of each window in its stream.
    states: (batch,) the ``StreamState`` of each window's stream, or None for
        a window scored on its own; windows of one state come in stream order.
    xp: the array module the engine computes on (NumPy or CuPy).
    """

    samples: np.ndarray
    start_samples: np.ndarray
    states: tuple
    xp: ModuleType = np

    def __post_init__(self) -> None:
        n = len(self.samples)
        if self.samples.ndim != 2 or len(self.start_samples) != n or len(self.states) != n:
            raise ValueError(f"a batch needs (n, samples) windows with n starts and n states; got "
                             f"{self.samples.shape}, {len(self.start_samples)} starts, {len(self.states)} states")

    @classmethod
    def independent(cls, samples: np.ndarray, *, xp: ModuleType = np) -> "WindowBatch":
        """Windows that belong to no stream (fragments, benchmark queries)."""
        samples = np.asarray(samples, dtype=np.float32)
        return cls(samples, np.zeros(len(samples), dtype=np.int64), (None,) * len(samples), xp)


class Engine(Protocol):
    """The interface shared by all engines."""

    name: str
    audio: AudioParams
    features: FeatureParams

    @property
    def track_ids(self) -> list[str]:
        """Enrolled track ids, in the column order of ``EngineScores``."""

    def score(self, batch: WindowBatch) -> EngineScores:
        """Margins (and offsets, where known) of every track for every window."""

    def refresh(self) -> bool:
        """Pick up tracks enrolled or removed on disk since loading; True if it reloaded."""

    def close(self) -> None:
        """Release files and connections (the engine is not used afterwards)."""

    def track_profile(self, track_id: str, start_s: float, end_s: float) -> np.ndarray | None:
        """The track's mean band level in dB over [start_s, end_s] of the track (None if unknown)."""


def load_engine(db: Path, *, engine_name: str) -> Engine:
    """Import the engine module named in the database and load the database."""
    if engine_name not in ENGINE_MODULES:
        raise ModelError(f"{db}: unknown engine {engine_name!r} (known: {', '.join(sorted(ENGINE_MODULES))})")
    module = importlib.import_module(ENGINE_MODULES[engine_name])
    return module.load(Path(db))
