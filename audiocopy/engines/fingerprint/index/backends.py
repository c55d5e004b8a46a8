"""Vector index of the fingerprint engine: unit vectors in, nearest neighbours out.

Place in the pipeline: under ``engines.fingerprint``. Enrolment adds the
sub-window embeddings of each track; a query searches the top-k neighbours
of each of its sub-window embeddings. The index knows nothing about audio:
every vector belongs to a *track key* (a small integer the engine assigns)
and sits at a *position* (the sub-window's start frame in that track), which
is all the matcher needs to vote on time offsets.

One small interface (``VectorIndex``), three backends:

* ``faiss`` (default): exact inner-product search (``IndexFlatIP``) while the
  catalogue is small, and an inverted file with product quantisation
  (``IndexIVFPQ``) once it passes ``IndexParams.flat_max_vectors``: a query
  then scans ``nprobe`` of ``nlist`` lists of 16-byte codes instead of every
  64-float vector, so its cost grows far slower than the catalogue, and RAM
  is ~24 bytes per vector (code + id) instead of 264.
* ``numpy``: the exact search as one matrix product. The fallback where
  faiss is not installed (``backend="auto"``); fine up to ~100 tracks.
* ``qdrant``: a Qdrant collection through ``qdrant-client``, in embedded
  local mode (a folder inside the database; what the tests use) or on a
  Qdrant server or cluster (``IndexParams.qdrant_url``), where the index
  is shared by several recognizer processes and scales out beyond one
  machine's RAM.

Vector ids pack (track key, position) into one 64-bit integer
(``key << 32 | position``): faiss and Qdrant both keep an integer per vector,
so no side table has to be kept in step with them, and removing a track is
one range (faiss) or one payload filter (Qdrant).

Persistence. The faiss and NumPy backends save to one ``.npz`` file written
under a temporary name and renamed into place, so a reader sees the old
index or the new one, never half of one; the file carries its parameters and
the per-track vector counts, which the engine compares with its track
records. Qdrant persists by itself; a JSON sidecar beside it carries the same
description.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ...catalog import atomic_open
from ....config import as_dict, from_dict
from ....errors import ConfigError, ModelError, ParamsMismatch

log = logging.getLogger(__name__)

INDEX_FORMAT = "audiocopy-vector-index"
INDEX_VERSION = 1
BACKENDS = ("auto", "faiss", "numpy", "qdrant")
_POS_BITS = 32
_POS_MASK = (1 << _POS_BITS) - 1
#: Below this many queries a faiss search runs on one thread (see ``FaissIndex.search``).
SMALL_SEARCH = 256
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class IndexParams:
    """Which backend, and how it scales.

    backend: "auto" (faiss if installed, else numpy), "faiss", "numpy" or "qdrant".
    flat_max_vectors: faiss keeps exact search up to this many vectors
        (~430 tracks of 2.5 minutes at one vector per 0.256 s), then switches
        to IVF-PQ.
    pq_bytes: bytes per vector in IVF-PQ (sub-quantisers of 8 bits); 16 for
        64-dim vectors means 4 dimensions per code byte.
    nlist: inverted lists of IVF-PQ; 0 picks ~4 sqrt(n) (a power of two
        between 256 and 4096), the usual balance of list scans and centroids,
        capped so that training k-means stays around a minute on two cores.
    nprobe: lists visited per query: recall against speed.
    qdrant_url: a Qdrant server ("http://host:6333"); None means embedded
        local mode in a folder of the database. An API key, if the server
        needs one, is read from the QDRANT_API_KEY environment variable,
        never stored.
    qdrant_collection: collection name; a new database gets its own unique
        name, so several databases can share one Qdrant cluster.
    """

    backend: str = "auto"
    flat_max_vectors: int = 250_000
    pq_bytes: int = 16
    nlist: int = 0
    nprobe: int = 16
    qdrant_url: str | None = None
    qdrant_collection: str = "audiocopy"


def pack_ids(track: int, positions: np.ndarray) -> np.ndarray:
    """(n,) int64 vector ids for a track key and its vectors' positions."""
    positions = np.asarray(positions, dtype=np.int64)
    if track < 0 or track >= 1 << 30:
        raise ValueError(f"track key must be in [0, 2**30), got {track}")
    if positions.size and (positions.min() < 0 or positions.max() > _POS_MASK):
        raise ValueError("positions must fit in 32 bits")
    return (np.int64(track) << _POS_BITS) | positions


