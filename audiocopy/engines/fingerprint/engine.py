"""The fingerprint engine: one shared encoder plus a vector index.

Place in the pipeline: an ``Engine`` (see ``engines``) between features and
the recognizer, beside ``cnnbin``. cnnbin runs one network per track on every
window, so its cost grows with the catalogue; here every window costs the
same encoder pass (ten one-second sub-windows) whatever the catalogue, plus
ten nearest-neighbour searches whose cost the index keeps nearly flat
(``fpindex``), plus the offset vote (``fpmatch``). Enrolling a track only
embeds it: no training, so tracks are added and removed in seconds.

Two query paths. ``score`` takes the features of independent windows
(files, fragments, calibration). ``score_stream`` takes the windows of live
streams with each stream's ``StreamMemory`` and embeds and searches every
sub-window of a stream only once (``fpstream``): about three new
sub-windows per 0.5 s hop instead of ten.

Database layout (``catalog`` owns ``db.json`` and ``tracks/``)::

    DB/db.json              engine "fingerprint", audio + feature parameters,
                            calibration {"threshold", "target_fpr", ...}
    DB/fingerprint.json     match and index parameters, the encoder's SHA-256,
                            the next free track key
    DB/encoder.json|.npz    the encoder the vectors were made with (a copy,
                            so the database never depends on the installed
                            package's weights)
    DB/tracks/<f>.json      one record per track: id, key, vector count, hop,
                            duration, encoder SHA-256, source file
    DB/tracks/<f>.npy       its (n, dim) float16 vectors: the source of truth
    DB/index.npz            faiss/NumPy index (derived; rebuilt from the track
                            vectors whenever it is missing or out of step)
    DB/index.json + qdrant/ the same for the Qdrant backend (local mode)
    DB/calibration.npy      features of held-out negative windows

Consistency. Track records are written last and deleted first, and every
loader reconciles the index with them (adding vectors it lacks, dropping
tracks that have no record), so an interrupted enrolment or removal leaves a
database that loads correctly, and the next enrolment finishes the job.
A track key is never reused: vectors of a removed track can never be taken
for a new one.

Live updates. ``FingerprintEngine.refresh()`` checks (a few ``stat`` calls)
whether enrolment or removal changed the database and, if so, loads the new
state and swaps it in atomically; ``score`` works on one consistent snapshot.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...config import AudioParams, FeatureParams, IndexParams, MatchParams, as_dict, from_dict
from ...encoder.artifact import SHIPPED_ENCODER, Encoder, load_encoder, read_encoder_record
from ...errors import ModelError, ParamsMismatch
from .. import EngineScores, catalog
from .index.base import resolve_backend
from .index.open import create_index, load_index
from .match import query_starts, vote
from .stream import stream_votes

log = logging.getLogger(__name__)

NAME = "fingerprint"
CONFIG_FILE = "fingerprint.json"
ENCODER_FILE = "encoder.json"
INDEX_FILE = "index.npz"
QDRANT_SIDECAR = "index.json"
QDRANT_DIR = "qdrant"
CALIBRATION_FILE = "calibration.npy"


@dataclass(frozen=True)
class FingerprintConfig:
    """Contents of ``DB/fingerprint.json``."""

    match: MatchParams
    index: IndexParams
    encoder_sha256: str
    next_key: int = 0

    def to_json(self) -> dict:
        return {"engine": NAME, "match": as_dict(self.match), "index": as_dict(self.index),
                "encoder_sha256": self.encoder_sha256, "next_key": self.next_key}


def read_config(db: Path) -> FingerprintConfig:
    raw = read_json(Path(db) / CONFIG_FILE, "fingerprint configuration")
    try:
        return FingerprintConfig(from_dict(MatchParams, raw["match"]), from_dict(IndexParams, raw["index"]),
                                 str(raw["encoder_sha256"]), int(raw["next_key"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{Path(db) / CONFIG_FILE} is malformed ({exc})") from None


def write_config(db: Path, config: FingerprintConfig) -> None:
    atomic_write_json(Path(db) / CONFIG_FILE, config.to_json())


def init_db(db: Path, *, audio: AudioParams, features: FeatureParams, encoder_path: Path | None = None,
            match: MatchParams = MatchParams(), index: IndexParams = IndexParams()) -> FingerprintConfig:
    """Create a fingerprint database, or check that an existing one fits.

    A new database gets a copy of the encoder (default: the shipped one) and
    the given parameters. An existing one keeps its own; asking for another
    encoder, another enrolment hop or another index backend raises
    ``ParamsMismatch`` (its vectors would not be comparable). Search-time
    settings (top_k, tolerances, nprobe) may differ: the stored ones are used.
    """
    db = Path(db)
    catalog.create_db(db, catalog.DbInfo(NAME, audio, features))
    if (db / CONFIG_FILE).exists():
        config = read_config(db)
        diffs = []
        if encoder_path is not None:
            sha = read_encoder_record(Path(encoder_path))["weights_sha256"]
            if sha != config.encoder_sha256:
                diffs.append(f"encoder {encoder_path} (sha256 {sha[:12]}...) is not the one the database was "
                             f"enrolled with ({config.encoder_sha256[:12]}...)")
        if match.enrol_hop_frames != config.match.enrol_hop_frames:
            diffs.append(f"enrol_hop_frames: saved {config.match.enrol_hop_frames}, requested {match.enrol_hop_frames}")
        if index.backend != "auto" and index.backend != config.index.backend and config.index.backend != "auto":
            diffs.append(f"index backend: saved {config.index.backend!r}, requested {index.backend!r}")
        if diffs:
            raise ParamsMismatch(f"{db} does not fit the requested settings: " + "; ".join(diffs))
        return config
    source = Path(encoder_path) if encoder_path is not None else SHIPPED_ENCODER
    if not source.exists():
        raise ModelError(f"no fingerprint encoder at {source}: train one with tools/train_encoder.py or "
                         "reinstall the package (the weights ship in audiocopy/weights/)")
    encoder = load_encoder(source, audio=audio, features=features)  # refuses a mismatch before copying
    record = dict(encoder.info)
    shutil.copyfile(source.with_name(record["weights_file"]), db / ".tmp-encoder.npz")
    os.replace(db / ".tmp-encoder.npz", db / "encoder.npz")
    record["weights_file"] = "encoder.npz"
    atomic_write_json(db / ENCODER_FILE, record)
    if index.backend == "qdrant" and index.qdrant_collection == IndexParams().qdrant_collection:
        # One collection per database, so several databases can share a Qdrant cluster.
        import uuid

        index = replace(index, qdrant_collection=f"audiocopy-{uuid.uuid4().hex[:12]}")
    config = FingerprintConfig(match, index, encoder.sha256, 0)
    write_config(db, config)
    return config


# --------------------------------------------------------------------------
# tracks


def save_track(db: Path, track_id: str, key: int, vectors: np.ndarray, *, hop_frames: int, encoder_sha256: str,
               duration_s: float, extra: dict | None = None) -> dict:
    """Write one track's vectors, then its record (atomically, in that order)."""
    tracks_dir = Path(db) / catalog.TRACKS_DIR
    base = catalog.track_filename(track_id)
    with atomic_open(tracks_dir / f"{base}.npy") as fh:
        np.save(fh, np.asarray(vectors, dtype=np.float16))
    record = {"track_id": track_id, "engine": NAME, "key": int(key), "vectors_file": f"{base}.npy",
              "n_vectors": int(len(vectors)), "hop_frames": int(hop_frames), "duration_s": round(duration_s, 3),
              "encoder_sha256": encoder_sha256, **(extra or {})}
    atomic_write_json(tracks_dir / f"{base}.json", record)
    return record


