"""One catalogue size of the scale benchmark: the faiss index built by chunks, measured, scored against exact search.

Place in ``tools/bench``: driven by ``tools/bench_scale.py`` once per size.
Track key ``k`` of a catalogue is real track ``k`` while ``k`` < the number
of real tracks (corpus tracks first, so every size holds the query
tracks), and derived track ``k`` (``scale_vectors.derive_track`` of real
track ``k mod n_real``) beyond. The index is the engine's own
``FaissIndex`` with the default ``IndexParams``: exact up to
``flat_max_vectors``, IVF-PQ beyond, trained on ~64 vectors per inverted
list drawn from the whole catalogue, then filled ``CHUNK_TRACKS`` tracks at
a time (``add_batch``), so no more than one chunk of float32 vectors is
ever held. The same chunks feed ``TopK``, the exact search of the query
vectors, so the PQ index and exact search answer the very same queries.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .fpscale import rss_mib
from .scale_vectors import TopK, derive_track, top1_tracks

log = logging.getLogger(__name__)

#: Tracks per chunk of vectors added to the index (~1 M vectors, 250 MB of float32).
CHUNK_TRACKS = 2000


def track_vectors(real: list[np.ndarray], key: int, seed: int) -> np.ndarray:
    """Vectors (n, dim) float32 of catalogue track ``key`` (real, or derived from real track ``key mod n``)."""
    base = real[key % len(real)]
    return base.astype(np.float32) if key < len(real) else derive_track(base, key, seed)


def training_sample(real: list[np.ndarray], size: int, n_sample: int, seed: int) -> np.ndarray:
    """~``n_sample`` vectors drawn evenly from a ``size``-track catalogue (whole random tracks, random rows)."""
    rng = np.random.default_rng([seed, size])
    mean_len = float(np.mean([len(v) for v in real]))
    n_tracks = int(min(size, max(1, 4 * n_sample / mean_len)))
    keys = np.sort(rng.choice(size, size=n_tracks, replace=False))
    pool = np.concatenate([track_vectors(real, int(k), seed) for k in keys])
    return pool[np.sort(rng.choice(len(pool), size=min(n_sample, len(pool)), replace=False))]


# Long: one linear pass (train, then chunk after chunk into the index and the exact search), timed part by part.
def build(real: list[np.ndarray], size: int, queries: np.ndarray, *, dim: int, hop: int, k: int, seed: int) -> dict:
    """The faiss index of a ``size``-track catalogue, the exact top-``k`` of ``queries`` (m, dim), and the costs.

    Returns {"index", "exact": TopK, "train_s", "add_s" (inside the index's
    adds only), "derive_s", "exact_s", "vectors", "rss_delta_mib"}.
    """
    from audiocopy.config import IndexParams
    from audiocopy.engines.fingerprint.index.base import pack_ids
    from audiocopy.engines.fingerprint.index.faiss_index import FaissIndex, auto_nlist

    params = IndexParams()
    rss0 = rss_mib()
    index = FaissIndex(dim, params)
    lengths = [len(real[key % len(real)]) for key in range(size)]
    n_total = int(sum(lengths))
    t0 = time.perf_counter()
    if n_total > params.flat_max_vectors:
        nlist = params.nlist or auto_nlist(n_total)
        index.start_ivfpq(training_sample(real, size, 64 * nlist, seed), n_total)
    train_s = time.perf_counter() - t0
    exact = TopK(queries, k)
    add_s = derive_s = exact_s = 0.0
    for lo in range(0, size, CHUNK_TRACKS):
        t0 = time.perf_counter()
        chunk = [(key, track_vectors(real, key, seed)) for key in range(lo, min(size, lo + CHUNK_TRACKS))]
        batch = [(key, v, np.arange(len(v), dtype=np.int64) * hop) for key, v in chunk]
        derive_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        index.add_batch(batch)
        add_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        exact.add(np.concatenate([v for _, v, _ in batch]), np.concatenate([pack_ids(key, p) for key, _, p in batch]))
        exact_s += time.perf_counter() - t0
        if (lo // CHUNK_TRACKS) % 10 == 0:
            log.info("%d-track catalogue: %d tracks in, add %.0f s, exact %.0f s", size, lo + len(chunk), add_s,
                     exact_s)
    return {"index": index, "exact": exact, "train_s": train_s, "add_s": add_s, "derive_s": derive_s,
            "exact_s": exact_s, "vectors": n_total, "rss_delta_mib": rss_mib() - rss0}


def embed_queries(engine, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sub-window starts (S,), embeddings (n * S, dim)) of query windows (n, samples), as the engine embeds them."""
    from audiocopy.engines.fingerprint.match import query_starts
    from audiocopy.signal.features import log_spectrogram

    feats = log_spectrogram(windows, audio=engine.audio, params=engine.features)
    starts = query_starts(feats.shape[1], frames=engine.encoder.params.frames, params=engine.match)
    emb = engine.encoder.embed_windows(feats, starts)
    return starts, emb.reshape(-1, engine.encoder.dim)


def top1_from(sims: np.ndarray, ids: np.ndarray, starts: np.ndarray, n_windows: int, match) -> np.ndarray:
    """Top-1 track key per window from search results (n_windows * S, k): the engine's offset vote, then its best."""
    from audiocopy.engines.fingerprint.index.base import unpack_ids
    from audiocopy.engines.fingerprint.match import vote

    tracks, positions = unpack_ids(ids)
    tracks = np.where(ids < 0, -1, tracks)
    shape = (n_windows, len(starts), ids.shape[1])
    votes = vote(starts, tracks.reshape(shape), positions.reshape(shape), sims.reshape(shape), params=match)
    return top1_tracks(votes, n_windows)


def score(top1: np.ndarray, truth: list[str], source_of) -> dict:
    """Top-1 % by source (the track or one of its distorted copies) and % naming the very track, over windows.

    top1: (n,) track keys (-1: none); truth: the query track id of each
    window; source_of(key) -> the corpus id a catalogue track comes from
    (itself for a corpus track, its source for a copy, None otherwise).
    """
    src = [source_of(int(t)) if t >= 0 else None for t in top1]
    return {"top1_source": 100.0 * float(np.mean([s == q for s, q in zip(src, truth)])),
            "n": len(truth)}