def unpack_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(track keys, positions) of packed ids; -1 ids give (-1, -1)."""
    ids = np.asarray(ids, dtype=np.int64)
    missing = ids < 0
    tracks = np.where(missing, -1, ids >> _POS_BITS)
    positions = np.where(missing, -1, ids & _POS_MASK)
    return tracks, positions


class VectorIndex(Protocol):
    """What the engine needs from any backend."""

    dim: int
    params: IndexParams

    def __len__(self) -> int:
        """Number of vectors."""

    def counts(self) -> dict[int, int]:
        """Vectors per track key."""

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray) -> None:
        """Add one track's (n, dim) unit vectors at (n,) positions (frames)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k by inner product of (m, dim) queries.

        Returns (similarities (m, k) float32, track keys (m, k) int64,
        positions (m, k) int64), best first; -1 keys where fewer than k exist.
        """

    def remove(self, track: int) -> int:
        """Delete every vector of a track key; returns how many there were."""

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        """Persist atomically with parameters, counts and ``extra`` (JSON)."""

    def close(self) -> None:
        """Release files and connections."""


def _check_vectors(vectors: np.ndarray, positions: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    positions = np.asarray(positions, dtype=np.int64)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must be (n, {dim}), got {vectors.shape}")
    if positions.shape != (len(vectors),):
        raise ValueError(f"positions must be ({len(vectors)},), got {positions.shape}")
    return vectors, positions


def _queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be (m, {dim}), got {q.shape}")
    return q


def _atomic_savez(path: Path, **arrays) -> None:
    # Streams into the temporary file: a large index is never held twice in memory.
    with atomic_open(Path(path), suffix=".npz") as fh:
        np.savez(fh, **arrays)


def _header(kind: str, dim: int, params: IndexParams, counts: dict[int, int], extra: dict | None) -> str:
    return json.dumps({"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "backend": kind, "dim": dim,
                       "params": as_dict(params), "counts": {str(k): v for k, v in sorted(counts.items())},
                       "extra": extra or {}})


def faiss_available() -> bool:
    """True when faiss imports (its loader's INFO chatter about CPU variants is silenced)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        importlib.import_module("faiss")
    except ImportError:
        return False
    return True


def resolve_backend(params: IndexParams) -> str:
    """The backend ``params`` asks for, after "auto" and the faiss fallback."""
    if params.backend not in BACKENDS:
        raise ConfigError(f"unknown index backend {params.backend!r}; choose one of {', '.join(BACKENDS)}")
    if params.backend in ("auto", "faiss"):
        if faiss_available():
            return "faiss"
        log.warning("faiss is not installed (pip install faiss-cpu): using the exact NumPy index, "
                    "whose search cost grows with the catalogue")
        return "numpy"
    return params.backend


# --------------------------------------------------------------------------
# NumPy


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
        vectors, positions = _check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        self._vectors = np.concatenate([self._vectors, vectors])
        self._ids = np.concatenate([self._ids, pack_ids(track, positions)])
        self._counts[track] = len(vectors)

    def search(self, queries: np.ndarray, k: int):
        q = _queries(queries, self.dim)
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
        keep = (self._ids >> _POS_BITS) != track
        removed = int((~keep).sum())
        self._vectors, self._ids = self._vectors[keep], self._ids[keep]
        self._counts.pop(track, None)
        return removed

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        _atomic_savez(path, header=np.array(_header(self.kind, self.dim, self.params, self._counts, extra)),
                      vectors=self._vectors, ids=self._ids)

    def close(self) -> None:
        pass

    def _restore(self, arrays, counts: dict[int, int]) -> None:
        self._vectors = np.ascontiguousarray(arrays["vectors"], dtype=np.float32)
        self._ids = np.asarray(arrays["ids"], dtype=np.int64)
        self._counts = counts


# --------------------------------------------------------------------------
# faiss


def auto_nlist(n: int) -> int:
    """~4 sqrt(n) inverted lists, a power of two in [256, 4096]."""
    target = 4.0 * np.sqrt(max(n, 1))
    return int(min(4096, max(256, 2 ** int(round(np.log2(target))))))


class FaissIndex:
    """faiss: exact (``IndexIDMap2(IndexFlatIP)``) or IVF-PQ, chosen by size."""

    kind = "faiss"

    def __init__(self, dim: int, params: IndexParams = IndexParams()):
        if not faiss_available():
            raise ConfigError("the faiss backend needs faiss-cpu (pip install faiss-cpu)")
        import faiss

        self.dim, self.params = dim, params
        self._faiss = faiss
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.structure = "flat"
        self.trained_on = 0
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    def wants_rebuild(self) -> bool:
        """True when the structure no longer suits the size.

        Exact search past ``flat_max_vectors`` costs too much per query; an
        IVF trained on a quarter of today's vectors has lists four times too
        long; one that shrank below a quarter of the limit is better exact.
        The engine then calls ``rebuild`` with every track's vectors.
        """
        n = len(self)
        if self.structure == "flat":
            return n > self.params.flat_max_vectors
        return n > 4 * self.trained_on or n < self.params.flat_max_vectors // 4

    def rebuild(self, tracks, *, seed: int = 0) -> None:
        """Rebuild from scratch. tracks: list of (key, (n, dim) vectors, (n,) positions)."""
        faiss = self._faiss
        tracks = list(tracks)
        n = sum(len(v) for _, v, _ in tracks)
        if n <= self.params.flat_max_vectors:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            self.structure, self.trained_on = "flat", 0
        else:
            nlist = self.params.nlist or auto_nlist(n)
            if self.dim % self.params.pq_bytes:
                raise ConfigError(f"pq_bytes {self.params.pq_bytes} must divide the dimension {self.dim}")
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.params.pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
            # k-means needs ~40-250 points per centroid; more only costs time.
            rng = np.random.default_rng(seed)
            n_train = min(n, 64 * nlist)
            sample_rows = np.sort(rng.choice(n, size=n_train, replace=False))
            all_vectors = np.concatenate([v for _, v, _ in tracks]).astype(np.float32, copy=False)
            log.info("training IVF%d,PQ%d on %d of %d vectors", nlist, self.params.pq_bytes, n_train, n)
            index.train(np.ascontiguousarray(all_vectors[sample_rows]))
            index.nprobe = self.params.nprobe
            index.quantizer_trains_alone = 0
            self._index = index
            self.structure, self.trained_on = f"IVF{nlist},PQ{self.params.pq_bytes}", n
            del all_vectors
        self._counts = {}
        for key, vectors, positions in tracks:
            self.add(key, vectors, positions)

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray) -> None:
        vectors, positions = _check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        self._index.add_with_ids(vectors, pack_ids(track, positions))
        self._counts[track] = len(vectors)

    def search(self, queries: np.ndarray, k: int):
        q = _queries(queries, self.dim)
        if len(self) == 0 or len(q) == 0:
            return (np.full((len(q), k), -np.inf, dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64),
                    np.full((len(q), k), -1, dtype=np.int64))
        # faiss parallelises over queries with OpenMP. For the ten-odd queries of
        # one window, waking the thread team costs ~10x the search itself and
        # fights TensorFlow's threads for the cores (measured: 16 ms vs 1.9 ms
        # for 10 queries on 43 k vectors), so small batches run on one thread.
        self._faiss.omp_set_num_threads(1 if len(q) < SMALL_SEARCH else _CORES)
        sims, ids = self._index.search(q, k)
        tracks, positions = unpack_ids(ids)
        return sims.astype(np.float32, copy=False), tracks, positions

    def remove(self, track: int) -> int:
        selector = self._faiss.IDSelectorRange(int(track) << _POS_BITS, (int(track) + 1) << _POS_BITS)
        removed = int(self._index.remove_ids(selector))
        self._counts.pop(track, None)
        return removed

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        blob = self._faiss.serialize_index(self._index)
        meta = {"structure": self.structure, "trained_on": self.trained_on, **(extra or {})}
        _atomic_savez(path, header=np.array(_header(self.kind, self.dim, self.params, self._counts, meta)),
                      faiss=np.asarray(blob, dtype=np.uint8))

    def close(self) -> None:
        pass

    def _restore(self, arrays, counts: dict[int, int], extra: dict) -> None:
        self._index = self._faiss.deserialize_index(np.asarray(arrays["faiss"], dtype=np.uint8))
        self.structure = extra.get("structure", "flat")
        self.trained_on = int(extra.get("trained_on", 0))
        if hasattr(self._index, "nprobe"):
            self._index.nprobe = self.params.nprobe
        self._counts = counts

    def memory_bytes(self) -> int:
        """Bytes of the serialised index: a close bound on its RAM."""
        return int(self._faiss.serialize_index(self._index).size)


