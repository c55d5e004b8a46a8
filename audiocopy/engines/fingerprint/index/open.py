"""Creating and loading an index of whichever backend a database names.

Place in the pipeline: the entry point of ``index`` for
``engines.fingerprint.db``. A saved index carries a JSON header (backend,
dimension, parameters, per-track counts), which ``load_index`` checks against
what the caller expects before any search can run on mismatched vectors.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ....config import IndexParams, from_dict
from ....errors import ModelError, ParamsMismatch
from .base import INDEX_FORMAT, INDEX_VERSION, VectorIndex, faiss_available, resolve_backend
from .faiss_index import FaissIndex
from .milvus_index import MilvusIndex
from .numpy_index import NumpyIndex
from .qdrant_index import QdrantIndex

#: Where a Milvus collection is and how long to wait for it: the caller's
#: settings (the database's fingerprint.json) win over the sidecar's copy, so
#: editing the URI there moves a database to another server address.
MILVUS_CONNECTION = ("milvus_uri", "milvus_timeout_s", "milvus_retries", "milvus_backoff_s")


def create_index(dim: int, params: IndexParams = IndexParams(), *, qdrant_path: Path | None = None) -> VectorIndex:
    """An index of the backend ``params`` chooses (see ``resolve_backend``).

    Empty, except a Milvus collection of that name that already exists on
    its server, which is opened as it is (``db.open_index`` empties it).
    """
    backend = resolve_backend(params)
    if backend == "faiss":
        return FaissIndex(dim, params)
    if backend == "numpy":
        return NumpyIndex(dim, params)
    if backend == "milvus":
        return MilvusIndex(dim, params)
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

    path: the ``.npz`` (faiss, numpy) or the ``.json`` sidecar (qdrant,
    milvus). dim: the embedding size the caller will search with; params:
    the parameters it expects (None: take the saved ones). A different
    dimension or backend raises ``ParamsMismatch``; search-time settings
    (nprobe) and Milvus connection settings of ``params`` win over the saved
    ones.
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
        index.restore(counts)
        return index, extra
    if kind == "milvus":
        if params is not None:
            use = replace(use, **{name: getattr(params, name) for name in MILVUS_CONNECTION
                                  if getattr(params, name) is not None})
        index = MilvusIndex(dim, use, create=False)
        try:
            index.restore(counts, extra)
        except BaseException:
            index.close()
            raise
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
        index.restore(arrays, counts, extra)
    elif kind == "numpy":
        index = NumpyIndex(dim, use)
        index.restore(arrays, counts)
    else:
        raise ModelError(f"vector index {path} has an unknown backend {kind!r}")
    if len(index) != sum(counts.values()):
        raise ModelError(f"vector index {path} holds {len(index)} vectors but its header counts "
                         f"{sum(counts.values())}; delete it to rebuild from the track records")
    return index, extra
