"""The Milvus backend: the same interface on a collection of a Milvus server or cluster.

Place in the pipeline: under ``engines.fingerprint``, behind the
``VectorIndex`` interface of ``index.base``. Where faiss keeps the index in
the recognizer's memory, Milvus keeps it in a server that several recognizer
processes (and machines) share, and that scales past one machine's RAM. The
same client code talks to a standalone server (Milvus Lite's
``milvus-server``, what the tests start) or to a cluster's proxy.

The collection: one row per enrolled sub-window, ``id`` (INT64 primary key,
the packed ``track << 32 | position`` of ``index.base``), ``track`` (INT64,
so a track is deleted with one filter) and ``vector`` (FLOAT_VECTOR, inner
product on unit vectors). The vectors stay on the server; the database keeps
``index.json`` (the JSON sidecar that Qdrant uses too), saying which
collection holds what, and ``fingerprint.json`` keeps the URI, collection
name and index parameters, so ``identify`` and ``serve`` find the same
collection. A token comes from ``MILVUS_TOKEN`` only, never from a file.

Index type by catalogue size (``IndexParams.milvus_index="auto"``): IVF_FLAT
(exact distances inside the ``nprobe`` visited lists of ``nlist`` k-means
cells) up to ``flat_max_vectors``, IVF_PQ (the same cells, vectors
product-quantised to ``pq_bytes`` bytes: ~16 bytes instead of 256 per
vector) beyond, and back to IVF_FLAT below a quarter of the limit, the
hysteresis faiss uses. HNSW (a graph: fast and accurate, ~M x 8 bytes per
vector on top of the vectors) is there to choose explicitly. Milvus builds
the index per sealed segment in the background and searches segments it has
not indexed yet exactly, so results are right while a build runs.

Every call is bounded and retried (``milvus_link``); a server that is down or
stuck ends in one ``MilvusUnavailable`` naming the URI, never in a hang.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from ....config import IndexParams
from ....errors import ConfigError, ModelError, ParamsMismatch
from .base import check_queries, check_vectors, header_json, pack_ids, unpack_ids
from .faiss_index import auto_nlist
from .milvus_link import MilvusLink, MilvusUnavailable

log = logging.getLogger(__name__)

__all__ = ["MilvusIndex", "MilvusUnavailable", "choose_structure"]

INDEX_TYPES = ("auto", "IVF_FLAT", "IVF_PQ", "HNSW")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
#: Rows per insert/upsert message: ~2 MB of 64-dim float32, far below gRPC's 64 MB.
WRITE_BATCH = 8192
#: Queries per search message (Milvus refuses more than 16384).
SEARCH_BATCH = 4096
#: Index building, loading and flushing wait this many times the per-call timeout.
SLOW_FACTOR = 10
#: Milvus trains an IVF per sealed segment, and indexes segments from 1024
#: rows on: more lists than that would leave a small segment with fewer
#: training points than centroids.
MAX_AUTO_NLIST = 1024


def choose_structure(n: int, dim: int, params: IndexParams, *, current: str | None = None) -> tuple[str, dict]:
    """(index type, build parameters) for a collection of ``n`` vectors.

    n: vectors in the collection; dim: their dimension. current: the type
    built now, for the hysteresis of "auto" (IVF_PQ stays until the
    catalogue shrinks below a quarter of ``flat_max_vectors``).
    """
    kind = params.milvus_index
    if kind not in INDEX_TYPES:
        raise ConfigError(f"unknown Milvus index type {kind!r}; choose one of {', '.join(INDEX_TYPES)}")
    if kind == "auto":
        limit = params.flat_max_vectors // 4 if current == "IVF_PQ" else params.flat_max_vectors
        kind = "IVF_PQ" if n > limit else "IVF_FLAT"
    if kind == "HNSW":
        return kind, {"M": params.hnsw_m, "efConstruction": params.hnsw_ef_construction}
    nlist = params.nlist or min(auto_nlist(n), MAX_AUTO_NLIST)
    if kind == "IVF_FLAT":
        return kind, {"nlist": nlist}
    if dim % params.pq_bytes:
        raise ConfigError(f"pq_bytes {params.pq_bytes} must divide the dimension {dim}")
    return kind, {"nlist": nlist, "m": params.pq_bytes, "nbits": 8}


def describe(kind: str, build: dict) -> str:
    """A structure in one word, e.g. ``IVF_PQ(nlist=1024,m=16,nbits=8)``."""
    return f"{kind}(" + ",".join(f"{k}={v}" for k, v in sorted(build.items())) + ")"


class MilvusIndex:
    """A Milvus collection of packed-id unit vectors (see the module docstring).

    dim: vector size; params: URI, collection, index type and limits
    (``IndexParams``). create: make the collection (and its index) when it
    does not exist; False raises ``ModelError`` instead, which is what
    loading a saved index wants (the caller then rebuilds it from the track
    vectors). Raises ``MilvusUnavailable`` when the server does not answer.
    """

    kind = "milvus"

    def __init__(self, dim: int, params: IndexParams, *, create: bool = True):
        if not NAME_RE.match(params.milvus_collection or ""):
            raise ConfigError(f"Milvus collection name {params.milvus_collection!r} must be letters, digits "
                              "and underscores, not starting with a digit")
        self.dim, self.params = dim, params
        self.collection_name = params.milvus_collection
        self.link = MilvusLink(params.milvus_uri or "", timeout_s=params.milvus_timeout_s,
                               retries=params.milvus_retries, backoff_s=params.milvus_backoff_s)
        self._pm = self.link.pymilvus
        self._counts: dict[int, int] = {}
        self.trained_on = 0
        try:
            self._collection = self._open(create)
            self.index_type, self._build = self._ensure_index()
            self._slow("load the collection", self._collection.load)
        except BaseException:
            self.link.close()
            raise

    # ------------------------------------------------------------------ setup

    def _slow(self, what: str, fn, *args, **kwargs):
        """A call that may take long on a big collection: ten deadlines."""
        return self.link.call(what, fn, *args, timeout_s=self.link.timeout_s * SLOW_FACTOR, **kwargs)

    def _open(self, create: bool):
        pm, name, alias = self._pm, self.collection_name, self.link.alias
        exists = self.link.call("check the collection", pm.utility.has_collection, name, using=alias)
        if not exists and not create:
            raise ModelError(f"collection {name!r} is not on the Milvus server at {self.link.uri} "
                             "(a new server, or it was dropped)")
        if exists:
            collection = self.link.call("open the collection", pm.Collection, name, using=alias)
            self._check_schema(collection)
            return collection
        fields = [pm.FieldSchema("id", pm.DataType.INT64, is_primary=True, auto_id=False),
                  pm.FieldSchema("track", pm.DataType.INT64),
                  pm.FieldSchema("vector", pm.DataType.FLOAT_VECTOR, dim=self.dim)]
        schema = pm.CollectionSchema(fields, description="audiocopy fingerprint sub-window embeddings")
        log.info("creating Milvus collection %s on %s", name, self.link.uri)
        # Session consistency: this process reads its own writes (enrolment, then
        # calibration), other processes see them within milliseconds.
        return self.link.call("create the collection", pm.Collection, name, schema, using=alias,
                              consistency_level="Session")

    def _check_schema(self, collection) -> None:
        fields = {f.name: f for f in collection.schema.fields}
        vector = fields.get("vector")
        if vector is None or "track" not in fields or "id" not in fields:
            raise ParamsMismatch(f"Milvus collection {self.collection_name!r} at {self.link.uri} is not an "
                                 "audiocopy index (fields id, track, vector); choose another milvus_collection")
        saved_dim = int(vector.params.get("dim", -1))
        if saved_dim != self.dim:
            raise ParamsMismatch(f"Milvus collection {self.collection_name!r} holds {saved_dim}-dim vectors, "
                                 f"the encoder makes {self.dim}-dim ones")

    def _ensure_index(self) -> tuple[str, dict]:
        """The index the collection has, or a new one chosen for its size."""
        c = self._collection
        if self.link.call("look up the index", c.has_index):
            info = self.link.call("describe the index", c.index).params
            return str(info.get("index_type")), dict(info.get("params") or {})
        # Only a new (or half-created) collection lacks an index, and vectors are
        # only written once it is loaded: it is empty, and cannot be counted unloaded.
        kind, build = choose_structure(0, self.dim, self.params)
        self._slow("create the index", c.create_index, "vector",
                   {"index_type": kind, "metric_type": "IP", "params": build})
        return kind, build

    # --------------------------------------------------------------- interface

    @property
    def structure(self) -> str:
        """The server's index in one word, e.g. ``IVF_FLAT(nlist=256)``."""
        return describe(self.index_type, self._build)

    def _count(self, expr: str = "") -> int:
        # Strong: a count must include every write acknowledged so far, from any client.
        rows = self.link.call("count vectors", self._collection.query, expr, output_fields=["count(*)"],
                              consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def __len__(self) -> int:
        return self._count()

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray) -> None:
        vectors, positions = check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        ids = pack_ids(track, positions)
        for lo in range(0, len(ids), WRITE_BATCH):
            sl = slice(lo, lo + WRITE_BATCH)
            # Upsert, not insert: a retried write that had landed must not duplicate rows.
            self.link.call("write vectors", self._collection.upsert,
                           [ids[sl].tolist(), [int(track)] * len(ids[sl]), vectors[sl]])
        self._counts[track] = len(vectors)

    def _search_params(self, k: int) -> dict:
        if self.index_type == "HNSW":
            return {"metric_type": "IP", "params": {"ef": max(self.params.hnsw_ef, k)}}
        nlist = int(self._build.get("nlist", self.params.nprobe))
        return {"metric_type": "IP", "params": {"nprobe": max(1, min(self.params.nprobe, nlist))}}

    def search(self, queries: np.ndarray, k: int):
        q = check_queries(queries, self.dim)
        sims = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        param = self._search_params(k)
        for lo in range(0, len(q), SEARCH_BATCH):
            result = self.link.call("search", self._collection.search, q[lo:lo + SEARCH_BATCH], "vector", param,
                                    limit=k)
            for i, hits in enumerate(result, start=lo):
                n = min(len(hits), k)
                ids[i, :n] = hits.ids[:n]
                sims[i, :n] = hits.distances[:n]
        tracks, positions = unpack_ids(ids)
        return sims, tracks, positions

    def remove(self, track: int) -> int:
        expr = f"track == {int(track)}"
        before = self._count(expr)
        if before:
            self.link.call("delete a track", self._collection.delete, expr)
        self._counts.pop(track, None)
        return before

    # ------------------------------------------------------- size and rebuilds

    def wants_rebuild(self) -> bool:
        """True when the catalogue's size calls for another index type (see ``choose_structure``)."""
        kind, _ = choose_structure(len(self), self.dim, self.params, current=self.index_type)
        return kind != self.index_type

    def rebuild(self, tracks=None, *, seed: int = 0) -> None:
        """Re-index the collection with the type its size calls for.

        The vectors are already on the server, so ``tracks`` (what faiss
        rebuilds from) is not read. Searches from other processes fail
        (with a clear error) while the collection is released, a few
        seconds for small collections: grow big catalogues off-peak.
        """
        del tracks, seed
        c, n = self._collection, len(self)
        kind, build = choose_structure(n, self.dim, self.params, current=self.index_type)
        log.info("re-indexing Milvus collection %s (%d vectors) as %s", self.collection_name, n, describe(kind, build))
        self._slow("release the collection", c.release)
        self._slow("drop the old index", c.drop_index)
        self._slow("seal the segments", c.flush)  # the new index then covers every vector
        self._slow("create the index", c.create_index, "vector",
                   {"index_type": kind, "metric_type": "IP", "params": build})
        self._slow("wait for the index", self._pm.utility.wait_for_index_building_complete, self.collection_name,
                   using=self.link.alias)
        self._slow("load the collection", c.load)
        self.index_type, self._build, self.trained_on = kind, build, n

    def clear(self) -> None:
        """Drop every vector (and the collection), then recreate it empty."""
        log.info("emptying Milvus collection %s on %s", self.collection_name, self.link.uri)
        self._slow("drop the collection", self._pm.utility.drop_collection, self.collection_name,
                   using=self.link.alias)
        self._collection = self._open(create=True)
        self.index_type, self._build = self._ensure_index()
        self._slow("load the collection", self._collection.load)
        self._counts, self.trained_on = {}, 0

    def server_index(self) -> dict:
        """The index as the server describes it: {"index_type", "metric_type", "params"}."""
        return dict(self.link.call("describe the index", self._collection.index).params)

    # ------------------------------------------------------------ persistence

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        """Flush (seal the segments to the server's storage), then write the sidecar."""
        from ....atomic_files import atomic_write_json

        self._slow("flush", self._collection.flush)
        meta = {"structure": self.structure, "trained_on": self.trained_on, **(extra or {})}
        atomic_write_json(Path(path), json.loads(header_json(self.kind, self.dim, self.params, self._counts, meta)))

    def restore(self, counts: dict[int, int], extra: dict) -> None:
        """Take the per-track counts of the saved sidecar (the vectors live on the server)."""
        self._counts = dict(counts)
        self.trained_on = int(extra.get("trained_on", 0))
        total, expected = len(self), sum(counts.values())
        if total != expected:
            # Not fatal: an enrolment may be writing now. A lasting difference
            # means the server lost data; deleting index.json rebuilds it.
            log.warning("Milvus collection %s holds %d vectors, its sidecar counts %d (an enrolment in progress, "
                        "or lost data: delete DB/index.json to rebuild it from the track vectors)",
                        self.collection_name, total, expected)

    def close(self) -> None:
        self.link.close()
