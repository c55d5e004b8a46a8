"""Retrieval on held-out tracks: the number that decides which epoch ships.

Place in the pipeline: after every training epoch. Distorted queries from
held-out tracks search a database of every cached track's clean sub-windows;
top-1 counts a query right when it finds its track within one enrolment hop.
The set is seeded, so every epoch (and every resume) is measured alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import EncoderTrainParams
from ...encoder.subwindows import standardize
from ..sources import stable_seed
from .cache import TrackCache
from .pairs import PairSampler


@dataclass
class Validation:
    """A fixed retrieval test: distorted queries from held-out tracks against
    a database of every cached track's clean sub-windows."""

    queries: np.ndarray  # (Q, frames, bands) standardised
    query_track: np.ndarray  # (Q,) index into db tracks
    query_centre: np.ndarray  # (Q,) clean frame at the query's centre
    db_subwindows: list  # per track: (n, frames, bands) standardised
    db_starts: list  # per track: (n,) start frames

    def run(self, embed, frames: int) -> dict:
        """Top-1 retrieval: right track, and right track within one enrolment hop."""
        vecs = [embed(s) for s in self.db_subwindows]
        db = np.concatenate(vecs)
        track = np.concatenate([np.full(len(v), i) for i, v in enumerate(vecs)])
        centre = np.concatenate(self.db_starts) + (frames - 1) / 2
        q = embed(self.queries)
        best = np.argmax(q @ db.T, axis=1)
        right_track = track[best] == self.query_track
        near = np.abs(centre[best] - self.query_centre) <= 8
        return {"top1_track": float(right_track.mean()), "top1": float((right_track & near).mean()),
                "db_vectors": int(len(db))}


def make_validation(val: list[TrackCache], distractors: list[TrackCache], sampler: PairSampler, *,
                    train: EncoderTrainParams, floor_db: float, frames: int) -> Validation:
    """Build the fixed validation set (seeded, identical on every resume)."""
    from ...encoder.subwindows import cut_subwindows, subwindow_starts

    rng = np.random.default_rng(stable_seed(train.seed, "validation"))
    tracks = val + distractors
    queries, q_track, q_centre = [], [], []
    for k in range(train.val_queries):
        ti = k % len(val)
        t = val[ti]
        f = frames
        if len(t.views) and rng.random() < 0.5:
            v = int(rng.integers(len(t.views)))
            i0 = int(rng.integers(0, t.views.shape[1] - f + 1))
            centre = t.view_frame0[v] + (i0 + (f - 1) / 2) * t.view_scale[v]
            positive = t.views[v, i0:i0 + f].astype(np.float32)
        else:
            other = distractors[int(rng.integers(len(distractors)))] if distractors else t
            positive, centre = sampler.aug.positive(t.clean, t.energy, rng, (other.clean, other.energy))
        queries.append(positive)
        q_track.append(ti)
        q_centre.append(centre)
    subs, starts = [], []
    for i, t in enumerate(tracks):
        hop = train.enrol_hop_frames if i < len(val) else 2 * train.enrol_hop_frames  # distractors: half density
        s = subwindow_starts(len(t.clean), frames=frames, hop_frames=hop)
        subs.append(standardize(cut_subwindows(t.clean[None].astype(np.float32), s, frames)[0], floor_db=floor_db))
        starts.append(s)
    return Validation(standardize(np.stack(queries), floor_db=floor_db), np.array(q_track), np.array(q_centre),
                      subs, starts)
