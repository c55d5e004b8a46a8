"""Offset voting: nearest-neighbour hits of a query's sub-windows -> track scores.

Place in the pipeline: inside the ``fingerprint`` engine, after the vector
index. Pure NumPy, no model, so it is tested on synthetic hits with known
answers.

Why vote on offsets. A single sub-window's nearest neighbour is often wrong:
one second of music resembles many seconds of other music, all the more
after noise or a phone. But if the query really is track T played from
second s, then *several* of its sub-windows, taken 0.16 s apart, find
neighbours in T whose positions advance with theirs: a hit of sub-window j
at track frame p implies the query started at frame p - q_j, and true hits
agree on it while chance hits scatter. So for each hit ("seed") we collect
the hits of the same track whose implied start agrees with the seed's, and
the evidence is the sum, over sub-windows, of the best agreeing similarity.

Tolerance. Positions are quantised by enrolment (a vector every
``enrol_hop_frames``), so agreeing hits can differ by a hop plus a frame or
two of encoder slack (``offset_tolerance_frames``). A speed or tempo change
of up to ``max_time_scale`` (±12 %) stretches the query's time axis: two
sub-windows dq frames apart land dq * (1 ± 0.12) frames apart in the
track, so the tolerance grows by ``max_time_scale * |dq|``.

Local density. A similarity alone says little about how much a hit stands
out. Some sub-windows lie where the embedding space is crowded: generic
chords, drums, and above all audio that a room, a small speaker or a phone
has flattened, whose vectors gather in one region. Such a sub-window finds
many tracks at about the same high similarity, and a window of unrelated
music made of them gathers chance agreement at high similarity: that is
what sets the calibrated threshold. A room recording of a catalogue track
is the opposite case: far from everything, its true hits have a modest
similarity that still stands well above its own background. So each hit's
similarity is reduced by ``density_weight`` times its sub-window's local
density, the mean of the sub-window's ``density_k`` best similarities over
all tracks, before the vote (the query side of CSLS, "cross-domain
similarity local scaling", Conneau et al. 2018, a remedy for hubness in
nearest-neighbour search). The evidence then measures how far the agreeing
hits stand above their sub-windows' background. The density comes from the
hits the search returns anyway, so it costs nothing but a sort of k values.
The weight was chosen on a tuning set of music outside the benchmark's
catalogue and unseen packages (``tools/tune_density.py``, 2026-12-06). That
set, rebuilt to leave out the calibration hold-out as whole packages, now
holds only music the shipped encoder trained on and prefers 0.9; the
default stays until unheard music can decide (``docs/benchmarks.md``).

The score of a track is that evidence divided by the number of
sub-windows: the mean best agreeing (density-reduced) similarity, 0 when
nothing agrees, near 1 - ``density_weight`` x the density when every
sub-window finds its exact copy. The engine subtracts a threshold
calibrated on unrelated music to get the margin, so the scale of the score
never reaches the decision unmeasured.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ...config import MatchParams


def query_starts(n_frames: int, *, frames: int, params: MatchParams) -> np.ndarray:
    """Start frames of a query window's sub-windows: (n_sub,) int64.

    The grid covers the window from its first frame in steps of
    ``query_hop_frames``; the last sub-window is moved to end with the
    window so that the whole query is used.
    """
    if n_frames < frames:
        raise ValueError(f"a query of {n_frames} frames is shorter than one {frames}-frame sub-window")
    starts = np.arange(0, n_frames - frames + 1, params.query_hop_frames, dtype=np.int64)
    if starts[-1] != n_frames - frames:
        starts = np.append(starts, n_frames - frames)
    return starts


_local = threading.local()


def _buffers(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Float32 and bool work arrays of ``shape`` for ``vote``, reused by the calling thread.

    A server cycle votes on ~10 windows of 200 hits: 1.6 MB per array, which
    fresh from the allocator cost page faults on every call, measured at
    about 40 % of the vote's CPU time. Each thread keeps its own pair.
    """
    size = shape[0] * shape[1] * shape[2]
    have = getattr(_local, "buffers", None)
    if have is None or have[0].size < size:
        have = _local.buffers = (np.empty(size, dtype=np.float32), np.empty(size, dtype=bool))
    return have[0][:size].reshape(shape), have[1][:size].reshape(shape)


@dataclass(frozen=True)
class Votes:
    """Per window, the tracks that gathered evidence.

    window: (m,) int window index; track: (m,) track keys; score: (m,) float32
    mean best agreeing similarity; offset_frames: (m,) float32 track frame at
    which the query window's first frame aligns.
    """

    window: np.ndarray
    track: np.ndarray
    score: np.ndarray
    offset_frames: np.ndarray


