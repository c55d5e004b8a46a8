"""The faiss backend (default): exact search while small, IVF-PQ once large.

Place in the pipeline: under ``engines.fingerprint``, behind the
``VectorIndex`` interface of ``index.base``. ``IndexFlatIP`` is an exact
inner-product scan, the right answer for a few hundred tracks. Past
``IndexParams.flat_max_vectors`` the index is rebuilt as ``IndexIVFPQ``: an
inverted file of ``nlist`` k-means cells whose vectors are product-quantised
to ``pq_bytes`` bytes; a query scans ``nprobe`` cells of compact codes instead
of every 64-float vector, so its cost grows far slower than the catalogue and
RAM is ~24 bytes per vector (code + id) instead of 264.

From ``IndexParams.fastscan_min_vectors`` the IVF-PQ is ``IndexIVFPQFastScan``
instead: the same bytes per vector split into twice as many 4-bit codes, whose
16-entry distance tables fit a SIMD register, so a list is scanned 32 codes per
shuffle instruction rather than one table look-up per byte. At 100,000 tracks
(~50 M vectors, lists of ~12,000 codes) the scan is nearly all of a query's cost,
which is what FastScan cuts; with short lists the coarser codes are not worth it.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ....config import IndexParams
from ....errors import ConfigError

#: Below this many queries a faiss search runs on one thread (see ``FaissIndex.search``).
from .base import (
    POS_BITS,
    check_queries,
    check_vectors,
    faiss_available,
    header_json,
    pack_ids,
    save_arrays,
    unpack_ids,
)

log = logging.getLogger(__name__)


SMALL_SEARCH = 256
#: From this many queries faiss computes a flat index's similarities as one matrix product.
BLAS_QUERIES = 4


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_nlist(n: int) -> int:
    """~4 sqrt(n) inverted lists, a power of two in [256, 4096]."""
    target = 4.0 * np.sqrt(max(n, 1))
    return int(min(4096, max(256, 2 ** int(round(np.log2(target))))))


def uses_fastscan(params: IndexParams, n_vectors: int) -> bool:
    """Whether an IVF-PQ for ``n_vectors`` vectors is built as FastScan (see ``IndexParams.fastscan_min_vectors``)."""
    return n_vectors >= params.fastscan_min_vectors


class FaissIndex:
    """faiss: exact (``IndexIDMap2(IndexFlatIP)``), IVF-PQ or IVF-PQ FastScan, chosen by size."""

    kind = "faiss"

    def __init__(self, dim: int, params: IndexParams = IndexParams()):
        if not faiss_available():
            raise ConfigError("the faiss backend needs faiss-cpu (pip install faiss-cpu)")
        import faiss

        self.dim, self.params = dim, params
        self._faiss = faiss
        # Below ``distance_compute_blas_threshold`` queries (128 000 in faiss-cpu 1.15)
        # faiss scans a flat index one query at a time: 0.46 ms per query on 51 k
        # 64-dim vectors. As one BLAS product it is 0.12 ms per query for the ~30 of a
        # server cycle, the same neighbours up to float rounding; BLAS pays from ~4.
        # A process-wide setting: set once here, not on every search.
        faiss.cvar.distance_compute_blas_threshold = BLAS_QUERIES
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
            # k-means needs ~40-250 points per centroid; more only costs time.
            rng = np.random.default_rng(seed)
            n_train = min(n, 64 * (self.params.nlist or auto_nlist(n)))
            sample_rows = np.sort(rng.choice(n, size=n_train, replace=False))
            all_vectors = np.concatenate([v for _, v, _ in tracks]).astype(np.float32, copy=False)
            self.start_ivfpq(all_vectors[sample_rows], n)
            del all_vectors
        self._counts = {}
        for key, vectors, positions in tracks:
            self.add(key, vectors, positions)

    def start_ivfpq(self, sample: np.ndarray, n_expected: int) -> None:
        """Replace the index with an empty IVF-PQ trained on ``sample``, sized for ``n_expected`` vectors.

        sample: (m, dim) float32 vectors drawn evenly from what will be added
        (``rebuild`` draws ~64 per inverted list); n_expected: the catalogue's
        vector count, which sets ``nlist`` when ``IndexParams.nlist`` is 0.
        ``rebuild`` uses it; so can a caller whose catalogue is too large to
        hold as float32 at once, adding tracks in chunks afterwards
        (``add_batch``).
        """
        faiss = self._faiss
        nlist = self.params.nlist or auto_nlist(n_expected)
        fastscan = uses_fastscan(self.params, n_expected)
        # FastScan spends the same bytes on twice as many 4-bit sub-quantisers.
        n_sub, bits = (2 * self.params.pq_bytes, 4) if fastscan else (self.params.pq_bytes, 8)
        if self.dim % n_sub:
            raise ConfigError(f"pq_bytes {self.params.pq_bytes} ({n_sub} sub-quantisers of {bits} bits) must divide "
                              f"the dimension {self.dim}")
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[1] != self.dim or len(sample) < nlist:
            raise ValueError(f"IVF{nlist} needs a training sample of at least {nlist} {self.dim}-dim vectors, "
                             f"got shape {sample.shape}")
        quantizer = faiss.IndexFlatIP(self.dim)
        make = faiss.IndexIVFPQFastScan if fastscan else faiss.IndexIVFPQ
        index = make(quantizer, self.dim, nlist, n_sub, bits, faiss.METRIC_INNER_PRODUCT)
        structure = f"IVF{nlist},PQ{n_sub}x4fs" if fastscan else f"IVF{nlist},PQ{n_sub}"
        log.info("training %s on %d vectors for %d", structure, len(sample), n_expected)
        index.train(sample)
        index.nprobe = self.params.nprobe
        index.quantizer_trains_alone = 0
        self._index = index
        self.structure, self.trained_on = structure, int(n_expected)
        self._counts = {}

    def add_batch(self, tracks) -> None:
        """Add several tracks in one faiss call. tracks: list of (key, (n, dim) vectors, (n,) positions).

        The same as ``add`` per track, but IVF assignment and PQ encoding run
        over the whole batch at once, on every core.
        """
        tracks = [(int(k), *check_vectors(v, p, self.dim)) for k, v, p in tracks]
        keys = [k for k, _, _ in tracks]
        repeated = {k for k, c in Counter(keys).items() if c > 1}
        clash = sorted((set(keys) & set(self._counts)) | repeated)
        if clash:
            raise ValueError(f"track keys {clash[:5]} are already in the index or repeated")
        if not tracks:
            return
        self._faiss.omp_set_num_threads(CORES)
        self._index.add_with_ids(np.concatenate([v for _, v, _ in tracks]),
                                 np.concatenate([pack_ids(k, p) for k, _, p in tracks]))
        self._counts.update({k: len(v) for k, v, _ in tracks})

    def add(self, track: int, vectors: np.ndarray, positions: np.ndarray) -> None:
        vectors, positions = check_vectors(vectors, positions, self.dim)
        if track in self._counts:
            raise ValueError(f"track key {track} is already in the index")
        self._index.add_with_ids(vectors, pack_ids(track, positions))
        self._counts[track] = len(vectors)

    def search(self, queries: np.ndarray, k: int):
        q = check_queries(queries, self.dim)
        if len(self) == 0 or len(q) == 0:
            return (np.full((len(q), k), -np.inf, dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64),
                    np.full((len(q), k), -1, dtype=np.int64))
        # faiss parallelises over queries with OpenMP. For the ten-odd queries of
        # one window, waking the thread team costs ~10x the search itself and
        # fights TensorFlow's threads for the cores (measured: 16 ms vs 1.9 ms
        # for 10 queries on 43 k vectors), so small batches run on one thread.
        self._faiss.omp_set_num_threads(1 if len(q) < SMALL_SEARCH else CORES)
        sims, ids = self._index.search(q, k)
        tracks, positions = unpack_ids(ids)
        return sims.astype(np.float32, copy=False), tracks, positions

    def remove(self, track: int) -> int:
        selector = self._faiss.IDSelectorRange(int(track) << POS_BITS, (int(track) + 1) << POS_BITS)
        fastscan = self.structure.endswith("fs")
        if fastscan:
            invlists = self._faiss.downcast_InvertedLists(self._index.invlists)
            sizes = [invlists.list_size(i) for i in range(invlists.nlist)]
        removed = int(self._index.remove_ids(selector))
        if fastscan and removed:
            clear_block_tails(self._faiss, invlists, sizes)
        self._counts.pop(track, None)
        return removed

    def save(self, path: Path, *, extra: dict | None = None) -> None:
        blob = self._faiss.serialize_index(self._index)
        meta = {"structure": self.structure, "trained_on": self.trained_on, **(extra or {})}
        save_arrays(path, header=np.array(header_json(self.kind, self.dim, self.params, self._counts, meta)),
                      faiss=np.asarray(blob, dtype=np.uint8))

    def close(self) -> None:
        pass

    def restore(self, arrays, counts: dict[int, int], extra: dict) -> None:
        self._index = self._faiss.deserialize_index(np.asarray(arrays["faiss"], dtype=np.uint8))
        self.structure = extra.get("structure", "flat")
        self.trained_on = int(extra.get("trained_on", 0))
        if hasattr(self._index, "nprobe"):
            self._index.nprobe = self.params.nprobe
        self._counts = counts

    def memory_bytes(self) -> int:
        """Bytes of the serialised index: a close bound on its RAM."""
        return int(self._faiss.serialize_index(self._index).size)


def clear_block_tails(faiss, invlists, sizes_before: list[int]) -> None:
    """Zero the codes left past each shrunk list's end in its last 32-code block (FastScan only).

    faiss 1.15's ``BlockInvertedLists`` keeps a list's codes in blocks of
    ``n_per_block`` interleaved 4-bit codes. ``remove_ids`` shrinks a list
    without clearing the freed slots of its last block, and a later add ORs new
    codes into those slots, so vectors added after a removal came back with
    mixed-up codes (measured: 54 % instead of 94 % found themselves). Writing a
    zero code into every freed slot restores the all-zero tail an add expects.
    invlists: the index's ``BlockInvertedLists``; sizes_before: each list's
    length before the removal.
    """
    packer = invlists.packer
    zero = np.zeros(packer.code_size, dtype=np.uint8)
    for list_no, before in enumerate(sizes_before):
        size = invlists.list_size(list_no)
        if size == before:
            continue
        codes = invlists.get_codes(list_no)
        block_end = -(-size // packer.nvec) * packer.nvec
        for slot in range(size, block_end):
            packer.pack_1_c(faiss.swig_ptr(zero), slot, codes)
