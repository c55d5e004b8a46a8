"""The Qdrant backend: the same interface on a Qdrant collection.

Place in the pipeline: under ``engines.fingerprint``. ``qdrant-client`` talks
either to a Qdrant server or cluster (``IndexParams.qdrant_url``), where
several recognizer processes share one index, or to its embedded local mode
in a folder of the database. The local mode is a Python re-implementation,
not the Qdrant engine: it is what the tests run, and it says nothing about
the server's performance. Points carry the packed (track, position) id, so a
track is removed with one filter.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ....config import IndexParams
from ....errors import ConfigError, ModelError
from .base import check_queries, check_vectors, header_json, pack_ids, unpack_ids


class QdrantIndex:
    """A Qdrant collection: embedded local mode in a folder, or a server/cluster.

    Local mode (``qdrant_client.QdrantClient(path=...)``) keeps the points in a
    folder and searches them exactly in-process; it locks the folder, so one
    process at a time. For several recognizer processes or catalogues beyond
    one machine, run Qdrant as a service and set ``IndexParams.qdrant_url``.
    """

    kind = "qdrant"

    def __init__(self, dim: int, params: IndexParams, *, path: Path | None):
        try:
            from qdrant_client import QdrantClient, models
        except ImportError as exc:
            raise ConfigError("the qdrant backend needs qdrant-client (pip install qdrant-client)") from exc
        self.dim, self.params, self._models = dim, params, models
        if params.qdrant_url:
            self.client = QdrantClient(url=params.qdrant_url, api_key=os.environ.get("QDRANT_API_KEY"))
        else:
            if path is None:
                self.client = QdrantClient(":memory:")
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                try:
                    self.client = QdrantClient(path=str(path))
                except RuntimeError as exc:  # the folder is locked by another process
                    raise ModelError(f"Qdrant storage {path} is in use by another process ({exc}); "
                                     "local mode serves one process, use a Qdrant server for more") from None
        self.collection = params.qdrant_collection
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(self.collection, vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.DOT))
            if params.qdrant_url:
                # A payload index makes "delete every point of track k" cheap on a server.
                self.client.create_payload_index(self.collection, "track", models.PayloadSchemaType.INTEGER)
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray, *, batch: int = 2048) -> None:
        vectors, positions = check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        ids = pack_ids(track, positions)
        models = self._models
        for lo in range(0, len(ids), batch):
            sl = slice(lo, lo + batch)
            self.client.upsert(self.collection, points=models.Batch(
                ids=[int(i) for i in ids[sl]], vectors=vectors[sl].tolist(),
                payloads=[{"track": int(track), "pos": int(p)} for p in positions[sl]]), wait=True)
        self._counts[track] = len(vectors)

    def search(self, queries: np.ndarray, k: int):
        q = check_queries(queries, self.dim)
        models = self._models
        sims = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        if len(q):
            requests = [models.QueryRequest(query=row.tolist(), limit=k, with_payload=False) for row in q]
            for i, response in enumerate(self.client.query_batch_points(self.collection, requests=requests)):
                for j, point in enumerate(response.points[:k]):
                    sims[i, j] = point.score
                    ids[i, j] = int(point.id)
        tracks, positions = unpack_ids(ids)
        return sims, tracks, positions

    def remove(self, track: int) -> int:
        models = self._models
        flt = models.Filter(must=[models.FieldCondition(key="track", match=models.MatchValue(value=int(track)))])
        before = int(self.client.count(self.collection, count_filter=flt, exact=True).count)
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)
        self._counts.pop(track, None)
        return before

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        # The points are already persisted by Qdrant; the sidecar says what they are.
        from ....atomic_files import atomic_write_json

        atomic_write_json(Path(path), json.loads(header_json(self.kind, self.dim, self.params, self._counts, extra)))

    def restore(self, counts: dict[int, int]) -> None:
        """Take the per-track counts of the saved sidecar (the points live in Qdrant)."""
        self._counts = counts

    def close(self) -> None:
        self.client.close()