# --------------------------------------------------------------------------
# Qdrant


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
        vectors, positions = _check_vectors(vectors, positions, self.dim)
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
        q = _queries(queries, self.dim)
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
        from ...catalog import atomic_write_json

        atomic_write_json(Path(path), json.loads(_header(self.kind, self.dim, self.params, self._counts, extra)))

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------
# create / open


def create_index(dim: int, params: IndexParams = IndexParams(), *, qdrant_path: Path | None = None) -> VectorIndex:
    """An empty index of the backend ``params`` chooses (see ``resolve_backend``)."""
    backend = resolve_backend(params)
    if backend == "faiss":
        return FaissIndex(dim, params)
    if backend == "numpy":
        return NumpyIndex(dim, params)
    return QdrantIndex(dim, params, path=qdrant_path)


def read_header(path: Path) -> dict:
    """The JSON description of a saved index (``ModelError`` if absent/corrupt)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            header = json.loads(path.read_text(encoding="utf-8"))
        else:
            with np.load(path) as z:
                header = json.loads(str(z["header"]))
    except FileNotFoundError:
        raise ModelError(f"vector index not found: {path}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"vector index {path} is unreadable ({exc})") from None
    if header.get("format") != INDEX_FORMAT or header.get("format_version") != INDEX_VERSION:
        raise ModelError(f"{path} is not a version-{INDEX_VERSION} audiocopy vector index")
    return header


def load_index(path: Path, *, dim: int, params: IndexParams | None = None,
               qdrant_path: Path | None = None) -> tuple[VectorIndex, dict]:
    """Load a saved index and check it fits; returns (index, extra).

    path: the ``.npz`` (faiss, numpy) or the ``.json`` sidecar (qdrant).
    dim: the embedding size the caller will search with; params: the
    parameters it expects (None: take the saved ones). A different dimension
    or backend raises ``ParamsMismatch``; search-time settings (nprobe) of
    ``params`` win over the saved ones.
    """
    header = read_header(path)
    try:
        saved = from_dict(IndexParams, header["params"])
        counts = {int(k): int(v) for k, v in header["counts"].items()}
        kind, saved_dim, extra = header["backend"], int(header["dim"]), dict(header.get("extra") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"vector index {path} has a malformed header ({exc})") from None
    if saved_dim != dim:
        raise ParamsMismatch(f"vector index {path} holds {saved_dim}-dim vectors, the encoder makes {dim}-dim ones")
    use = saved if params is None else replace(saved, nprobe=params.nprobe)
    if params is not None and resolve_backend(params) != kind and not (kind == "numpy" and params.backend == "auto"):
        raise ParamsMismatch(f"vector index {path} is a {kind!r} index, {params.backend!r} was requested")
    if kind == "qdrant":
        index = QdrantIndex(dim, use, path=qdrant_path)
        index._counts = counts
        return index, extra
    try:
        with np.load(path) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"vector index {path} is unreadable ({exc})") from None
    if kind == "faiss":
        if not faiss_available():
            raise ModelError(f"{path} is a faiss index but faiss is not installed (pip install faiss-cpu), "
                             "or delete it to rebuild a NumPy index from the track records")
        index = FaissIndex(dim, use)
        index._restore(arrays, counts, extra)
    elif kind == "numpy":
        index = NumpyIndex(dim, use)
        index._restore(arrays, counts)
    else:
        raise ModelError(f"vector index {path} has an unknown backend {kind!r}")
    if len(index) != sum(counts.values()):
        raise ModelError(f"vector index {path} holds {len(index)} vectors but its header counts "
                         f"{sum(counts.values())}; delete it to rebuild from the track records")
    return index, extra
