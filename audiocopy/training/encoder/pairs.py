"""Batches of (anchor, positive) sub-windows for contrastive training.

Place in the pipeline: between the cache/feature views and the loss. The
anchor is a clean sub-window as enrolment sees it, jittered a few frames off
the positive's grid (enrolment keeps a vector every 8 frames; a query's
sub-windows fall anywhere in between); the positive is a cached audio view or
a feature-space view of the same moment.
"""
from __future__ import annotations

import numpy as np

from ...config import EncoderTrainParams
from ...encoder.subwindows import standardize
from ...errors import DatasetError
from .cache import TrackCache
from .feature_views import FeatureAugmenter


class PairSampler:
    """Draws (anchors, positives, track ids) batches from the cache."""

    def __init__(self, tracks: list[TrackCache], *, augmenter: FeatureAugmenter, train: EncoderTrainParams,
                 floor_db: float, frames: int):
        self.tracks = [t for t in tracks if len(t.clean) >= frames + 2 * train.jitter_frames + 8]
        if len(self.tracks) < 2:
            raise DatasetError("the encoder needs at least two training tracks longer than a few seconds")
        self.aug, self.train, self.floor_db, self.frames = augmenter, train, floor_db, frames

    def _anchor(self, t: TrackCache, centre: float, rng) -> np.ndarray:
        f, j = self.frames, self.train.jitter_frames
        start = int(round(centre - (f - 1) / 2)) + int(rng.integers(-j, j + 1))
        start = min(max(start, 0), len(t.clean) - f)
        return t.clean[start:start + f]

    def pair(self, ti: int, rng) -> tuple[np.ndarray, np.ndarray]:
        t, f = self.tracks[ti], self.frames
        if len(t.views) and rng.random() < self.train.p_view:
            v = int(rng.integers(len(t.views)))
            i0 = int(rng.integers(0, t.views.shape[1] - f + 1))
            centre = t.view_frame0[v] + (i0 + (f - 1) / 2) * t.view_scale[v]
            positive = t.views[v, i0:i0 + f].astype(np.float32)
        else:
            other = self.tracks[int(rng.integers(len(self.tracks)))]
            positive, centre = self.aug.positive(t.clean, t.energy, rng, (other.clean, other.energy))
        return self._anchor(t, centre, rng), positive

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(anchors, positives) (size, frames, bands) standardised, and (size,) track indices."""
        ids = rng.choice(len(self.tracks), size=size, replace=size > len(self.tracks))
        pairs = [self.pair(int(i), rng) for i in ids]
        anchors = standardize(np.stack([p[0] for p in pairs]), floor_db=self.floor_db)
        positives = standardize(np.stack([p[1] for p in pairs]), floor_db=self.floor_db)
        return anchors, positives, ids.astype(np.int32)
