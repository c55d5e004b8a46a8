"""A fingerprint database on disk: configuration, encoder copy, track vectors, index.

Place in the pipeline: under ``engines.fingerprint.engine`` (which loads it)
and ``training.enroll_fingerprint`` (which writes it). ``engines.catalog``
owns ``db.json`` and ``tracks/``; this module owns the rest::

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
    DB/tracks/<f>.levels.npy  its band levels every hop (dB, float16): the
                            long-term spectrum a play's pitch is measured on
    DB/index.npz            faiss/NumPy index (derived; rebuilt from the track
                            vectors whenever it is missing or out of step)
    DB/index.json + qdrant/ the same for the Qdrant backend (local mode)
    DB/index.json           the same for the Milvus backend, whose vectors
                            live in a collection on the server (its URI and
                            collection name are in fingerprint.json)
    DB/calibration_levels.npy  band levels (dB) of held-out negative windows

Consistency. Track records are written last and deleted first, and every
loader reconciles the index with them (adding vectors it lacks, dropping
tracks that have no record), so an interrupted enrolment or removal leaves a
database that loads correctly, and the next enrolment finishes the job. A
track key is never reused: vectors of a removed track can never be taken for
a new one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...config import AudioParams, FeatureParams, IndexParams, MatchParams, as_dict, from_dict
from ...encoder.artifact import SHIPPED_ENCODER, copy_encoder, load_encoder, read_encoder_record
from ...errors import ConfigError, ModelError, ParamsMismatch
from .. import catalog
from .index.base import SIDECAR_BACKENDS, resolve_backend
from .index.open import create_index, load_index

log = logging.getLogger(__name__)

NAME = "fingerprint"
CONFIG_FILE = "fingerprint.json"


ENCODER_FILE = "encoder.json"


INDEX_FILE = "index.npz"


QDRANT_SIDECAR = "index.json"


QDRANT_DIR = "qdrant"


#: Band levels of held-out negative windows (``calibration.npy`` in databases
#: made before band levels were stored: ignored, remade from ``--negatives``).
CALIBRATION_FILE = "calibration_levels.npy"


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


#: Match settings a database written before they existed reads as: the values that reproduce
#: the scores its threshold was calibrated on (a new database gets ``MatchParams``' defaults).
LEGACY_MATCH = {"density_weight": 0.0, "fpr_confidence": 0.0}

#: Match settings that only change how search hits are voted on and how the threshold is read
#: off the negatives, not the stored vectors: a database can adopt this version's values and be
#: recalibrated without re-embedding anything (``audiocopy enroll --update-vote``).
VOTE_FIELDS = ("density_weight", "density_k", "fpr_confidence")


def vote_settings(match: MatchParams) -> dict:
    """``match``'s ``VOTE_FIELDS`` by name."""
    return {f: getattr(match, f) for f in VOTE_FIELDS}


def read_config(db: Path) -> FingerprintConfig:
    raw = read_json(Path(db) / CONFIG_FILE, "fingerprint configuration")
    try:
        match = {**LEGACY_MATCH, **raw["match"]}
        return FingerprintConfig(from_dict(MatchParams, match), from_dict(IndexParams, raw["index"]),
                                 str(raw["encoder_sha256"]), int(raw["next_key"]))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
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
    if index.backend == "milvus" and not index.milvus_uri and not (db / CONFIG_FILE).exists():
        raise ConfigError("the milvus index backend needs the server's URI (--milvus-uri http://HOST:19530)")
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
    copy_encoder(source, db, name=Path(ENCODER_FILE).stem)
    index = _unique_collection(index)
    config = FingerprintConfig(match, index, encoder.sha256, 0)
    write_config(db, config)
    return config


def _unique_collection(index: IndexParams) -> IndexParams:
    """One collection per database, so several databases can share one Qdrant or Milvus cluster."""
    import uuid

    tag = uuid.uuid4().hex[:12]
    if index.backend == "qdrant" and index.qdrant_collection == IndexParams().qdrant_collection:
        return replace(index, qdrant_collection=f"audiocopy-{tag}")
    if index.backend == "milvus" and index.milvus_collection == IndexParams().milvus_collection:
        return replace(index, milvus_collection=f"audiocopy_{tag}")  # Milvus names allow no hyphen
    return index


def coarse_levels(band_db: np.ndarray, hop_frames: int) -> np.ndarray:
    """A track's band levels averaged over blocks of ``hop_frames`` frames: (n_blocks, bands) float16 dB.

    band_db: (n_frames, bands) from ``signal.features.track_band_db``. Kept
    with the track so a play's long-term spectrum can be compared with the
    part of the track it matched (a pitch shift moves it along the bands);
    at 0.256 s a block, three minutes are ~100 kB.
    """
    n = len(band_db) // hop_frames
    return band_db[:n * hop_frames].reshape(n, hop_frames, -1).mean(axis=1).astype(np.float16)


def save_track(db: Path, track_id: str, key: int, vectors: np.ndarray, *, hop_frames: int, encoder_sha256: str,
               duration_s: float, levels: np.ndarray | None = None, extra: dict | None = None) -> dict:
    """Write one track's vectors (and coarse levels), then its record (atomically, in that order)."""
    tracks_dir = Path(db) / catalog.TRACKS_DIR
    base = catalog.track_filename(track_id)
    with atomic_open(tracks_dir / f"{base}.npy") as fh:
        np.save(fh, np.asarray(vectors, dtype=np.float16))
    if levels is not None:
        with atomic_open(tracks_dir / f"{base}.levels.npy") as fh:
            np.save(fh, np.asarray(levels, dtype=np.float16))
        extra = {**(extra or {}), "levels_file": f"{base}.levels.npy"}
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


def checked_records(db: Path, config: FingerprintConfig) -> list[dict]:
    records = catalog.track_records(db)
    for rec in records:
        if rec.get("engine") != NAME:
            raise ModelError(f"track record {rec['_path']} is not a fingerprint record")
        if rec.get("encoder_sha256") != config.encoder_sha256:
            raise ParamsMismatch(f"track {rec['track_id']!r} was embedded by another encoder "
                                 f"({str(rec.get('encoder_sha256'))[:12]}...); remove and re-enrol it")
    return records


def index_path(db: Path, config: FingerprintConfig) -> Path:
    return Path(db) / (QDRANT_SIDECAR if resolve_backend(config.index) in SIDECAR_BACKENDS else INDEX_FILE)


def open_index(db: Path, config: FingerprintConfig, records: list[dict], dim: int, *, writable: bool):
    """The database's index, reconciled with its track records.

    A missing or unreadable index is rebuilt from the track vectors; tracks
    missing from the index are added, tracks without a record are dropped;
    a faiss or Milvus index that outgrew its structure is rebuilt (only when
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
        if getattr(index, "kind", "") == "milvus" and len(index):
            index.clear()  # a Milvus collection whose sidecar was lost: start clean
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
        log.info("rebuilding the %s index for %d vectors", getattr(index, "kind", "vector"), len(index))
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
