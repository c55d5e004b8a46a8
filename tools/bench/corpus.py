"""The corpus: its manifest, its tracks, and the folders a split is laid out in.

Place in ``tools/bench``: the first step of the accuracy benchmark. A corpus
is a folder of mono WAV tracks with ``manifest-dev.tsv`` (columns file,
package, version, kind, license, seconds, path): the dev corpus holds 186
tracks from 19 Debian packages of game music. A track's id is its file
stem (as everywhere in audiocopy); its package is what the split keeps
apart, because tracks of one package share a composer, instruments and a
sound, and a benchmark that enrols one and trains on its sibling measures
less than it claims.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError

log = logging.getLogger(__name__)

MANIFEST = "manifest-dev.tsv"
#: A half second quieter than this far below the track's loudest half second, or digital zero, is silence.
SILENCE_BELOW_PEAK_DB = 50.0
#: Roles laid out as folders of symlinks under the work folder (what enrolment reads).
ROLE_FOLDERS = ("catalog", "wrong", "unseen")


@dataclass(frozen=True)
class Track:
    """One corpus track.

    id: file stem; package: the Debian package it came from; wav: absolute
    path; rate: sample rate (Hz); duration: seconds.
    """

    id: str
    file: str
    package: str
    wav: str
    rate: int
    duration: float


def read_manifest(corpus: Path) -> list[dict]:
    """Rows of ``CORPUS/manifest-dev.tsv`` (no audio is read); ``BenchError`` if it is missing or lacks columns."""
    path = Path(corpus) / MANIFEST
    if not path.is_file():
        raise BenchError(f"{path} not found: --corpus must be a folder of WAV tracks with {MANIFEST}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise BenchError(f"{path} lists no tracks")
    missing = [c for c in ("file", "package") if c not in rows[0]]
    if missing:
        raise BenchError(f"{path} has no {' or '.join(repr(c) for c in missing)} column")
    return rows


def read_corpus(corpus: Path) -> list[Track]:
    """Every manifest track whose WAV exists, sorted by file name, with its rate and duration.

    Raises ``BenchError`` when files are missing, two rows share a track id,
    or the corpus mixes sample rates (the queries are cut at the corpus rate).
    """
    import soundfile as sf

    corpus = Path(corpus)
    tracks, missing = [], []
    for row in read_manifest(corpus):
        wav = corpus / row["file"]
        if not wav.is_file():
            missing.append(row["file"])
            continue
        info = sf.info(str(wav))
        tracks.append(Track(Path(row["file"]).stem, row["file"], row["package"].strip() or "?",
                            str(wav.resolve()), int(info.samplerate), info.frames / info.samplerate))
    if missing:
        raise BenchError(f"{len(missing)} files of {corpus / MANIFEST} are missing, e.g. {missing[:3]}")
    ids = [t.id for t in tracks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise BenchError(f"{corpus / MANIFEST}: several files share the track id(s) {dupes[:5]}")
    rates = sorted({t.rate for t in tracks})
    if len(rates) != 1:
        raise BenchError(f"the corpus mixes sample rates {rates}; convert it to one rate first")
    return sorted(tracks, key=lambda t: t.file)


def lay_out_split(work: Path, split: dict, by_id: dict[str, Track]) -> None:
    """Symlink each role's tracks into ``WORK/<role>/`` (the folders enrolment reads).

    Only links this function made are ever removed (a role that shrank);
    other files in those folders are left alone.
    """
    for role in ROLE_FOLDERS:
        folder = Path(work) / role
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {Path(by_id[t].wav).name: by_id[t].wav for t in split[role]}
        for link in folder.iterdir():
            if link.name not in wanted and link.is_symlink():
                link.unlink()
        for name, target in wanted.items():
            link = folder / name
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to(target)


def audible_span(wav: str) -> tuple[float, float]:
    """(first, last) second of a track that is not silence (``SILENCE_BELOW_PEAK_DB``), by half seconds.

    Why relative to the track's own loudest half second: the benchmark
    peak-normalises every query, so only digital silence and fades into it
    make a fragment that carries nothing (some module renders end in a
    minute of zeros), while a track mastered very quietly is still music.
    """
    import numpy as np
    import soundfile as sf

    x, rate = sf.read(wav, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    step = rate // 2
    n = len(x) // step
    if n == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(x[:n * step].reshape(n, step).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero((rms > 0) & (rms >= rms.max() * 10 ** (-SILENCE_BELOW_PEAK_DB / 20)))
    if loud.size == 0:
        return 0.0, 0.0
    return float(loud[0] * step / rate), float((loud[-1] + 1) * step / rate)


def audible_spans(tracks: list[Track], cache: Path) -> dict[str, tuple[float, float]]:
    """``audible_span`` of every track, cached in ``cache`` (JSON) per track file and size."""
    from .common import read_json, write_json

    known = read_json(cache, {})
    out, changed = {}, False
    for t in tracks:
        key = f"{t.wav}:{os.path.getsize(t.wav)}"
        if key not in known:
            known[key] = list(audible_span(t.wav))
            changed = True
        out[t.id] = tuple(known[key])
    if changed:
        write_json(cache, known)
    return out
