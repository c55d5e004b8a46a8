"""What every vector index backend shares: the interface, packed ids, the saved header.

Place in the pipeline: under ``engines.fingerprint``. Enrolment adds the
sub-window embeddings of each track; a query searches the top-k neighbours
of each of its sub-window embeddings. The index knows nothing about audio:
every vector belongs to a *track key* (a small integer the engine assigns)
and sits at a *position* (the sub-window's start frame in that track), which
is all the matcher needs to vote on time offsets.

This module holds what every backend shares: the ``VectorIndex`` interface
(``numpy_index``, ``faiss_index``, ``qdrant_index`` and ``milvus_index``
implement it), the id packing, the saved header, and the choice of backend.

Vector ids pack (track key, position) into one 64-bit integer
(``key << 32 | position``): faiss, Qdrant and Milvus all keep an integer per
vector, so no side table has to be kept in step with them, and removing a
track is one range (faiss) or one filter (Qdrant, Milvus).

Persistence. The faiss and NumPy backends save to one ``.npz`` file written
under a temporary name and renamed into place, so a reader sees the old
index or the new one, never half of one; the file carries its parameters and
the per-track vector counts, which the engine compares with its track
records. Qdrant and Milvus persist by themselves; a JSON sidecar beside
them carries the same description.
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from ....atomic_files import atomic_open
from ....config import IndexParams, as_dict
from ....errors import ConfigError

log = logging.getLogger(__name__)

INDEX_FORMAT = "audiocopy-vector-index"
INDEX_VERSION = 1
BACKENDS = ("auto", "faiss", "numpy", "qdrant", "milvus")
#: Backends whose vectors live elsewhere, described by a JSON sidecar instead of an ``.npz``.
SIDECAR_BACKENDS = ("qdrant", "milvus")
POS_BITS = 32
POS_MASK = (1 << POS_BITS) - 1


def pack_ids(track: int, positions: np.ndarray) -> np.ndarray:
    """(n,) int64 vector ids for a track key and its vectors' positions."""
    positions = np.asarray(positions, dtype=np.int64)
    if track < 0 or track >= 1 << 30:
        raise ValueError(f"track key must be in [0, 2**30), got {track}")
    if positions.size and (positions.min() < 0 or positions.max() > POS_MASK):
        raise ValueError("positions must fit in 32 bits")
    return (np.int64(track) << POS_BITS) | positions


def unpack_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(track keys, positions) of packed ids; -1 ids give (-1, -1)."""
    ids = np.asarray(ids, dtype=np.int64)
    missing = ids < 0
    tracks = np.where(missing, -1, ids >> POS_BITS)
    positions = np.where(missing, -1, ids & POS_MASK)
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


def check_vectors(vectors: np.ndarray, positions: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    positions = np.asarray(positions, dtype=np.int64)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must be (n, {dim}), got {vectors.shape}")
    if positions.shape != (len(vectors),):
        raise ValueError(f"positions must be ({len(vectors)},), got {positions.shape}")
    return vectors, positions


def check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must be (m, {dim}), got {q.shape}")
    return q


def save_arrays(path: Path, **arrays) -> None:
    # Streams into the temporary file: a large index is never held twice in memory.
    with atomic_open(Path(path), suffix=".npz") as fh:
        np.savez(fh, **arrays)


def header_json(kind: str, dim: int, params: IndexParams, counts: dict[int, int], extra: dict | None) -> str:
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


# --------------------------------------------------------------------------
# faiss


# --------------------------------------------------------------------------
# Qdrant


# --------------------------------------------------------------------------
# create / open

