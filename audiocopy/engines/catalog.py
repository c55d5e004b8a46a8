"""The recognizer database on disk: what engine, which parameters, which tracks.

Place in the pipeline: the storage layer under the engines. A database
(``--db DB``) is a directory::

    DB/db.json                 engine name, format version, audio and
                               feature parameters (the contract every
                               artifact inside was built against)
    DB/tracks/<file>.json      one record per enrolled track (engine-specific
    DB/tracks/<file>.keras     payload beside it, e.g. the cnnbin model)
    DB/generation.json         the generation stamp (below)

Track ids are file stems chosen by users, so they are never used as file
names directly: ``track_filename`` derives a safe, unique name from them.
Every write goes to a temporary file first and is renamed into place, so a
crash or Ctrl-C never leaves a half-written artifact that looks finished.

Generation stamp. Every change of the catalogue made through this module
(a new database, a track removed, the calibration rewritten, which is the
last step of every enrolment and removal) bumps ``generation.json``: a
counter and a random token, written atomically. A server holding the
database open reads that one small file every few seconds
(``read_generation``) and reloads when it differs from what it loaded, so a
CLI ``enroll`` or ``remove`` on a live server's database is seen without a
restart. The token makes two writers that raced to the same counter still
leave a stamp that differs from both of their starting points.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..atomic_files import atomic_write_json, read_json
from ..config import AudioParams, FeatureParams, as_dict, check_compatible, from_dict
from ..errors import ModelError, ParamsMismatch

DB_FILE = "db.json"
TRACKS_DIR = "tracks"
GENERATION_FILE = "generation.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DbInfo:
    """Contents of ``db.json``."""

    engine: str
    audio: AudioParams
    features: FeatureParams
    format_version: int = FORMAT_VERSION
    #: Engine-owned, catalogue-wide calibration (e.g. cnnbin's score offset).
    calibration: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "engine": self.engine,
            "audio": as_dict(self.audio),
            "features": as_dict(self.features),
            "calibration": self.calibration,
        }


def track_filename(track_id: str) -> str:
    """A file-system-safe, collision-free base name for a track id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", track_id).strip("._")[:60] or "track"
    digest = hashlib.sha1(track_id.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


def create_db(db: Path, info: DbInfo) -> None:
    """Create an empty database, or check an existing one is compatible.

    Raises ``ParamsMismatch`` when ``db`` already holds a database built for
    another engine or other parameters: mixing them would silently corrupt
    every score.
    """
    db = Path(db)
    if (db / DB_FILE).exists():
        existing = open_db(db)
        diffs = []
        if existing.engine != info.engine:
            diffs.append(f"engine: saved {existing.engine!r}, requested {info.engine!r}")
        diffs += check_compatible(existing.audio, info.audio, "audio")
        diffs += check_compatible(existing.features, info.features, "features")
        if diffs:
            raise ParamsMismatch(f"{db} was built with other settings: " + "; ".join(diffs))
        return
    (db / TRACKS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_json(db / DB_FILE, info.to_json())
    bump_generation(db)


def open_db(db: Path) -> DbInfo:
    """Read and validate ``db.json``; ``ModelError`` if absent or malformed."""
    db = Path(db)
    if not db.is_dir():
        raise ModelError(f"recognizer database not found: {db} (build one with `audiocopy enroll`)")
    raw = read_json(db / DB_FILE, "recognizer database")
    try:
        version = int(raw["format_version"])
        if version != FORMAT_VERSION:
            raise ModelError(f"{db}: database format {version} is not supported (expected {FORMAT_VERSION})")
        return DbInfo(
            engine=str(raw["engine"]),
            audio=from_dict(AudioParams, raw["audio"]),
            features=from_dict(FeatureParams, raw["features"]),
            format_version=version,
            calibration=dict(raw.get("calibration") or {}),
        )
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{db / DB_FILE} is malformed ({exc})") from None


def set_calibration(db: Path, calibration: dict) -> DbInfo:
    """Replace the catalogue-wide calibration in ``db.json`` (atomically)."""
    info = replace(open_db(db), calibration=calibration)
    atomic_write_json(Path(db) / DB_FILE, info.to_json())
    bump_generation(db)
    return info


def track_records(db: Path) -> list[dict]:
    """All track records (the ``tracks/*.json`` files), sorted by track id."""
    records = []
    for path in sorted((Path(db) / TRACKS_DIR).glob("*.json")):
        rec = read_json(path, "track record")
        if not isinstance(rec, dict) or "track_id" not in rec:
            raise ModelError(f"track record {path} is malformed (no track_id)")
        rec["_path"] = str(path)
        records.append(rec)
    return sorted(records, key=lambda r: r["track_id"])


def remove_track(db: Path, track_id: str) -> bool:
    """Delete every file of one track; True if it was enrolled."""
    base = Path(db) / TRACKS_DIR / track_filename(track_id)
    found = False
    # The record goes first: without it the payload is ignored by loaders.
    for path in [base.with_suffix(".json"), *sorted(base.parent.glob(base.name + ".*"))]:
        if path.exists():
            path.unlink()
            found = True
    if found:
        bump_generation(db)
    return found


@dataclass(frozen=True)
class Generation:
    """A catalogue's generation stamp (``generation.json``); compare whole stamps, not only ``number``.

    number: how many changes were recorded (0: none, or a database made
    before stamps existed); token: random per change; changed_at: Unix time.
    """

    number: int = 0
    token: str = ""
    changed_at: float = 0.0

    def to_json(self) -> dict:
        return {"generation": self.number, "token": self.token, "changed_at": self.changed_at}


def read_generation(db: Path) -> Generation:
    """The stamp of ``db`` (one small read). A database without a stamp file reads as ``Generation()``.

    Raises ``ModelError`` when the file exists but is malformed.
    """
    path = Path(db) / GENERATION_FILE
    if not path.exists():
        return Generation()
    raw = read_json(path, "catalogue generation stamp")
    try:
        return Generation(int(raw["generation"]), str(raw["token"]), float(raw.get("changed_at", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is malformed ({exc})") from None


def bump_generation(db: Path) -> Generation:
    """Record that the catalogue in ``db`` changed (atomic write); returns the new stamp.

    A malformed stamp file is replaced (counting restarts at 1): the stamp
    only has to differ from what a reader saw before.
    """
    try:
        number = read_generation(db).number
    except ModelError:
        number = 0
    stamp = Generation(number + 1, uuid.uuid4().hex[:16], round(time.time(), 3))
    atomic_write_json(Path(db) / GENERATION_FILE, stamp.to_json())
    return stamp
