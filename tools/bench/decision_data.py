"""Window detections of the stream benchmark, computed once and cached for the offline replay.

Place in ``tools/bench``: the slow half of ``tools/bench_decision.py``.
The stream decision (``audiocopy.decision.stream``) is a pure function of
the detections it is fed, one per window in stream order; the engine, not
the decision, is what costs time. So every window's ``Detection`` is
computed here once, for

* the stream benchmark's programmes through its chains (planned, rendered
  and chained by ``bench_broadcast``'s own steps, so a seed gives exactly
  the audio ``tools/bench_broadcast.py`` streams), and
* the negative streams the play threshold of the database is calibrated
  on, made exactly as ``audiocopy.training.play_calibration`` makes them
  (the same hash-chosen negatives, as they are and through a room),

and stored as compact arrays (``pack``): per window its stream time,
whether it was silent, and its best ``top_k`` candidates (track index,
margin, track offset; NaN: none). Candidates are ranked by margin, so a
cache made with a larger ``top_k`` replays every smaller one exactly.

The windows are scored the way the server and the calibration score them:
``decision.files.FileStream`` (one ``StreamState`` per stream, windows in
stream order, batches of 32) on the file decoded and resampled by
``signal.audio.load_audio`` (soxr, as the server's per-stream resampler).
``bench_decision --check-server`` compares them with the window messages
that ``bench_broadcast`` recorded from the real ``/ws`` path.

Not kept: each window's band profile (what a play's pitch shift is
measured on): the benchmark does not score pitch, and it would make the
cache ten times larger.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .common import BenchError, read_json, write_json

log = logging.getLogger(__name__)

#: Candidates kept per window: every ``DecisionParams.top_k`` up to this replays exactly.
CACHE_TOP_K = 10
#: Bump when what is stored changes (old caches are then recomputed).
CACHE_VERSION = 1


def pack(detections, track_ids: list[str], *, top_k: int = CACHE_TOP_K) -> dict[str, np.ndarray]:
    """Detections as arrays: start (n,), silent (n,), track (n, k) int32 (-1: none), score and offset (n, k)."""
    n = len(detections)
    index = {t: i for i, t in enumerate(track_ids)}
    track = np.full((n, top_k), -1, dtype=np.int32)
    score = np.full((n, top_k), -np.inf, dtype=np.float32)
    offset = np.full((n, top_k), np.nan, dtype=np.float64)
    for i, det in enumerate(detections):
        for j, c in enumerate(det.candidates[:top_k]):
            track[i, j] = index[c.track]
            score[i, j] = c.score
            offset[i, j] = np.nan if c.track_offset_s is None else c.track_offset_s
    return {"start": np.array([d.offset_s or 0.0 for d in detections], dtype=np.float64),
            "silent": np.array([d.silent for d in detections], dtype=bool),
            "track": track, "score": score, "offset": offset}


def unpack(arrays: dict, track_ids: list[str], *, top_k: int | None = None) -> list:
    """``pack``'s arrays back to ``Detection``s (as ``detection.decide_window`` makes them), ``top_k`` kept."""
    from audiocopy.decision.detection import Candidate, Detection

    k = arrays["track"].shape[1] if top_k is None else top_k
    if k > arrays["track"].shape[1]:
        raise BenchError(f"top_k {k} asked of a cache that kept {arrays['track'].shape[1]} candidates")
    out = []
    for start, silent, tr, sc, of in zip(arrays["start"].tolist(), arrays["silent"].tolist(),
                                         arrays["track"][:, :k].tolist(), arrays["score"][:, :k].tolist(),
                                         arrays["offset"][:, :k].tolist()):
        cands = tuple(Candidate(track_ids[t], s, None if math.isnan(o) else o) for t, s, o in zip(tr, sc, of) if t >= 0)
        if not cands:
            out.append(Detection(None, float("-inf"), start, silent=silent))
            continue
        best = cands[0]
        matched = best.score > 0
        out.append(Detection(best.track if matched else None, best.score, start, cands,
                             best.track_offset_s if matched else None, silent))
    return out


