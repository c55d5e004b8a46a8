"""Recognition engines: from features of 2.5 s windows to per-track scores.

Every engine implements the same small protocol (``Engine``) so that the
recognizer, the CLI, the server and the benchmark never care which one they
hold:

* ``cnnbin``: one small binary CNN per licensed track, all evaluated in one
  batched pass; robust and simple, its cost grows with the catalogue.
* ``fingerprint``: one shared encoder and a vector index; enrolment embeds
  tracks without training, and its cost hardly grows with the catalogue.

An engine returns **margins**: for each window and each track, a score whose
sign is the calibrated decision (> 0: this window is that track at the
target false-positive rate) and whose size is comparable across tracks,
windows and files.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
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
    track_offsets_s: (batch, n_tracks) float32 position in the track where
        the window best aligns, or None for engines that cannot tell.
    """

    margins: np.ndarray
    track_offsets_s: np.ndarray | None = None


class StreamMemory:
    """What an engine may remember about one live stream between its windows.

    A live stream's windows overlap by 2 s of their 2.5 s, so an engine that
    analyses pieces of a window (the fingerprint engine's one-second
    sub-windows) would repeat 80 % of its work on every window. The stream's
    owner (a server session) keeps one ``StreamMemory`` and passes it with
    each of its windows; an engine that can reuse work keeps its cache in
    ``engine_state`` (anything it likes, checked by the engine before use),
    and the others ignore it. The windows of one memory must come in stream
    order (gaps, e.g. dropped windows, are fine). The cache only saves work:
    an engine must answer the same with a fresh memory.
    """

    __slots__ = ("engine_state",)

    def __init__(self) -> None:
        self.engine_state = None


class Engine(Protocol):
    """The interface shared by all engines."""

    name: str
    audio: AudioParams
    features: FeatureParams
    track_ids: list[str]

    def score(self, features) -> EngineScores:
        """features: (batch, frames, bands) float32 from ``features.log_spectrogram``."""

    # Optional: engines that reuse work across a live stream's overlapping
    # windows also implement
    #   score_stream(windows, start_samples, memories, *, xp) -> EngineScores
    # (see ``fingerprint.FingerprintEngine.score_stream``).


def load_engine(db: Path, *, engine_name: str) -> Engine:
    """Import the engine module named in the database and load the database."""
    if engine_name not in ENGINE_MODULES:
        raise ModelError(f"{db}: unknown engine {engine_name!r} (known: {', '.join(sorted(ENGINE_MODULES))})")
    module = importlib.import_module(ENGINE_MODULES[engine_name])
    return module.load(Path(db))
