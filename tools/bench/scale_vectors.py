"""Derived catalogue tracks, exact search by chunks, top-1 from votes, and the paper projection.

Place in ``tools/bench``: the pure arithmetic of ``tools/bench_scale.py``
(tested in ``tests/test_bench_scale.py``); ``scale_index`` drives it.

**Derived tracks.** Encoding 100,000 distorted copies would take hours on
two cores, so past the real tracks the catalogue is *derived*: derived
track ``d`` takes the vectors of real track ``d mod n_real`` (its whole
sequence, so its length and the similarity of neighbouring vectors are a
real track's), multiplies them by a random orthogonal matrix drawn for
``d`` alone (Haar-distributed: QR of a Gaussian matrix, signs fixed), adds
Gaussian noise of ``DERIVED_NOISE`` per dimension and normalises each vector
back to unit length. Inner products *within* the track survive the rotation
(the noise lowers them slightly); between tracks the rotation makes it a
new track: it matches none of the real ones, nor any other derived track,
more than two unrelated real tracks match. What it does not keep: real
embeddings from one encoder share a slightly anisotropic distribution; a
catalogue of rotated tracks fills the sphere more evenly, which spreads the
IVF lists more evenly than real music would.

**Exact search by chunks.** The PQ index is compared with exact
inner-product search on the same query vectors. 49 M float32 vectors do not
fit in memory, so ``TopK`` keeps each query's best ``k`` while chunk after
chunk of the catalogue streams past.

**Projection.** ``project`` scales the measured per-track index memory and
per-stream cost to a larger catalogue and more streams, under the stated
assumptions of its arguments.
"""
from __future__ import annotations

import math

import numpy as np

from .common import rng_for

#: Gaussian noise added per dimension to a derived track's rotated unit vectors (before renormalising).
DERIVED_NOISE = 0.02


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A Haar-random (dim, dim) orthogonal matrix: QR of a Gaussian matrix with R's diagonal made positive."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))[None, :]


def derive_track(vectors: np.ndarray, track: int, seed: int, noise: float = DERIVED_NOISE) -> np.ndarray:
    """The vectors (n, dim) float32 of derived track ``track`` made from a real track's ``vectors`` (n, dim).

    Deterministic in (``seed``, ``track``): the same call always gives the
    same vectors, whatever else was derived before.
    """
    rng = rng_for(seed, "derived", int(track))
    v = np.asarray(vectors, dtype=np.float32)
    out = v @ random_rotation(rng, v.shape[1]).astype(np.float32)
    out += noise * rng.standard_normal(out.shape, dtype=np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


class TopK:
    """Exact top-``k`` inner-product neighbours of fixed queries, fed the catalogue chunk by chunk.

    queries: (q, dim) float32. ``add(vectors, ids)`` folds one chunk in;
    ``sims`` (q, k) and ``ids`` (q, k) hold the best so far, best first
    (``-inf`` / -1 while fewer than ``k`` vectors were seen).
    """

    def __init__(self, queries: np.ndarray, k: int):
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = int(k)
        self.sims = np.full((len(self.queries), self.k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(self.queries), self.k), -1, dtype=np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Fold in a chunk: vectors (m, dim), ids (m,) int64 (any labels, e.g. packed track/position)."""
        if len(vectors) == 0:
            return
        import faiss

        # faiss.knn tiles the (q, m) product and keeps a heap per query: no (q, m) matrix is ever held.
        take = min(self.k, len(vectors))
        sims, rows = faiss.knn(self.queries, np.ascontiguousarray(vectors, dtype=np.float32), take,
                               metric=faiss.METRIC_INNER_PRODUCT)
        ids = np.asarray(ids, dtype=np.int64)
        all_sims = np.concatenate([self.sims, sims.astype(np.float32)], axis=1)
        all_ids = np.concatenate([self.ids, ids[rows]], axis=1)
        order = np.argsort(-all_sims, axis=1, kind="stable")[:, :self.k]
        self.sims = np.take_along_axis(all_sims, order, axis=1)
        self.ids = np.take_along_axis(all_ids, order, axis=1)


def top1_tracks(votes, n_windows: int) -> np.ndarray:
    """(n_windows,) the track key with the highest vote score of each window (-1 where none had a hit).

    votes: ``audiocopy.engines.fingerprint.match.Votes`` (window, track,
    score arrays of equal length). Ties go to the lower track key.
    """
    best = np.full(n_windows, -1, dtype=np.int64)
    score = np.full(n_windows, -np.inf)
    order = np.lexsort((np.asarray(votes.track), -np.asarray(votes.score, dtype=np.float64)))
    for i in order[::-1]:  # ascending by quality, so the best written last wins
        w = int(votes.window[i])
        best[w], score[w] = int(votes.track[i]), float(votes.score[i])
    return best


def project(*, tracks: int, streams: int, bytes_per_track: float, process_base_mib: float,
            streams_per_worker: int, cores_per_worker: int, ms_per_window_at_size: float,
            ms_per_window_measured_base: float, usd_per_core_hour: float) -> dict:
    """Workers, RAM and cost of serving ``streams`` concurrent streams against ``tracks`` tracks.

    bytes_per_track: index memory per track (measured); process_base_mib:
    a worker's RAM besides the index (measured); streams_per_worker: what a
    worker of ``cores_per_worker`` cores held in the load test, at the
    per-window cost ``ms_per_window_measured_base``; ms_per_window_at_size:
    the per-window cost at ``tracks`` (measured or extrapolated): the
    streams a worker holds shrink in proportion. Every worker holds the
    whole index in RAM (the embedded faiss deployment). Returns the figures
    of one row of the projection table.
    """
    if min(tracks, streams, streams_per_worker, cores_per_worker) <= 0 or ms_per_window_at_size <= 0:
        raise ValueError("tracks, streams, streams per worker, cores and the per-window cost must be positive")
    per_worker = max(1, int(streams_per_worker * ms_per_window_measured_base / ms_per_window_at_size))
    workers = math.ceil(streams / per_worker)
    index_gib = tracks * bytes_per_track / 2**30
    ram_per_worker_gib = index_gib + process_base_mib / 1024
    cores = workers * cores_per_worker
    return {"tracks": tracks, "streams": streams, "streams_per_worker": per_worker, "workers": workers,
            "cores": cores, "index_gib": index_gib, "ram_per_worker_gib": ram_per_worker_gib,
            "ram_total_gib": workers * ram_per_worker_gib,
            "usd_per_hour": cores * usd_per_core_hour, "usd_per_month": cores * usd_per_core_hour * 730}