def track_vectors(db: Path, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) float32, positions (n,) int64 start frames) of a track record."""
    path = Path(db) / catalog.TRACKS_DIR / record["vectors_file"]
    try:
        vectors = np.load(path).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"track vectors {path} are missing or corrupt ({exc})") from None
    if len(vectors) != record["n_vectors"]:
        raise ModelError(f"track vectors {path} hold {len(vectors)} rows, the record says {record['n_vectors']}")
    return vectors, np.arange(len(vectors), dtype=np.int64) * int(record["hop_frames"])


def _records(db: Path, config: FingerprintConfig) -> list[dict]:
    records = catalog.track_records(db)
    for rec in records:
        if rec.get("engine") != NAME:
            raise ModelError(f"track record {rec['_path']} is not a fingerprint record")
        if rec.get("encoder_sha256") != config.encoder_sha256:
            raise ParamsMismatch(f"track {rec['track_id']!r} was embedded by another encoder "
                                 f"({str(rec.get('encoder_sha256'))[:12]}...); remove and re-enrol it")
    return records


def index_path(db: Path, config: FingerprintConfig) -> Path:
    return Path(db) / (QDRANT_SIDECAR if resolve_backend(config.index) == "qdrant" else INDEX_FILE)


def open_index(db: Path, config: FingerprintConfig, records: list[dict], dim: int, *, writable: bool):
    """The database's index, reconciled with its track records.

    A missing or unreadable index is rebuilt from the track vectors; tracks
    missing from the index are added, tracks without a record are dropped;
    a faiss index that outgrew its structure is rebuilt (only when
    ``writable``: a recognizer must not rewrite the database under an
    enrolment). Returns (index, changed), where ``changed`` says the caller
    should save it.
    """
    db = Path(db)
    path = index_path(db, config)
    qdrant_path = db / QDRANT_DIR
    index, changed = None, False
    if path.exists():
        try:
            index, extra = load_index(path, dim=dim, params=config.index, qdrant_path=qdrant_path)
            if extra.get("encoder_sha256", config.encoder_sha256) != config.encoder_sha256:
                log.warning("%s was built from another encoder's vectors; rebuilding it", path)
                index.close()
                index = None
        except ParamsMismatch:
            raise
        except ModelError as exc:
            log.warning("%s; rebuilding the index from the track vectors", exc)
            index = None
    if index is None:
        index = create_index(dim, config.index, qdrant_path=qdrant_path)
        for key in list(_qdrant_keys(index)):
            index.remove(key)  # a Qdrant collection whose sidecar was lost: start clean
        changed = True
    by_key = {int(r["key"]): r for r in records}
    counts = index.counts()
    for key, n in counts.items():
        if key not in by_key or by_key[key]["n_vectors"] != n:
            index.remove(key)
            changed = True
    missing = [by_key[k] for k in by_key if k not in index.counts()]
    if missing:
        log.info("adding %d track(s) missing from the index", len(missing))
    for rec in missing:
        vectors, positions = track_vectors(db, rec)
        index.add(int(rec["key"]), vectors, positions)
        changed = True
    if writable and getattr(index, "wants_rebuild", lambda: False)():
        log.info("rebuilding the faiss index for %d vectors", len(index))
        index.rebuild((int(r["key"]), *track_vectors(db, r)) for r in records)
        changed = True
    return index, changed


def _qdrant_keys(index) -> list[int]:
    """Track keys present in a fresh Qdrant handle (none for other backends)."""
    if getattr(index, "kind", "") != "qdrant" or len(index) == 0:
        return []
    from .index.base import unpack_ids

    keys, offset = set(), None
    while True:
        points, offset = index.client.scroll(index.collection, limit=4096, offset=offset, with_payload=False)
        keys |= {int(unpack_ids(np.array([int(p.id)]))[0][0]) for p in points}
        if offset is None:
            return sorted(keys)


def save_index(db: Path, config: FingerprintConfig, index) -> None:
    index.save(index_path(db, config), extra={"encoder_sha256": config.encoder_sha256})


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

    def raw_scores(self, features) -> tuple[np.ndarray, np.ndarray, _State]:
        """Uncalibrated vote scores and offsets for a batch of windows.

        features: (batch, frames, bands) from ``features.log_spectrogram``.
        Returns (scores (batch, n_tracks) float32 in [0, 1], track offsets
        (batch, n_tracks) float32 seconds or NaN where a track had no hit,
        the snapshot they refer to).
        """
        state = self._state
        from ...signal.xp import to_numpy

        feats = np.asarray(to_numpy(features), dtype=np.float32)
        b, n_tracks = len(feats), len(state.track_ids)
        scores = np.zeros((b, n_tracks), dtype=np.float32)
        offsets = np.full((b, n_tracks), np.nan, dtype=np.float32)
        if b == 0 or n_tracks == 0:
            return scores, offsets, state
        starts = query_starts(feats.shape[1], frames=self.encoder.params.frames, params=self.match)
        emb = self.encoder.embed_windows(feats, starts)  # (B, S, D)
        k = self.match.top_k
        sims, tracks, positions = state.index.search(emb.reshape(-1, emb.shape[-1]), k)
        votes = vote(starts, tracks.reshape(b, len(starts), k), positions.reshape(b, len(starts), k),
                     sims.reshape(b, len(starts), k), params=self.match)
        self._tabulate(votes, np.arange(b), np.zeros(b), state, scores, offsets)
        return scores, offsets, state

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

    def score_stream(self, windows: np.ndarray, start_samples: np.ndarray, memories: list, *,
                     xp=np) -> EngineScores:
        """Margins for live-stream windows, reusing each stream's earlier work (``fpstream``).

        windows: (batch, window_samples) float32 at ``audio.sample_rate``;
        start_samples: (batch,) int first sample of each window in its
        stream; memories: (batch,) ``StreamMemory`` of each window's stream
        (None: scored on its own); xp: NumPy or CuPy for the FFT.
        Returns margins and track offsets as ``score`` does.
        """
        state = self._state
        b, n_tracks = len(windows), len(state.track_ids)
        scores = np.zeros((b, n_tracks), dtype=np.float32)
        offsets = np.full((b, n_tracks), np.nan, dtype=np.float32)
        if b and n_tracks:
            for rows, leads, votes in stream_votes(self, windows, start_samples, memories, snapshot=state, xp=xp):
                self._tabulate(votes, rows, leads, state, scores, offsets)
        return EngineScores(scores - np.float32(state.threshold), offsets)

    def score(self, features) -> EngineScores:
        """features: (batch, frames, bands) -> margins (batch, n_tracks) and track offsets (s).

        margin = vote score - calibrated threshold (> 0: match at the
        database's target false-positive rate). A track offset is where in
        the track the window starts; NaN for tracks without evidence.
        """
        scores, offsets, state = self.raw_scores(features)
        return EngineScores(scores - np.float32(state.threshold), offsets)

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
    return _State(tuple(r["track_id"] for r in records), lookup, index, threshold, signature)


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
    records = _records(db, config)
    index, changed = open_index(db, config, records, encoder.dim, writable=writable)
    if changed and writable:
        save_index(db, config, index)
    threshold = float(info.calibration.get("threshold", config.match.min_threshold))
    if "threshold" not in info.calibration and records and warn_uncalibrated:
        log.warning("%s is not calibrated: threshold %.3f (enrol with --negatives to calibrate)", db, threshold)
    state = _make_state(db, config, records, index, threshold, signature)
    log.info("loaded %d fingerprint tracks (%d vectors, %s index) from %s", len(records), len(index),
             getattr(index, "structure", getattr(index, "kind", "?")), db)
    return FingerprintEngine(db, audio=info.audio, features=info.features, encoder=encoder, config=config,
                             state=state, calibration=dict(info.calibration))

