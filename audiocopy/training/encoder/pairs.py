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
                 floor_db: float, frames: int, weights: dict[str, float] | None = None):
        """weights: relative sampling weight by ``TrackCache.track_id`` (default 1 each): how often a
        track's moments are drawn, e.g. to keep a few real tracks from drowning among many generated ones."""
        self.tracks = [t for t in tracks if len(t.clean) >= frames + 2 * train.jitter_frames + 8]
        if len(self.tracks) < 2:
            raise DatasetError("the encoder needs at least two training tracks longer than a few seconds")
        self.aug, self.train, self.floor_db, self.frames = augmenter, train, floor_db, frames
        w = np.array([float((weights or {}).get(t.track_id, 1.0)) for t in self.tracks])
        if not np.all(w > 0):
            raise DatasetError("every training track needs a positive sampling weight")
        self.p = None if weights is None else w / w.sum()

    def _anchor(self, t: TrackCache, centre: float, rng) -> np.ndarray:
        f, j = self.frames, self.train.jitter_frames
        start = int(round(centre - (f - 1) / 2)) + int(rng.integers(-j, j + 1))
        start = min(max(start, 0), len(t.clean) - f)
        return t.clean[start:start + f]

    def _positive(self, t: TrackCache, rng, centre: float | None) -> tuple[np.ndarray, float]:
        """A distorted view of ``t``: a cached audio view, or a feature-space one.

        centre: the clean frame the view must show (None: anywhere). Returns
        (levels (frames, bands) dB, the clean frame at the view's centre).
        """
        f = self.frames
        if len(t.views) and rng.random() < self.train.p_view:
            v = int(rng.integers(len(t.views)))
            if centre is None:
                i0 = int(rng.integers(0, t.views.shape[1] - f + 1))
            else:  # the view frame that shows ``centre``, kept inside the view
                i0 = int(round((centre - t.view_frame0[v]) / t.view_scale[v] - (f - 1) / 2))
                i0 = min(max(i0, 0), t.views.shape[1] - f)
            return t.views[v, i0:i0 + f].astype(np.float32), t.view_frame0[v] + (i0 + (f - 1) / 2) * t.view_scale[v]
        other = self.tracks[int(rng.integers(len(self.tracks)))]
        return self.aug.positive(t.clean, t.energy, rng, (other.clean, other.energy), centre=centre)

    def group(self, ti: int, rng, n_positives: int) -> list[np.ndarray]:
        """The anchor and ``n_positives`` distorted views of one moment of track ``ti``.

        The first view picks the moment; later ones show the same clean
        frame (within a frame or two: cached views sit on their own grid).
        """
        t = self.tracks[ti]
        first, centre = self._positive(t, rng, None)
        views = [first] + [self._positive(t, rng, centre)[0] for _ in range(n_positives - 1)]
        return [self._anchor(t, centre, rng)] + views

    def pair(self, ti: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """(anchor, positive) levels of one moment of track ``ti``."""
        anchor, positive = self.group(ti, rng, 1)
        return anchor, positive

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(views, track indices): views (1 + positives_per_anchor, size, frames, bands) standardised,
        view 0 the anchors; track indices (size,) int32."""
        ids = rng.choice(len(self.tracks), size=size, replace=size > len(self.tracks), p=self.p)
        groups = [self.group(int(i), rng, self.train.positives_per_anchor) for i in ids]
        views = np.stack([standardize(np.stack([g[v] for g in groups]), floor_db=self.floor_db)
                          for v in range(len(groups[0]))])
        return views, ids.astype(np.int32)