# --- computing -------------------------------------------------------------


def open_recognizer(db: Path):
    """The database's recognizer on NumPy with ``CACHE_TOP_K`` candidates per window (the server's engine path)."""
    from audiocopy.config import DecisionParams
    from audiocopy.decision.recognizer import Recognizer

    return Recognizer.open(Path(db), xp=np, params=DecisionParams(top_k=CACHE_TOP_K))


def _file_key(path: Path) -> dict:
    st = Path(path).stat()
    return {"path": str(path), "size": st.st_size, "mtime": round(st.st_mtime, 3)}


def db_key(db: Path) -> dict:
    """What identifies the database's answers: its metadata and the size and time of its index files."""
    db = Path(db)
    files = sorted(p for p in db.iterdir() if p.is_file())
    return {"db": str(db), "files": [[p.name, p.stat().st_size, round(p.stat().st_mtime, 3)] for p in files]}


def cached_detections(recognizer, signal_fn, cache: Path, key: dict) -> dict:
    """``pack``'d detections of the signal ``signal_fn()`` gives, from ``cache`` (npz) when ``key`` matches.

    Returns the arrays plus ``seconds`` (the signal's length) and ``compute_s``.
    """
    from audiocopy.decision.files import FileStream

    meta = cache.with_suffix(".json")
    key = {**key, "version": CACHE_VERSION, "top_k": CACHE_TOP_K}
    old = read_json(meta, {})
    if cache.is_file() and old.get("key") == key:
        with np.load(cache) as z:
            return {**{k: z[k] for k in z.files}, "seconds": old["seconds"], "compute_s": old["compute_s"]}
    t0 = time.perf_counter()
    signal = signal_fn()
    stream = FileStream(recognizer, signal, threshold=float("inf"), source="bench-decision")
    while stream.step():
        pass
    arrays = pack(stream.detections, recognizer.track_ids)
    seconds = signal.size / recognizer.audio.sample_rate
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(cache)
    compute_s = round(time.perf_counter() - t0, 1)
    write_json(meta, {"key": key, "seconds": seconds, "compute_s": compute_s, "windows": len(stream.detections)})
    log.info("detections of %s: %d windows of %.1f min in %.0f s", cache.stem, len(stream.detections),
             seconds / 60, compute_s)
    return {**arrays, "seconds": seconds, "compute_s": compute_s}


def calibration_negatives(broadcast_work: Path, engine: str, db: Path) -> list[Path]:
    """The negative tracks enrolment gave ``calibrate_play_threshold`` for ``engine``'s benchmark database ``db``.

    fingerprint: the wrong tracks its encoder never trained on
    (``audiocopy enroll --negatives``, ``calibration_windows.play_negatives``);
    cnnbin: its dataset's calibration hold-out only (``bench.enrol.enrol_cnnbin``:
    its heads trained against the other wrong tracks).
    """
    from audiocopy.errors import DatasetError
    from audiocopy.training.calibration_windows import play_negatives
    from audiocopy.training.dataset import Dataset
    from audiocopy.training.sources import list_audio

    if engine == "fingerprint":
        return play_negatives(db, list_audio(Path(broadcast_work) / "wrong")).files
    try:
        held = [Path(s.path) for s in Dataset(Path(broadcast_work) / "dataset").calibration_sources()]
    except DatasetError:
        held = []
    if not held:
        raise BenchError(f"{broadcast_work}/dataset names no calibration hold-out: run tools/bench_broadcast.py "
                         f"--engine {engine} first")
    return held


