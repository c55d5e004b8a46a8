"""Windows through the fingerprint engine: every sub-window of a stream analysed once.

Place in the pipeline: inside the ``fingerprint`` engine, the one path every
window takes (``FingerprintEngine.score``): a live stream's windows, a file's
windows, a lone fragment. What it needs from the engine arrives as one
explicit ``SearchContext``; a stream's cache arrives in its ``StreamState``.

Why a cache. A stream yields a 2.5 s window every 0.5 s, so four fifths of
each window were already in the previous one. Each stream keeps, on its own
absolute grid,

* the band levels of the FFT frames it has computed (frame ``j`` starts at
  stream sample ``j * hop_length``), and
* the search hits of the sub-windows it has embedded (a sub-window starts on
  a frame that is a multiple of ``query_hop_frames``),

so a new window computes only the frames, embeddings and searches its last
0.5 s adds: about 16 frames and 3 sub-windows instead of 75 and 10. Only the
offset vote, which depends on the window's own set of sub-windows, is redone
for every window. A window without a stream gets a throw-away cache: the
same computation, nothing remembered.

Why an absolute grid. 0.5 s is 15.625 frames of 32 ms, so the frames of two
consecutive windows, each counted from its own first sample, never
coincide. Counted from the start of the stream, two windows hold the same
frames where they overlap, and sub-windows starting on multiples of five
frames are shared too. A window uses the whole frames inside it (74 or 75)
and the sub-windows that fit in those (9 or 10); the vote's score is a mean
over sub-windows, so 9 or 10 does not shift it.

Equivalence. A sub-window is floored 80 dB under its own peak and
standardised on its own, exactly as enrolment does (``encoder.subwindows``),
so what a cached sub-window holds never depends on the window that first
saw it: a stream's answers are the same with or without the cache (tested).

Silence is no evidence. A sub-window of digital silence is searched for
nothing and gets no hits (``FLAT_DB``): standardised it is all zeros, the
encoder maps every such sub-window to one vector, and every silent passage
of every catalogue track holds that vector, so a search would find them
all, perfectly aligned. Its share of the window's mean vote is zero.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ...config import AudioParams, FeatureParams, MatchParams
from ...encoder.subwindows import standardize
from ...signal.features import band_db, frame_power
from ...signal.xp import to_numpy
from .. import StreamState
from .match import Votes, vote


@dataclass(frozen=True)
class SearchContext:
    """What scoring windows needs from the engine, handed over explicitly.

    audio, features, match: the database's parameters. encoder: embeds
    standardised sub-windows (``encoder.Encoder``). index: the vector index
    of the database snapshot being searched. snapshot: that snapshot's
    identity (cached hits from another snapshot are searched again). owner:
    the identity of the engine (a cache made by another engine is dropped).
    """

    audio: AudioParams
    features: FeatureParams
    match: MatchParams
    encoder: object
    index: object
    snapshot: object
    owner: object


@dataclass(eq=False)
class StreamCache:
    """One stream's frames and hits (kept in ``StreamState.cache``).

    owner, snapshot: weak references to the engine and the database snapshot
        the hits were searched in; after a reload the hits are dropped, the
        band levels kept. Weak, so an idle stream never keeps a replaced
        engine or index alive.
    band_lo: absolute index of the first frame in ``band``.
    band: (n, bands) float32 band levels (dB) of frames band_lo .. band_lo+n-1.
    hits: absolute sub-window start frame -> (tracks (k,), positions (k,),
        similarities (k,)) from the index.
    """

    owner: weakref.ref
    snapshot: weakref.ref
    band_lo: int = 0
    band: np.ndarray | None = None
    hits: dict = field(default_factory=dict)

    @property
    def band_hi(self) -> int:
        return self.band_lo + (0 if self.band is None else len(self.band))

    def forget_before(self, frame: int) -> None:
        """Drop what no later window of an in-order stream can use."""
        for start in [s for s in self.hits if s < frame]:
            del self.hits[start]
        if self.band is not None and frame > self.band_lo:
            self.band = self.band[frame - self.band_lo:]
            self.band_lo = frame


def cache_of(state: StreamState | None, ctx: SearchContext) -> StreamCache:
    """The cache in ``state`` for this engine and snapshot (a new one when absent, foreign or stale).

    state: None scores the window on its own (a throw-away cache).
    """
    if state is None:
        return StreamCache(weakref.ref(ctx.owner), weakref.ref(ctx.snapshot))
    cache = state.cache
    if not isinstance(cache, StreamCache) or cache.owner() is not ctx.owner:
        cache = state.cache = StreamCache(weakref.ref(ctx.owner), weakref.ref(ctx.snapshot))
    elif cache.snapshot() is not ctx.snapshot:
        cache.hits.clear()  # tracks were added or removed: search again, the audio is the same
        cache.snapshot = weakref.ref(ctx.snapshot)
    return cache


def window_frames(start_sample: int, n_samples: int, *, n_fft: int, hop: int) -> tuple[int, int]:
    """Absolute frames wholly inside a window: [first, end).

    start_sample: the window's first sample in the stream; n_samples: its
    length. Frame ``j`` covers samples ``j * hop`` to ``j * hop + n_fft``.
    """
    first = -(-start_sample // hop)
    end = (start_sample + n_samples - n_fft) // hop + 1
    return first, max(first, end)


def subwindow_grid(first: int, end: int, *, frames: int, hop: int) -> np.ndarray:
    """Absolute start frames of the sub-windows on the stream's grid within [first, end).

    Returns (n,) int64: multiples of ``hop`` whose ``frames``-frame
    sub-window lies inside the window's frames (may be empty).
    """
    lo = -(-first // hop) * hop
    return np.arange(lo, end - frames + 1, hop, dtype=np.int64)


@dataclass
class _Plan:
    """One window's work within a round."""

    row: int  # row in the batch
    start_sample: int
    first: int  # first absolute frame inside the window
    end: int  # one past its last whole frame
    starts: np.ndarray  # absolute sub-window starts the window votes with
    cache: StreamCache
    missing: list  # starts not cached yet
    compute: tuple[int, int] = (0, 0)  # absolute frames to compute [lo, hi)


