"""Which audio files play which role: listing a folder, the calibration hold-out, stable seeds.

Place in the pipeline: under every offline step that picks tracks (the
cnnbin dataset, fingerprint enrolment's calibration, the encoder's training
set, the benchmarks). Roles must be the same for the same track everywhere
and on every machine, so they come from a hash of the track id, never from
file order or a random generator:

* a fifth of the "wrong" (negative) tracks, by hash, is held out: no model
  is trained on them, and every threshold is set on them, so each
  false-positive rate is measured on music the models have not seen;
* per-track random draws are seeded from the track id, so a dataset shard
  or a training view rebuilt later is bit-identical.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DatasetError
from ..signal.audio import is_audio_file

#: Share of negative tracks held out for calibration (by hash of the track id).
CALIBRATION_SHARE = 0.2


def stable_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def stable_seed(*parts) -> int:
    """A deterministic 48-bit seed from any parts (joined by ":")."""
    return int(hashlib.sha1(":".join(map(str, parts)).encode("utf-8")).hexdigest()[:12], 16)


def is_calibration_track(track_id: str) -> bool:
    """True for the held-out fifth of negative tracks that thresholds are set on."""
    return stable_fraction("split:" + track_id) < CALIBRATION_SHARE


def list_audio(folder: Path) -> list[Path]:
    """Audio files directly inside ``folder``, sorted; ``DatasetError`` if the folder is missing or two share a track id (file stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_audio_file(p))
    stems = [p.stem for p in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DatasetError(f"{folder}: several files share the track id(s) {dupes}; track id = file stem")
    return files
