"""The fingerprint scoring path's speed-ups give the answers of the plain computations they replace.

Three parts of a server cycle were made cheaper (``docs/benchmarks.md``,
section server-fingerprint-100):

* the offset vote (``engines.fingerprint.match.vote``) reuses its work
  arrays and reduces over a middle axis; it must equal, bit for bit, the
  direct formula written out here, whatever the call sizes before it;
* the faiss flat index searches a batch of queries as one matrix product
  (``FaissIndex.search``); it must find the neighbours that one query at a
  time finds, with the same similarities up to float rounding;
* the encoder cuts a call into equal chunks (``encoder.forward.embed``);
  every sub-window's vector must not depend on how the call was cut.

Seeded synthetic data throughout; no model or database on disk.
"""
from __future__ import annotations

import numpy as np
import pytest

from audiocopy.config import IndexParams, MatchParams
from audiocopy.encoder.forward import embed
from audiocopy.encoder.weights import prepare_weights, weight_layout
from audiocopy.engines.fingerprint.index import base as index_base
from audiocopy.engines.fingerprint.match import query_starts, vote


def _reference_vote(starts, tracks, positions, sims, params: MatchParams):
    """The vote as first written: dense (B, n, n) arrays, fresh each call, max over the k axis.

    The local density is taken off one sub-window at a time, from its valid
    hits sorted by hand, as the module docstring of ``match`` states it.
    """
    b, s, k = tracks.shape
    n = s * k
    sims = np.array(sims, dtype=np.float32)
    for w in range(b):
        for j in range(s):
            mine = np.sort(sims[w, j][tracks[w, j] >= 0])[::-1][:params.density_k]
            density = mine.sum(dtype=np.float32) / np.float32(max(len(mine), 1))
            sims[w, j] -= np.float32(params.density_weight) * np.float32(density)
    t = tracks.reshape(b, n)
    p = np.asarray(positions, dtype=np.float32).reshape(b, n)
    sim = np.where(t >= 0, sims.reshape(b, n), 0.0).astype(np.float32)
    sim = np.maximum(sim, 0.0)
    q = np.repeat(np.asarray(starts, dtype=np.float32), k)
    implied = p - q[None, :]
    dq = np.abs(q[None, :] - q[:, None])
    tol = np.float32(params.offset_tolerance_frames) + np.float32(params.max_time_scale) * dq
    agree = (np.abs(implied[:, :, None] - implied[:, None, :]) <= tol[None]) \
        & (t[:, :, None] == t[:, None, :]) & (t[:, :, None] >= 0)
    best = np.where(agree, sim[:, None, :], 0.0).reshape(b, n, s, k).max(axis=3)
    evidence = best.sum(axis=2) / np.float32(s)
    weight = agree.sum(axis=2)
    offset = np.where(agree, implied[:, None, :], 0.0).sum(axis=2) / np.maximum(weight, 1)
    win = np.repeat(np.arange(b), n)
    trk, ev, off = t.ravel(), evidence.ravel(), offset.ravel()
    valid = trk >= 0
    win, trk, ev, off = win[valid], trk[valid], ev[valid], off[valid]
    order = np.lexsort((-ev, trk, win))
    win, trk, ev, off = win[order], trk[order], ev[order], off[order]
    first = np.ones(len(win), dtype=bool)
    first[1:] = (win[1:] != win[:-1]) | (trk[1:] != trk[:-1])
    return win[first], trk[first], ev[first].astype(np.float32), off[first].astype(np.float32)


def _search_results(rng, b: int, s: int, k: int, n_tracks: int, *, repeated: bool):
    """Hits like a real search's: a true track whose hits line up, chance hits, empty slots, negative sims.

    repeated: the true track's material recurs every 120 frames (a looped
    game tune), so its hits tie at several offsets.
    """
    tracks = rng.integers(0, n_tracks, size=(b, s, k))
    positions = rng.integers(0, 4000, size=(b, s, k)) // 8 * 8
    sims = np.sort(rng.uniform(-0.2, 0.7, size=(b, s, k)), axis=2)[:, :, ::-1].astype(np.float32)
    starts = np.arange(s) * 5
    for w in range(b):
        true, offset = rng.integers(0, n_tracks), rng.integers(0, 3000)
        for copy in range(4 if repeated else 1):
            tracks[w, :, copy] = true
            positions[w, :, copy] = (offset + 120 * copy + starts) // 8 * 8
            sims[w, :, copy] = 0.9 - 1e-7 * copy
    tracks[rng.random((b, s, k)) < 0.05] = -1  # fewer vectors than k: the index pads with -1
    return starts, tracks, positions, sims


