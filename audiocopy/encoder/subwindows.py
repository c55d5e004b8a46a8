"""The encoder's input: one-second sub-windows, floored and standardised on their own.

Place in the pipeline: between ``signal.features`` (band levels in dB) and
the encoder. Enrolment cuts a whole track into sub-windows every
``enrol_hop_frames``; a query window is cut into about ten sub-windows every
``query_hop_frames``. Each sub-window is floored ``floor_db`` below its own
peak and standardised to zero mean and unit variance over its own cells, so
what a sub-window holds never depends on the window or track it was cut
from: the same second of music embeds to the same vector at enrolment, in a
file and in a live stream.
"""
from __future__ import annotations

import numpy as np


def subwindow_starts(n_frames: int, *, frames: int, hop_frames: int) -> np.ndarray:
    """Start frame of every sub-window of ``frames`` frames, ``hop_frames`` apart.

    n_frames: length of the feature sequence (frames). Returns (n,) int64,
    empty when ``n_frames < frames``. Unlike ``stream.window_starts`` the
    tail is not forced in: the sub-window grid must stay regular so that a
    vector's position is ``index * hop_frames``.
    """
    if n_frames < frames:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_frames - frames + 1, hop_frames, dtype=np.int64)


def standardize(x: np.ndarray, *, floor_db: float | None = None) -> np.ndarray:
    """Standardise each sub-window over its last two axes (frames, bands).

    x: (..., frames, bands) float. With ``floor_db`` the values are decibels
    and are first floored ``floor_db`` below each sub-window's peak (as
    ``features.log_spectrogram`` does); without it they are already floored
    features. Returns float32 of the same shape; a constant sub-window
    (digital silence) becomes zeros, not NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    if floor_db is not None:
        peak = x.max(axis=(-2, -1), keepdims=True)
        x = np.maximum(x, peak - np.float32(floor_db))
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return ((x - mean) / np.maximum(std, np.float32(1e-3))).astype(np.float32, copy=False)


def cut_subwindows(features: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
    """Gather sub-windows from a batch of feature sequences.

    features: (batch, n_frames, bands); starts: (n_sub,) start frames.
    Returns (batch, n_sub, frames, bands) float32 (a copy).
    """
    features = np.asarray(features, dtype=np.float32)
    index = np.asarray(starts)[:, None] + np.arange(frames)[None, :]  # (n_sub, frames)
    return features[:, index]


def window_subwindows(features, starts: np.ndarray, frames: int) -> np.ndarray:
    """The encoder's input for a batch of query windows: sub-windows cut and standardised.

    features: (batch, n_frames, bands) from ``features.log_spectrogram``
    (NumPy or CuPy); starts: (n_sub,) start frames. Returns
    (batch, n_sub, frames, bands) float32 NumPy.
    """
    from ..signal.xp import to_numpy

    feats = np.asarray(to_numpy(features), dtype=np.float32)
    return standardize(cut_subwindows(feats, starts, frames))


def track_subwindows(band_db: np.ndarray, *, frames: int, hop_frames: int, floor_db: float) -> np.ndarray:
    """Every sub-window of a whole track, floored and standardised: the encoder's input.

    band_db: (n_frames, bands) from ``track_band_db``. Returns
    (n_sub, frames, bands) float32; sub-window ``i`` starts at frame
    ``i * hop_frames``. Separate from the encoder so that enrolment can
    prepare the next track in a helper thread while the encoder runs.
    """
    starts = subwindow_starts(len(band_db), frames=frames, hop_frames=hop_frames)
    return standardize(cut_subwindows(band_db[None], starts, frames)[0], floor_db=floor_db)
