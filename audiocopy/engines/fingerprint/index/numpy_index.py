"""The NumPy backend: exact search as one matrix product.

Place in the pipeline: under ``engines.fingerprint``; the fallback where
faiss is not installed (``IndexParams.backend="auto"``). Its cost grows
linearly with the catalogue, which is fine up to about a hundred tracks and
makes it the reference the other backends are tested against.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ....config import IndexParams
from .base import POS_BITS, check_queries, check_vectors, header_json, pack_ids, save_arrays, unpack_ids


class NumpyIndex:
    """Exact search as one matrix product (float32). The faiss fallback."""

    kind = "numpy"

    def __init__(self, dim: int, params: IndexParams = IndexParams()):
        self.dim, self.params = dim, params
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray) -> None:
        vectors, positions = check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        self._vectors = np.concatenate([self._vectors, vectors])
        self._ids = np.concatenate([self._ids, pack_ids(track, positions)])
        self._counts[track] = len(vectors)

    def search(self, queries: np.ndarray, k: int):
        q = check_queries(queries, self.dim)
        m, n = len(q), len(self._ids)
        sims = np.full((m, k), -np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        if n and m:
            kk = min(k, n)
            all_sims = q @ self._vectors.T
            top = np.argpartition(-all_sims, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (m, 1))
            top_sims = np.take_along_axis(all_sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1)
            sims[:, :kk] = np.take_along_axis(top_sims, order, axis=1)
            ids[:, :kk] = self._ids[np.take_along_axis(top, order, axis=1)]
        tracks, positions = unpack_ids(ids)
        return sims, tracks, positions

    def remove(self, track: int) -> int:
        keep = (self._ids >> POS_BITS) != track
        removed = int((~keep).sum())
        self._vectors, self._ids = self._vectors[keep], self._ids[keep]
        self._counts.pop(track, None)
        return removed

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        save_arrays(path, header=np.array(header_json(self.kind, self.dim, self.params, self._counts, extra)),
                      vectors=self._vectors, ids=self._ids)

    def close(self) -> None:
        pass

    def restore(self, arrays, counts: dict[int, int]) -> None:
        self._vectors = np.ascontiguousarray(arrays["vectors"], dtype=np.float32)
        self._ids = np.asarray(arrays["ids"], dtype=np.int64)
        self._counts = counts