@pytest.mark.parametrize("repeated", [False, True])
def test_vote_equals_the_direct_formula_bit_for_bit(repeated):
    rng = np.random.default_rng(7)
    params = MatchParams()
    # Sizes go up and down so that the reused work arrays are both grown and
    # only partly used; every call must still equal a fresh computation.
    for b, s in [(11, 10), (1, 10), (32, 9), (3, 10), (11, 10), (2, 3)]:
        starts, tracks, positions, sims = _search_results(rng, b, s, params.top_k, 6, repeated=repeated)
        votes = vote(starts, tracks, positions, sims, params=params)
        win, trk, ev, off = _reference_vote(starts, tracks, positions, sims, params)
        np.testing.assert_array_equal(votes.window, win)
        np.testing.assert_array_equal(votes.track, trk)
        np.testing.assert_array_equal(votes.score, ev)
        np.testing.assert_array_equal(votes.offset_frames, off)


def test_vote_on_a_real_grid_recovers_the_offset_after_larger_calls():
    """A small call right after a large one (shared work arrays) still finds its track and offset."""
    rng = np.random.default_rng(3)
    params = MatchParams(density_weight=0.0)  # raw similarities: the true hits score their 0.9
    starts = query_starts(75, frames=30, params=params)
    big = _search_results(rng, 40, len(starts), params.top_k, 8, repeated=False)
    vote(*big, params=params)
    tracks = rng.integers(0, 5, size=(1, len(starts), params.top_k))
    positions = rng.integers(0, 3000, size=tracks.shape) // 8 * 8
    sims = np.full(tracks.shape, 0.3, dtype=np.float32)
    tracks[0, :, 0], positions[0, :, 0], sims[0, :, 0] = 7, (1234 + starts) // 8 * 8, 0.9
    votes = vote(starts, tracks, positions, sims, params=params)
    best = int(np.argmax(votes.score))
    assert votes.track[best] == 7 and votes.score[best] > 0.85
    assert abs(votes.offset_frames[best] - 1234) <= params.offset_tolerance_frames + 8


def test_vote_keeps_track_keys_beyond_int32_apart():
    """Keys that differ only above 32 bits are different tracks (no narrowing of the comparison)."""
    params = MatchParams(density_weight=0.0)  # raw similarities: 0.9 on half the sub-windows
    starts = np.array([0, 5])
    tracks = np.array([[[1, -1], [1 + 2**32, -1]]], dtype=np.int64)
    positions = np.array([[[100, 0], [105, 0]]])
    sims = np.array([[[0.9, 0.0], [0.9, 0.0]]], dtype=np.float32)
    votes = vote(starts, tracks, positions, sims, params=params)
    assert sorted(votes.track.tolist()) == [1, 1 + 2**32]
    assert np.allclose(votes.score, 0.45)  # each agrees with itself only: half the sub-windows


faiss_missing = not index_base.faiss_available()


@pytest.mark.skipif(faiss_missing, reason="faiss-cpu is not installed")
@pytest.mark.parametrize("n_queries", [1, 3, 4, 33, 300])
def test_faiss_batched_search_finds_what_one_query_at_a_time_finds(n_queries):
    from audiocopy.engines.fingerprint.index.faiss_index import FaissIndex

    rng = np.random.default_rng(11)
    dim, k = 64, 20
    index = FaissIndex(dim, IndexParams(backend="faiss"))
    for track in range(12):
        v = rng.standard_normal((400, dim)).astype(np.float32)
        index.add(track, v / np.linalg.norm(v, axis=1, keepdims=True), np.arange(400) * 8)
    q = rng.standard_normal((n_queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims, tracks, positions = index.search(q, k)
    for i in range(n_queries):  # a lone query takes faiss's scan, not the matrix product
        s1, t1, p1 = index.search(q[i:i + 1], k)
        np.testing.assert_allclose(sims[i], s1[0], atol=1e-5)
        assert set(zip(tracks[i].tolist(), positions[i].tolist())) == set(zip(t1[0].tolist(), p1[0].tolist()))


def test_embeddings_do_not_depend_on_how_a_call_is_cut():
    arch = {"frames": 31, "bands": 72, "widths": (16, 24, 32), "hidden_dim": 64, "embedding_dim": 32}
    rng = np.random.default_rng(5)
    arrays = []
    for name, shape in weight_layout(**arch):
        if name.endswith(("gamma", "moving_variance")):
            arrays.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            arrays.append(rng.normal(0.0, 0.3, shape).astype(np.float32))
    weights = prepare_weights(arrays, xp=np, **arch)
    x = rng.standard_normal((100, arch["frames"], arch["bands"])).astype(np.float32)
    one_by_one = np.concatenate([embed(x[i:i + 1], weights, threads=1) for i in range(len(x))])
    for n in (33, 49, 100):  # one pass; two equal chunks; three chunks on two threads
        np.testing.assert_allclose(embed(x[:n], weights), one_by_one[:n], atol=1e-5)
        np.testing.assert_allclose(embed(x[:n], weights, chunk=7, threads=2), one_by_one[:n], atol=1e-5)
