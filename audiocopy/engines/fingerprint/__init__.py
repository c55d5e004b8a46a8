"""The fingerprint engine: a shared encoder, a vector index and an offset vote.

Place in the pipeline: an ``engines.Engine``, the default. ``engine`` scores
windows; ``stream`` is the path every window takes (frames, sub-windows,
embeddings, search, vote; a stream's windows reuse each other's work);
``match`` votes on consistent time offsets; ``index`` is the vector index
(faiss, NumPy, Qdrant); ``db`` is the database on disk.
"""
