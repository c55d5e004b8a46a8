"""A loaded encoder: standardised one-second sub-windows in, unit vectors out.

Place in the pipeline: between ``encoder.subwindows`` (the cut, floored and
standardised sub-windows) and whatever searches or scores the vectors (the
fingerprint engine's index, cnnbin's embedding heads). The forward pass is
``encoder.forward`` on the array module the caller names: NumPy on a CPU,
CuPy on a GPU, never TensorFlow, which is only needed to train. The weights
are prepared once per array module (folded batch normalisation, on that
module's device) and kept.
"""
from __future__ import annotations

import threading
from types import ModuleType

import numpy as np

from ..config import AudioParams, EncoderParams, FeatureParams
from ..signal.xp import to_numpy
from .forward import embed
from .subwindows import track_subwindows, window_subwindows
from .weights import EncoderWeights, prepare_weights


class Encoder:
    """A loaded encoder (``artifact.load_encoder``).

    Attributes: ``params`` (EncoderParams), ``audio``/``features`` (what it
    was trained on), ``sha256`` (of its weights file: the identity a database
    records), ``info`` (the artifact's JSON record).
    """

    def __init__(self, arrays: list[np.ndarray], *, params: EncoderParams, audio: AudioParams,
                 features: FeatureParams, sha256: str, info: dict | None = None):
        """arrays: the trained weights in the record's order (``model.get_weights()`` order);
        checked against ``params`` here (``ParamsMismatch`` if they do not fit)."""
        self.params = params
        self.audio = audio
        self.features = features
        self.sha256 = sha256
        self.info = info or {}
        self._arrays = arrays
        self._lock = threading.Lock()
        self._weights: dict[ModuleType, EncoderWeights] = {np: self._prepare(np)}

    def _prepare(self, xp: ModuleType) -> EncoderWeights:
        p = self.params
        return prepare_weights(self._arrays, widths=p.widths, hidden_dim=p.hidden_dim,
                               embedding_dim=p.embedding_dim, frames=p.frames, bands=p.bands, xp=xp)

    def weights_on(self, xp: ModuleType) -> EncoderWeights:
        """The prepared weights on ``xp``'s device (prepared the first time)."""
        if xp not in self._weights:
            with self._lock:
                if xp not in self._weights:
                    self._weights[xp] = self._prepare(xp)
        return self._weights[xp]

    @property
    def dim(self) -> int:
        return self.params.embedding_dim

    def embed(self, subwindows, *, xp: ModuleType = np) -> np.ndarray:
        """Unit vectors of standardised sub-windows, computed on ``xp``.

        subwindows: (n, frames, bands) float32 standardised (``subwindows.
        standardize``), host or ``xp`` arrays. Returns (n, embedding_dim)
        float32 NumPy with unit L2 norm per row (the index lives on the host).
        Raises ``ValueError`` for another shape.
        """
        return np.asarray(to_numpy(embed(subwindows, self.weights_on(xp), xp=xp)), dtype=np.float32)

    def embed_windows(self, features, starts: np.ndarray, *, xp: ModuleType = np) -> np.ndarray:
        """Embed the sub-windows of a batch of query windows.

        features: (batch, n_frames, bands) from ``signal.features.log_spectrogram``
        (NumPy or CuPy). starts: (n_sub,) start frames.
        Returns (batch, n_sub, embedding_dim) float32.
        """
        return self.embed_subwindows(window_subwindows(features, starts, self.params.frames), xp=xp)

    def embed_subwindows(self, sub: np.ndarray, *, xp: ModuleType = np) -> np.ndarray:
        """(batch, n_sub, frames, bands) from ``window_subwindows`` -> (batch, n_sub, embedding_dim)."""
        flat = self.embed(sub.reshape(-1, self.params.frames, self.params.bands), xp=xp)
        return flat.reshape(*sub.shape[:2], self.dim)

    def embed_track(self, band_db: np.ndarray, *, hop_frames: int, xp: ModuleType = np) -> np.ndarray:
        """Embed every sub-window of a whole track.

        band_db: (n_frames, bands) from ``signal.features.track_band_db``;
        hop_frames: step between sub-windows. Returns (n_sub, embedding_dim)
        float32; vector ``i`` starts at frame ``i * hop_frames``.
        """
        return self.embed(track_subwindows(band_db, frames=self.params.frames, hop_frames=hop_frames,
                                           floor_db=self.features.floor_db), xp=xp)
