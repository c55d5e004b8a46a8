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
ENGINE_MODULES = {"cnnbin": "audiocopy.engines.cnnbin", "fingerprint": "audiocopy.engines.fingerprint"}


@dataclass(frozen=True)
class EngineScores:
    """What an engine says about a batch of windows.

    margins: (batch, n_tracks) float32; > 0 means "match" for that track.
    track_offsets_s: (batch, n_tracks) float32 position in the track where
        the window best aligns, or None for engines that cannot tell.
    """

    margins: np.ndarray
    track_offsets_s: np.ndarray | None = None


class Engine(Protocol):
    """The interface shared by all engines."""

    name: str
    audio: AudioParams
    features: FeatureParams
    track_ids: list[str]

    def score(self, features) -> EngineScores:
        """features: (batch, frames, bands) float32 from ``features.log_spectrogram``."""


def load_engine(db: Path, *, engine_name: str) -> Engine:
    """Import the engine module named in the database and load the database."""
    if engine_name not in ENGINE_MODULES:
        raise ModelError(f"{db}: unknown engine {engine_name!r} (known: {', '.join(sorted(ENGINE_MODULES))})")
    module = importlib.import_module(ENGINE_MODULES[engine_name])
    return module.load(Path(db))