def negative_files(files: list[Path], count: int | None = None) -> list[Path]:
    """The negatives ``play_calibration`` plays of ``files``, in its order.

    count: how many (default ``play_calibration.MAX_TRACKS``, what enrolment
    plays today). The order is a hash of each track id, so a larger count
    extends a smaller one and its caches are reused.
    """
    from audiocopy.training.play_calibration import MAX_TRACKS
    from audiocopy.training.sources import stable_seed

    return sorted(files, key=lambda f: stable_seed("play-calibration-order", f.stem))[:count or MAX_TRACKS]


def negative_detections(recognizer, db: Path, files: list[Path], work: Path, count: int | None = None) -> list[dict]:
    """Detections of every calibration negative stream (each file as it is, then through its room).

    Made by ``play_calibration.negative_streams`` itself, one file at a time
    (its room chain is seeded by the file's track id alone), so the streams
    are the calibration's, sample for sample. Returns one dict per stream,
    ``cached_detections``' arrays plus ``name``; files, count: as
    ``negative_files`` (``calibration_negatives`` gives enrolment's files).
    """
    from audiocopy.training.play_calibration import negative_streams

    dkey = db_key(db)
    out = []
    for path in negative_files(files, count):
        made: list[np.ndarray] = []  # the file's two streams, made only when a cache is missing

        def signal_fn(variant: int, path=path, made=made) -> np.ndarray:
            if not made:
                made.extend(negative_streams([path], audio=recognizer.audio))
                if len(made) != 2:
                    raise BenchError(f"negative {path} could not be decoded")
            return made[variant]

        for variant, label in enumerate(("plain", "room")):
            cache = Path(work) / "negatives" / f"{path.stem}.{label}.npz"
            key = {"db": dkey, "file": _file_key(path), "variant": label}
            arrays = cached_detections(recognizer, lambda v=variant: signal_fn(v), cache, key)
            out.append({"name": f"{path.stem}.{label}", **arrays})
    return out


def programme_detections(recognizer, db: Path, wav: Path, work: Path, name: str) -> dict:
    """Detections of one chained programme WAV (decoded and resampled as the server does), cached as ``name``."""
    from audiocopy.signal.audio import load_audio

    key = {"db": db_key(db), "file": _file_key(wav)}
    return cached_detections(recognizer, lambda: load_audio(wav, params=recognizer.audio),
                             Path(work) / "programmes" / f"{name}.npz", key)


# --- programmes ------------------------------------------------------------


def programmes(corpus: Path, broadcast_work: Path, work: Path, *, seed: int, chains: list[str], count: int = 4,
               minutes: float = 40.0) -> tuple[list, dict]:
    """Plans and chained WAVs of one seed, made by ``bench_broadcast``'s own steps; (plans, {chain: {name: wav}}).

    The split (hence the catalogue) is always ``broadcast_work``'s, the one
    the database was enrolled from; the seed draws the programmes, the
    presenter, the babble and the chains. Seed 0's audio is
    ``bench_broadcast``'s (``broadcast_work/programmes``, reused when its
    render keys match); any other seed's lives under ``work/seed<N>``.
    """
    import shutil

    import bench_broadcast as bb

    from .corpus import read_corpus
    from .external import check_tools

    split = read_json(Path(broadcast_work) / "split.json")
    if not split:
        raise BenchError(f"{broadcast_work}/split.json is missing: run tools/bench_broadcast.py first")
    folder = Path(broadcast_work) if seed == 0 else Path(work) / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    audible = Path(broadcast_work) / "audible.json"
    if folder != Path(broadcast_work) and audible.is_file() and not (folder / "audible.json").is_file():
        shutil.copy(audible, folder / "audible.json")  # a cache of track spans, keyed per file
    tools = check_tools(need_speech=True)
    tracks = read_corpus(Path(corpus))
    args = SimpleNamespace(work=folder, seed=seed, programmes=count, minutes=minutes, chains=chains)
    plans, clean, _ = bb.make_programmes(args, split, tracks, tools)
    chained, _ = bb.make_chains(args, plans, clean, tools)
    return plans, {c: {p.name: Path(chained[c][p.name]["wav"]) for p in plans} for c in chains}
