"""The pure parts of ``tools/bench_scale.py``: derived tracks, chunked exact search, top-1, projection, chunked adds.

Seeded random unit vectors with known answers; no audio, no encoder. The
derived tracks must be deterministic per (seed, track), distinct from
each other and from their source, and keep their source's within-track
geometry; exact search by chunks must equal one exhaustive search; the
projection's arithmetic is checked by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
from bench.common import BenchError
from bench.scale_real import never_trained
from bench.scale_report import cost_at
from bench.scale_vectors import TopK, derive_track, project, random_rotation, top1_tracks

from audiocopy.engines.fingerprint.index.base import faiss_available
from audiocopy.engines.fingerprint.match import Votes

DIM = 64
needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")


def unit(rng, n, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def smooth_track(rng, n=200):
    """A track-like sequence: neighbouring vectors similar, as an encoder's sub-windows are."""
    walk = np.cumsum(rng.standard_normal((n, DIM)), axis=0).astype(np.float32)
    return walk / np.linalg.norm(walk, axis=1, keepdims=True)


def test_rotation_is_orthogonal_and_seeded():
    q = random_rotation(np.random.default_rng(3), DIM)
    np.testing.assert_allclose(q @ q.T, np.eye(DIM), atol=1e-10)
    np.testing.assert_array_equal(q, random_rotation(np.random.default_rng(3), DIM))
    assert not np.allclose(q, random_rotation(np.random.default_rng(4), DIM))


def test_derived_track_is_deterministic_and_unit_length():
    src = smooth_track(np.random.default_rng(0))
    a, b = derive_track(src, 5000, seed=1), derive_track(src, 5000, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == src.shape and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a, derive_track(src, 5000, seed=2))  # the run seed matters too


def test_derived_tracks_are_distinct_from_each_other_and_their_source():
    rng = np.random.default_rng(0)
    src = smooth_track(rng)
    others = [derive_track(src, d, seed=0) for d in (1000, 1001, 2000)]
    unrelated = np.abs(src @ unit(rng, 200).T).max()  # what two unrelated tracks reach
    for i, a in enumerate(others):
        assert np.abs(a @ src.T).max() < 1.5 * unrelated, "a derived track still matches its source"
        for b in others[i + 1:]:
            assert np.abs(a @ b.T).max() < 1.5 * unrelated, "two derived tracks match each other"


def test_derived_track_keeps_its_within_track_similarities():
    src = smooth_track(np.random.default_rng(1))
    d = derive_track(src, 7, seed=0)
    # The rotation keeps every inner product; the 0.02 noise per dimension (norm ~0.16) moves them a little.
    diff = np.abs(d @ d.T - src @ src.T)
    assert diff.mean() < 0.03 and diff.max() < 0.2
    assert np.abs(derive_track(src, 7, seed=0, noise=0.0) @ derive_track(src, 7, seed=0, noise=0.0).T
                  - src @ src.T).max() < 1e-4


@needs_faiss
def test_topk_by_chunks_equals_one_exhaustive_search():
    rng = np.random.default_rng(2)
    base, queries = unit(rng, 3000), unit(rng, 17)
    ids = rng.permutation(10**6)[:3000].astype(np.int64)  # labels, not row numbers
    top = TopK(queries, 5)
    for lo in range(0, 3000, 700):  # uneven last chunk
        top.add(base[lo:lo + 700], ids[lo:lo + 700])
    sims = queries @ base.T
    order = np.argsort(-sims, axis=1)[:, :5]
    np.testing.assert_array_equal(top.ids, ids[order])
    np.testing.assert_allclose(top.sims, np.take_along_axis(sims, order, axis=1), atol=1e-5)


@needs_faiss
def test_topk_before_k_vectors_keeps_empty_slots():
    rng = np.random.default_rng(3)
    top = TopK(unit(rng, 2), 4)
    top.add(unit(rng, 3), np.array([7, 8, 9]))
    assert (top.ids[:, 3] == -1).all() and np.isneginf(top.sims[:, 3]).all()
    assert set(top.ids[0, :3]) == {7, 8, 9}
    top.add(unit(rng, 0), np.array([], dtype=np.int64))  # an empty chunk changes nothing
    assert (top.ids[:, 3] == -1).all()


def test_top1_takes_the_best_score_per_window_and_minus_one_without_hits():
    votes = Votes(window=np.array([0, 0, 0, 2]), track=np.array([4, 9, 1, 3]),
                  score=np.array([0.5, 0.8, 0.8, 0.1], dtype=np.float32), offset_frames=np.zeros(4, np.float32))
    # Window 0: 9 and 1 tie at 0.8, the lower key wins; window 1 had no hit.
    np.testing.assert_array_equal(top1_tracks(votes, 3), [1, -1, 3])