def local_density(sims: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Mean of each sub-window's ``k`` best similarities among its valid hits: (B, S) float32.

    sims, valid: (B, S, K) search similarities and whether each hit exists
    (track key >= 0). A sub-window with fewer than ``k`` hits averages the
    ones it has; one with none (silent, ``stream``) has density 0.
    """
    masked = np.where(valid, sims, -np.inf).astype(np.float32)
    best = -np.sort(-masked, axis=2)[:, :, :k]
    count = np.minimum(np.count_nonzero(valid, axis=2), k)
    total = np.where(np.isfinite(best), best, 0.0).sum(axis=2)
    return (total / np.maximum(count, 1)).astype(np.float32)


def vote(starts: np.ndarray, tracks: np.ndarray, positions: np.ndarray, sims: np.ndarray, *,
         params: MatchParams) -> Votes:
    """Score every candidate track of every window by consistent offsets.

    starts: (S,) query sub-window start frames.
    tracks, positions, sims: (B, S, k) search results per window and
        sub-window: track key (-1 = none), start frame of the hit in that
        track, inner-product similarity.
    Returns ``Votes`` with one entry per (window, track) that had a hit: the
    best seed's evidence (see the module docstring) and its offset.
    """
    tracks = np.asarray(tracks)
    b, s, k = tracks.shape
    n = s * k
    sims = np.asarray(sims, dtype=np.float32)
    if params.density_weight:
        density = local_density(sims, tracks >= 0, params.density_k)
        sims = sims - np.float32(params.density_weight) * density[..., None]
    t = tracks.reshape(b, n)
    valid = t >= 0
    p = np.asarray(positions, dtype=np.float32).reshape(b, n)
    sim = np.where(valid, sims.reshape(b, n), 0.0).astype(np.float32)
    sim = np.maximum(sim, 0.0)  # a hit below its background (or a negative similarity) is no evidence
    q = np.repeat(np.asarray(starts, dtype=np.float32), k)  # (n,) query start of each hit
    implied = p - q[None, :]  # (B, n): track frame of the query's first frame
    dq = np.abs(q[None, :] - q[:, None])  # (n, n)
    tol = np.float32(params.offset_tolerance_frames) + np.float32(params.max_time_scale) * dq
    # agree[w, i, j]: hit j agrees with seed i (same track, implied starts
    # within the tolerance). Written into reused buffers: the passes over
    # these (B, n, n) arrays are cheap, fresh arrays' page faults were not.
    d, agree = _buffers((b, n, n))
    np.subtract(implied[:, :, None], implied[:, None, :], out=d)
    np.abs(d, out=d)
    np.less_equal(d, tol, out=agree)
    # Track keys are below 2**30 (``index.base.pack_ids``): compared as int32, half the bytes.
    keys = t.astype(np.int32) if t.size and -2**31 <= t.min() and t.max() < 2**31 else t
    agree &= keys[:, :, None] == keys[:, None, :]
    agree &= valid[:, None, :]
    # The relation is symmetric (tol and both tests are), so row j of
    # ``agree`` is also column j: d[w, j, i] = sim of hit j if it agrees with
    # seed i. The max over each sub-window's k hits then runs over a middle
    # axis, whole rows of seeds at a time, instead of over rows of length k.
    np.multiply(agree, sim[:, :, None], out=d)
    best_per_sub = np.ascontiguousarray(d.reshape(b, s, k, n).max(axis=2).transpose(0, 2, 1))  # (B, n, S)
    evidence = best_per_sub.sum(axis=2) / np.float32(s)  # (B, n)
    weight = np.count_nonzero(agree, axis=2)
    d.fill(0.0)
    np.copyto(d, implied[:, None, :], where=agree)
    offset = d.sum(axis=2) / np.maximum(weight, 1)  # mean implied start

    # Keep, per (window, track), the seed with the most evidence.
    win = np.repeat(np.arange(b), n)
    trk, ev, off = t.ravel(), evidence.ravel(), offset.ravel()
    valid = trk >= 0
    win, trk, ev, off = win[valid], trk[valid], ev[valid], off[valid]
    order = np.lexsort((-ev, trk, win))  # by window, track, then best evidence first
    win, trk, ev, off = win[order], trk[order], ev[order], off[order]
    first = np.ones(len(win), dtype=bool)
    first[1:] = (win[1:] != win[:-1]) | (trk[1:] != trk[:-1])
    return Votes(win[first], trk[first], ev[first].astype(np.float32), off[first].astype(np.float32))
