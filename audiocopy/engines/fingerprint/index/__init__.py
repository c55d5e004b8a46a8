"""The fingerprint engine's vector index: unit vectors in, nearest neighbours out.

Place in the pipeline: under ``engines.fingerprint``, after the encoder. One
small interface (``base.VectorIndex``) and four backends: ``faiss_index``
(default, embedded), ``numpy_index`` (fallback, reference), ``qdrant_index``
and ``milvus_index`` (scale-out, on a server; ``milvus_link`` bounds and
retries its calls). ``open`` creates or loads whichever one a database names.
"""
from .base import IndexParams, VectorIndex, pack_ids, resolve_backend, unpack_ids
from .open import create_index, load_index, read_header

__all__ = ["IndexParams", "VectorIndex", "create_index", "load_index", "pack_ids", "read_header", "resolve_backend",
           "unpack_ids"]