def _rounds(states: tuple) -> list[list[int]]:
    """Batch rows in rounds with at most one window per stream each.

    A stream that fell behind can have several windows in one batch; the
    second must see the first one's cache, so it goes in the next round.
    """
    rounds: list[list[int]] = []
    seen: dict[int, int] = {}
    for row, state in enumerate(states):
        r = 0 if state is None else seen.get(id(state), 0)
        if state is not None:
            seen[id(state)] = r + 1
        while len(rounds) <= r:
            rounds.append([])
        rounds[r].append(row)
    return rounds


def _plan(ctx: SearchContext, row: int, start_sample: int, n_samples: int, cache: StreamCache) -> _Plan:
    """What one window needs that its stream's cache does not hold yet."""
    f, sub = ctx.features, ctx.encoder.params.frames
    first, end = window_frames(start_sample, n_samples, n_fft=f.n_fft, hop=f.hop_length)
    cache.forget_before(first)
    starts = subwindow_grid(first, end, frames=sub, hop=ctx.match.query_hop_frames)
    plan = _Plan(row, start_sample, first, end, starts, cache, [int(a) for a in starts if int(a) not in cache.hits])
    if plan.missing:
        need_lo, need_hi = plan.missing[0], plan.missing[-1] + sub
        if cache.band is None or not cache.band_lo <= need_lo <= cache.band_hi:
            cache.band, cache.band_lo = None, need_lo  # a gap (dropped windows): start afresh
        plan.compute = (max(need_lo, cache.band_hi), need_hi)
    return plan


#: A sub-window whose band levels span less than this (dB) is flat: digital silence (see ``_search_missing``).
FLAT_DB = 1e-3


def stream_votes(ctx: SearchContext, windows: np.ndarray, start_samples: np.ndarray, states: tuple, *,
                 xp: ModuleType = np, profiles: np.ndarray | None = None):
    """Search results and votes for a batch of windows.

    windows: (batch, window_samples) float32; start_samples: (batch,) int,
    each window's first sample in its stream; states: (batch,) the windows'
    ``StreamState`` (None: a window on its own); xp: NumPy or CuPy for the FFT.
    Yields, per group of windows that share the same relative sub-window
    starts, (rows (g,), leads (g,), ``match.Votes``): ``Votes.window``
    indexes into ``rows``; its offsets count frames from each window's first
    whole frame, which starts ``leads`` samples after the window does.
    profiles: optional (batch, bands) array that receives each window's mean
    band level in dB (what the decision compares with the track's to tell a
    pitch shift).
    """
    windows = np.asarray(windows, dtype=np.float32)
    for rows in _rounds(states):
        plans = [_plan(ctx, row, int(start_samples[row]), windows.shape[1], cache_of(states[row], ctx))
                 for row in rows]
        _compute_frames(ctx, plans, windows, xp=xp)
        _search_missing(ctx, plans)
        if profiles is not None:
            for p in plans:
                if p.cache.band is not None and p.end > p.first:
                    lo = max(p.first - p.cache.band_lo, 0)
                    profiles[p.row] = p.cache.band[lo:p.end - p.cache.band_lo].mean(axis=0)
        yield from _vote(ctx, plans)


