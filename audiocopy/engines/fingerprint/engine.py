"""The fingerprint engine: one shared encoder plus a vector index.

Place in the pipeline: an ``Engine`` (see ``engines``) between the signal
stage and the decision, beside ``cnnbin``. cnnbin runs one network per track
on every window, so its cost grows with the catalogue; here every window
costs the same encoder pass (ten one-second sub-windows) whatever the
catalogue, plus ten nearest-neighbour searches whose cost the index keeps
nearly flat (``index``), plus the offset vote (``match``). Enrolling a track
only embeds it: no training, so tracks are added and removed in seconds.

One path for every window (``stream``): a window's frames are computed, its
sub-windows embedded and searched, and the hits voted on; a window that
belongs to a stream reuses the frames and hits its stream's earlier windows
already computed (``engines.StreamState``), about three new sub-windows per
0.5 s hop instead of ten, with the same answers. Calibration negatives come
as stored band levels (``raw_level_scores``) and take the same path.

The database on disk (layout, consistency rules) is ``db``.

Live updates. ``FingerprintEngine.refresh()`` checks (a few ``stat`` calls)
whether enrolment or removal changed the database and, if so, loads the new
state and swaps it in atomically; ``score`` works on one consistent snapshot.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config import AudioParams, FeatureParams, MatchParams
from ...encoder.artifact import Encoder, load_encoder
from ...errors import ModelError
from .. import EngineScores, WindowBatch, catalog
from .db import (
    ENCODER_FILE,
    INDEX_FILE,
    NAME,
    QDRANT_SIDECAR,
    FingerprintConfig,
    checked_records,
    open_index,
    read_config,
    save_index,
    vote_settings,
)
from .stream import SearchContext, level_votes, stream_votes

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------
# tracks


# --------------------------------------------------------------------------
# the engine


@dataclass(frozen=True)
class _State:
    """One consistent snapshot of a loaded database."""

    track_ids: tuple[str, ...]
    key_to_col: np.ndarray  # track key -> column in margins (-1: not a track)
    index: object
    threshold: float
    signature: tuple
    levels: dict  # track id -> (levels file, hop frames) of tracks that have them


def _signature(db: Path) -> tuple:
    """What changes when enrolment, removal or calibration writes the database."""
    out = []
    for p in (Path(db) / catalog.DB_FILE, Path(db) / catalog.TRACKS_DIR, Path(db) / INDEX_FILE,
              Path(db) / QDRANT_SIDECAR):
        try:
            out.append(p.stat().st_mtime_ns)
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


class FingerprintEngine:
    """Scores windows by encoder + nearest neighbours + offset vote."""

    name = NAME

    def __init__(self, db: Path, *, audio: AudioParams, features: FeatureParams, encoder: Encoder,
                 config: FingerprintConfig, state: _State, calibration: dict):
        self.db = Path(db)
        self.audio = audio
        self.features = features
        self.encoder = encoder
        self.config = config
        self.calibration = calibration
        self._state = state
        self._lock = threading.Lock()

    @property
    def match(self) -> MatchParams:
        return self.config.match

    @property
    def track_ids(self) -> list[str]:
        return list(self._state.track_ids)

    @property
    def threshold(self) -> float:
        return self._state.threshold

    @property
    def index(self):
        return self._state.index

    def _context(self, snapshot: _State) -> SearchContext:
        return SearchContext(self.audio, self.features, self.match, self.encoder, snapshot.index, snapshot, self)

    def _tables(self, votes_groups, b: int, snapshot: _State) -> tuple[np.ndarray, np.ndarray]:
        """Vote scores and track offsets of every (window, track) from the votes of ``stream.py``.

        Returns (scores (b, n_tracks) float32 in [0, 1], offsets (b, n_tracks)
        float32 seconds, NaN where a track had no hit).
        """
        n_tracks = len(snapshot.track_ids)
        scores = np.zeros((b, n_tracks), dtype=np.float32)
        offsets = np.full((b, n_tracks), np.nan, dtype=np.float32)
        if b and n_tracks:
            for rows, leads, votes in votes_groups:
                self._tabulate(votes, rows, leads, snapshot, scores, offsets)
        return scores, offsets

    def _tabulate(self, votes, rows: np.ndarray, leads: np.ndarray, state: _State, scores: np.ndarray,
                  offsets: np.ndarray) -> None:
        """Write votes into the (batch, n_tracks) score and offset tables.

        rows: batch row of each ``votes.window``; leads: samples from each
        of those windows' start to the frame its vote offsets count from.
        """
        lookup = state.key_to_col
        in_table = (votes.track >= 0) & (votes.track < len(lookup))
        col = np.full(len(votes.track), -1, dtype=np.int64)
        col[in_table] = lookup[votes.track[in_table]]
        ok = col >= 0
        row = np.asarray(rows)[votes.window[ok]]
        scores[row, col[ok]] = votes.score[ok]
        seconds = self.features.hop_length / self.audio.sample_rate
        lead_s = np.asarray(leads, dtype=np.float64)[votes.window[ok]] / self.audio.sample_rate
        offsets[row, col[ok]] = (votes.offset_frames[ok] * seconds - lead_s).astype(np.float32)

    def score(self, batch: WindowBatch) -> EngineScores:
        """Margins and track offsets of every track for every window (``stream.stream_votes``).

        margin = vote score - calibrated threshold (> 0: match at the
        database's target false-positive rate). A track offset is where in
        the track the window's first sample aligns (seconds); NaN for tracks
        without evidence. Windows with a ``StreamState`` reuse their stream's
        earlier frames and searches; the answers are the same without it.
        """
        snapshot = self._state
        profiles = np.full((len(batch.samples), self.features.n_bins), np.nan, dtype=np.float32)
        votes = stream_votes(self._context(snapshot), batch.samples, batch.start_samples, batch.states, xp=batch.xp,
                             profiles=profiles)
        scores, offsets = self._tables(votes, len(batch.samples), snapshot)
        return EngineScores(scores - np.float32(snapshot.threshold), offsets, profiles)

    def raw_level_scores(self, levels: np.ndarray) -> np.ndarray:
        """Uncalibrated vote scores of independent windows given as band levels (calibration).

        levels: (batch, frames, bands) from ``signal.features.band_db`` of
        whole windows. Returns (batch, n_tracks) float32 in [0, 1].
        """
        snapshot = self._state
        return self._tables(level_votes(self._context(snapshot), levels), len(levels), snapshot)[0]

    def track_profile(self, track_id: str, start_s: float, end_s: float) -> np.ndarray | None:
        """The track's mean band level (dB) over [start_s, end_s] of the track; None without stored levels.

        Reads the track's coarse levels (memory-mapped, a few hundred kB) the
        first time a play of it is measured.
        """
        entry = self._state.levels.get(track_id)
        if entry is None:
            return None
        path, hop = entry
        try:
            levels = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            log.warning("track levels %s are unreadable (%s): no pitch for this play", path, exc)
            return None
        block_s = hop * self.features.hop_length / self.audio.sample_rate
        lo = int(max(0.0, min(start_s, end_s)) / block_s)
        hi = int(np.ceil(max(start_s, end_s) / block_s))
        part = np.asarray(levels[lo:max(hi, lo + 1)], dtype=np.float32)
        return part.mean(axis=0) if len(part) else None

    def close(self) -> None:
        """Release the index (an embedded Qdrant store locks its folder until closed)."""
        self._state.index.close()

    def refresh(self) -> bool:
        """Reload if the database changed on disk (enrolment, removal, calibration).

        Cheap when nothing changed (a few ``stat`` calls), so a server can call
        it before each batch or every few seconds. Returns True when it
        reloaded. The swap is atomic: a concurrent ``score`` finishes on the
        old snapshot. A caller that caches ``track_ids`` must re-read them.
        """
        if _signature(self.db) == self._state.signature:
            return False
        with self._lock:
            if _signature(self.db) == self._state.signature:
                return False
            old = self._state
            local_qdrant = getattr(old.index, "kind", "") == "qdrant" and not self.config.index.qdrant_url
            if local_qdrant:
                old.index.close()  # embedded Qdrant locks its folder: release it before reopening
            fresh = load(self.db, encoder=self.encoder)
            self._state, self.config, self.calibration = fresh._state, fresh.config, fresh.calibration
            if not local_qdrant:
                old.index.close()
            log.info("reloaded %s: %d tracks", self.db, len(self._state.track_ids))
            return True


def _make_state(db: Path, config: FingerprintConfig, records: list[dict], index, threshold: float,
                signature: tuple) -> _State:
    keys = [int(r["key"]) for r in records]
    lookup = np.full(max(keys, default=-1) + 1, -1, dtype=np.int64)
    lookup[keys] = np.arange(len(keys))
    levels = {r["track_id"]: (Path(db) / catalog.TRACKS_DIR / r["levels_file"], int(r["hop_frames"]))
              for r in records if r.get("levels_file")}
    return _State(tuple(r["track_id"] for r in records), lookup, index, threshold, signature, levels)


def load(db: Path, *, writable: bool = False, encoder: Encoder | None = None,
         warn_uncalibrated: bool = True) -> FingerprintEngine:
    """Load a fingerprint database.

    writable: allow rebuilding and saving the index (enrolment, removal);
        a recognizer loads read-only and reconciles in memory only.
    encoder: reuse an already loaded encoder with the database's SHA-256.
    Raises ``ModelError`` for a missing or corrupt database and
    ``ParamsMismatch`` when its parts were made with different parameters.
    """
    db = Path(db)
    signature = _signature(db)
    info = catalog.open_db(db)
    if info.engine != NAME:
        raise ModelError(f"{db} is a {info.engine!r} database, not {NAME!r}")
    config = read_config(db)
    if encoder is None or encoder.sha256 != config.encoder_sha256:
        encoder = load_encoder(db / ENCODER_FILE, audio=info.audio, features=info.features,
                               expect_sha256=config.encoder_sha256)
    records = checked_records(db, config)
    index, changed = open_index(db, config, records, encoder.dim, writable=writable)
    if changed and writable:
        save_index(db, config, index)
    threshold = float(info.calibration.get("threshold", config.match.min_threshold))
    own, current = vote_settings(config.match), vote_settings(MatchParams())
    if records and own != current:
        log.info("%s votes and calibrates with %s (this version's defaults: %s); `audiocopy enroll --update-vote "
                 "--negatives DIR --db %s CATALOG_DIR` adopts them and recalibrates", db, own, current, db)
    if "threshold" not in info.calibration and records and warn_uncalibrated:
        log.warning("%s is not calibrated: threshold %.3f (enrol with --negatives to calibrate)", db, threshold)
    state = _make_state(db, config, records, index, threshold, signature)
    log.info("loaded %d fingerprint tracks (%d vectors, %s index) from %s", len(records), len(index),
             getattr(index, "structure", getattr(index, "kind", "?")), db)
    return FingerprintEngine(db, audio=info.audio, features=info.features, encoder=encoder, config=config,
                             state=state, calibration=dict(info.calibration))