def test_projection_arithmetic():
    p = project(tracks=1_000_000, streams=10_000, bytes_per_track=12_000, process_base_mib=1024,
                streams_per_worker=100, cores_per_worker=2, ms_per_window_at_size=4.0,
                ms_per_window_measured_base=2.0, usd_per_core_hour=0.05)
    assert p["streams_per_worker"] == 50  # twice the per-window cost: half the streams
    assert p["workers"] == 200 and p["cores"] == 400
    assert p["index_gib"] == pytest.approx(12e9 / 2**30)
    assert p["ram_per_worker_gib"] == pytest.approx(12e9 / 2**30 + 1.0)
    assert p["ram_total_gib"] == pytest.approx(200 * (12e9 / 2**30 + 1.0))
    assert p["usd_per_hour"] == pytest.approx(20.0) and p["usd_per_month"] == pytest.approx(20.0 * 730)
    # A remainder needs one more worker; a cost far above the base still leaves one stream per worker.
    assert project(tracks=1, streams=101, bytes_per_track=1, process_base_mib=0, streams_per_worker=100,
                   cores_per_worker=2, ms_per_window_at_size=2.0, ms_per_window_measured_base=2.0,
                   usd_per_core_hour=0)["workers"] == 2
    assert project(tracks=1, streams=3, bytes_per_track=1, process_base_mib=0, streams_per_worker=10,
                   cores_per_worker=1, ms_per_window_at_size=1e6, ms_per_window_measured_base=1.0,
                   usd_per_core_hour=0)["workers"] == 3


@pytest.mark.parametrize("bad", [{"tracks": 0}, {"streams": 0}, {"streams_per_worker": 0}, {"cores_per_worker": 0},
                                 {"ms_per_window_at_size": 0.0}])
def test_projection_refuses_non_positive_inputs(bad):
    args = {"tracks": 10, "streams": 10, "bytes_per_track": 1.0, "process_base_mib": 0.0, "streams_per_worker": 10,
                "cores_per_worker": 2, "ms_per_window_at_size": 1.0, "ms_per_window_measured_base": 1.0,
                "usd_per_core_hour": 0.0}
    with pytest.raises(ValueError):
        project(**{**args, **bad})


def test_cost_at_measured_or_extrapolated_by_search_growth():
    rows = [{"tracks": 1000, "timing": {"live_b32_ms": 2.0, "search_b32_ms": 0.5}},
            {"tracks": 100_000, "timing": {"live_b32_ms": 3.0, "search_b32_ms": 1.0}}]
    assert cost_at(rows, 1000) == (2.0, "measured")
    ms, how = cost_at(rows, 1_000_000)
    assert ms == pytest.approx(3.0 + 9 * 1.0) and "100,000" in how


def test_never_trained_from_the_record_or_refused(tmp_path):
    ids = ["a", "b", "c"]
    free, how = never_trained(ids, {"training": {"trained_track_ids": ["b"]}}, None)
    assert free == ["a", "c"] and "lists the 1 tracks" in how
    with pytest.raises(BenchError, match="no query could be shown"):
        never_trained(ids, {"training": {}}, None)


@needs_faiss
def test_faiss_add_batch_matches_per_track_adds_and_refuses_clashes():
    from audiocopy.config import IndexParams
    from audiocopy.engines.fingerprint.index.faiss_index import FaissIndex

    rng = np.random.default_rng(5)
    tracks = [(k, unit(rng, 300, 16), np.arange(300, dtype=np.int64) * 8) for k in range(8)]
    params = IndexParams(pq_bytes=4, nlist=16, nprobe=16)
    one, many = FaissIndex(16, params), FaissIndex(16, params)
    sample = np.concatenate([v for _, v, _ in tracks])
    for index in (one, many):
        index.start_ivfpq(sample, len(sample))
    assert one.structure == "IVF16,PQ4" and one.trained_on == len(sample)
    for k, v, p in tracks:
        one.add(k, v, p)
    many.add_batch(tracks[:5])
    many.add_batch(tracks[5:])
    assert len(many) == len(one) == 2400 and many.counts() == one.counts()
    q = tracks[3][1][:10]
    for a, b in zip(one.search(q, 3), many.search(q, 3)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="already in the index or repeated"):
        many.add_batch([tracks[0]])
    with pytest.raises(ValueError, match="already in the index or repeated"):
        FaissIndex(16, params).add_batch([tracks[0], tracks[0]])
    with pytest.raises(ValueError, match="training sample"):
        FaissIndex(16, params).start_ivfpq(sample[:8], 1000)