def level_votes(ctx: SearchContext, levels: np.ndarray):
    """Votes for independent windows given as band levels (calibration negatives).

    levels: (batch, frames, bands) dB band levels of whole windows, frame 0
    at each window's first sample (``signal.features.band_db``). The same
    sub-window grid, floor and search as ``stream_votes`` with a fresh cache.
    Yields what ``stream_votes`` yields.
    """
    levels = np.asarray(levels, dtype=np.float32)
    n_samples = (levels.shape[1] - 1) * ctx.features.hop_length + ctx.features.n_fft
    plans = []
    for row in range(len(levels)):
        cache = cache_of(None, ctx)
        cache.band, cache.band_lo = levels[row], 0
        plans.append(_plan(ctx, row, 0, n_samples, cache))
    _search_missing(ctx, plans)
    yield from _vote(ctx, plans)


def _compute_frames(ctx: SearchContext, plans: list[_Plan], windows: np.ndarray, *, xp) -> None:
    """Band levels of every frame the plans lack, in one FFT call for the round."""
    n_fft, hop = ctx.features.n_fft, ctx.features.hop_length
    spans = [(p, np.arange(*p.compute)) for p in plans if p.compute[1] > p.compute[0]]
    if not spans:
        return
    from numpy.lib.stride_tricks import sliding_window_view

    # Strided views of each window's new frames (no gathered index array:
    # that alone cost as much as the FFT).
    parts = []
    for p, j in spans:
        lo = int(j[0]) * hop - p.start_sample
        segment = windows[p.row, lo:lo + (len(j) - 1) * hop + n_fft]
        parts.append(sliding_window_view(segment, n_fft)[::hop])
    frames = np.concatenate(parts)  # (new frames, n_fft)
    levels = band_db(frame_power(frames, xp=xp), audio=ctx.audio, params=ctx.features, xp=xp)
    levels = np.asarray(to_numpy(levels), dtype=np.float32)
    at = 0
    for p, j in spans:
        new = levels[at:at + len(j)]
        at += len(j)
        p.cache.band = new if p.cache.band is None else np.concatenate([p.cache.band, new])


def _search_missing(ctx: SearchContext, plans: list[_Plan]) -> None:
    """Embed and search every sub-window the plans lack (one encoder call, one search)."""
    sub_frames = ctx.encoder.params.frames
    cuts, owners = [], []
    for p in plans:
        for a in p.missing:
            lo = a - p.cache.band_lo
            cuts.append(p.cache.band[lo:lo + sub_frames])
            owners.append((p.cache, a))
    if not cuts:
        return
    levels = np.stack(cuts)
    # A sub-window of digital silence has one band level everywhere: standardised it is all zeros, and
    # the encoder maps it to one fixed vector, which every silent second of every catalogue track shares.
    # Searched, it would find them all at a perfect similarity and at every offset (a window of unrelated
    # music ending in 2 s of silence matched a catalogue track with a silent passage at +0.36): it is no
    # evidence, so it gets no hits.
    flat = np.ptp(levels.reshape(len(levels), -1), axis=1) < FLAT_DB
    k = ctx.match.top_k
    none = (np.full(k, -1, dtype=np.int64), np.zeros(k, dtype=np.float32), np.zeros(k, dtype=np.float32))
    if not flat.all():
        sub = standardize(levels[~flat], floor_db=ctx.features.floor_db)
        sims, tracks, positions = ctx.index.search(ctx.encoder.embed(sub), k)
    j = 0  # row of the search results: heard sub-windows only, in order
    for (cache, a), silent in zip(owners, flat):
        if silent:
            cache.hits[a] = none
        else:
            cache.hits[a] = (tracks[j], positions[j], sims[j])
            j += 1


def _vote(ctx: SearchContext, plans: list[_Plan]):
    """Offset votes, one call per distinct pattern of relative sub-window starts."""
    groups: dict[tuple, list[_Plan]] = {}
    for p in plans:
        if len(p.starts):
            groups.setdefault(tuple(p.starts - p.first), []).append(p)
    for rel, members in groups.items():
        hits = [[m.cache.hits[int(a)] for a in m.starts] for m in members]
        tracks = np.array([[h[0] for h in w] for w in hits])
        positions = np.array([[h[1] for h in w] for w in hits])
        sims = np.array([[h[2] for h in w] for w in hits])
        votes: Votes = vote(np.array(rel, dtype=np.int64), tracks, positions, sims, params=ctx.match)
        leads = np.array([m.first * ctx.features.hop_length - m.start_sample for m in members])
        yield np.array([m.row for m in members]), leads, votes
