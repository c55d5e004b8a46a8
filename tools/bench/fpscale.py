"""The fingerprint engine's cost and index memory by catalogue size (``tools/bench_fingerprint.py``'s scale step).

Place in ``tools/bench``: used by ``tools/bench_fingerprint.py`` (scale and
server-db steps). Beyond the corpus, tracks are *distorted copies* of it:
each copy is a corpus track played at another speed (soxr resampling,
factors spread over 0.85-1.15 without 1.0, so pitch and tempo both move)
with white noise at 30 dB, embedded through the same path as enrolment.
The copies only fill the index (they are never test queries), so they may
use ``audiocopy.training.augment``. The queries are clean 2.5 s windows of
corpus tracks; the timing covers the whole engine (features, sub-window
embeddings, top-k search, offset vote) at batch 1 (latency) and batch 32
(throughput), and a live batch: 32 streams of consecutive windows, one
window of each per call, each stream with its ``StreamState``.

Timings: every size once per round, ``ROUNDS`` rounds; each figure is the
best round's median. Other processes on a shared machine only ever make a
round slower, so the best round is the closest to what this machine does
alone; all rounds are kept in the JSON.
"""
from __future__ import annotations

import datetime
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .common import BenchError, read_json, write_json
from .machine import busy_cores, median_ms

log = logging.getLogger(__name__)

SIZES = (100, 1000, 10000)
COPY_SNR_DB = 30.0
ROUNDS = 3


def rss_mib() -> float:
    """This process's resident memory (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def copy_vectors(corpus: Path, work: Path, n_copies: int, encoder, hop: int) -> list[tuple[int, np.ndarray]]:
    """(source index, vectors (n, dim) float16) of ``n_copies`` speed-changed, noisy copies of the corpus tracks.

    Copies are interleaved over the sources (the first ``len(corpus)`` copies
    are one of each track, and so on), so every catalogue size holds copies
    of every source rather than dozens of one. Cached per source under
    ``WORK/copies``.
    """
    from tqdm import tqdm

    from audiocopy.config import AudioParams, FeatureParams
    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.features import track_band_db
    from audiocopy.training import augment
    from audiocopy.training.sources import list_audio

    audio, features = AudioParams(), FeatureParams()
    files = list_audio(corpus)
    per_track = -(-n_copies // len(files))
    factors = np.linspace(0.85, 1.15, per_track + 1)
    factors = factors[np.abs(factors - 1.0) > 1e-3][:per_track]
    out_dir = Path(work) / "copies"
    out_dir.mkdir(parents=True, exist_ok=True)
    by_source = []
    for i, path in enumerate(tqdm(files, desc="copies", unit="source")):
        cached = out_dir / f"{i:04d}-{len(factors)}.npz"
        if cached.exists():
            with np.load(cached) as z:
                by_source.append([z[f"c{j}"] for j in range(len(factors))])
            continue
        signal = load_audio(path, params=audio)

        def levels(j):
            x = augment.speed_change(signal, float(factors[j]), sample_rate=audio.sample_rate)
            x = augment.add_noise(x, COPY_SNR_DB, np.random.default_rng([i, j]))
            return track_band_db(x, audio=audio, features=features)

        chunk = {}
        # soxr and the FFT release the GIL: two threads keep both cores busy between encoder calls.
        with ThreadPoolExecutor(2) as pool:
            for j, band_db in enumerate(pool.map(levels, range(len(factors)))):
                chunk[f"c{j}"] = encoder.embed_track(band_db, hop_frames=hop).astype(np.float16)
        np.savez(cached, **chunk)
        by_source.append(list(chunk.values()))
    # Factor order alternates around 1.0 outwards, so small catalogues get the mildest copies.
    order = np.argsort(np.abs(factors - 1.0), kind="stable")
    return [(i, by_source[i][j]) for j in order for i in range(len(files))][:n_copies]


def corpus_windows(corpus: Path, n: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """``n`` clean 2.5 s windows (n, window_samples) of corpus tracks and the index of each one's source."""
    from audiocopy.config import AudioParams
    from audiocopy.signal.audio import load_audio
    from audiocopy.training.sources import list_audio

    audio = AudioParams()
    files = list_audio(corpus)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), size=n, replace=len(files) < n)
    windows = []
    for i in picks:
        sig = load_audio(files[i], params=audio)
        hi = max(audio.sample_rate + 1, sig.size - audio.window_samples - audio.sample_rate)
        lo = int(rng.integers(audio.sample_rate, hi))
        windows.append(sig[lo:lo + audio.window_samples])
    return np.stack(windows).astype(np.float32), [int(i) for i in picks]


def live_streams(corpus: Path, n_streams: int, n_windows: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive windows of ``n_streams`` corpus tracks, as a live server receives them.

    Returns one (windows (n_streams, window_samples), starts_s (n_streams,))
    per step: step i holds every stream's i-th window (0.5 s after the last).
    """
    from audiocopy.config import AudioParams
    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.windows import cut_windows
    from audiocopy.training.sources import list_audio

    audio = AudioParams()
    files = list_audio(corpus)
    rng = np.random.default_rng(seed)
    per_stream = []
    for i in rng.choice(len(files), size=n_streams, replace=len(files) < n_streams):
        sig = load_audio(files[i], params=audio)
        need = audio.window_samples + (n_windows - 1) * audio.hop_samples
        sig = np.resize(sig, max(sig.size, need))  # a short track loops
        lo = int(rng.integers(0, sig.size - need + 1))
        per_stream.append(cut_windows(sig[lo:lo + need], audio=audio))
    return [(np.stack([w[j] for w, _ in per_stream]), np.array([t[j] for _, t in per_stream]))
            for j in range(n_windows)]


def live_ms(recognizer, steps: list, warm: int = 2) -> float:
    """Median ms per window of a batch of live streams (one window of each per call).

    A fresh ``StreamState`` per stream; the first ``warm`` steps fill the
    caches (a stream's first window costs like an independent one) and are
    not timed.
    """
    states = [recognizer.new_stream_state() for _ in range(len(steps[0][0]))]
    times = []
    for j, (windows, starts) in enumerate(steps):
        t0 = time.perf_counter()
        recognizer.detect_windows(windows, starts, states)
        if j >= warm:
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)) / len(states)


def build_engine(base, vecs: list[np.ndarray], ids: list[str]) -> dict:
    """A fingerprint engine over a fresh default index of ``vecs``, sharing ``base``'s encoder and settings."""
    from audiocopy.config import IndexParams
    from audiocopy.engines.fingerprint.index.open import create_index

    rss0, t0 = rss_mib(), time.perf_counter()
    index = create_index(base.encoder.dim, IndexParams())
    hop = base.match.enrol_hop_frames
    tracks = [(k, v.astype(np.float32), np.arange(len(v)) * hop) for k, v in enumerate(vecs)]
    if sum(len(v) for v in vecs) > index.params.flat_max_vectors:
        index.rebuild(tracks)
    else:
        for k, v, p in tracks:
            index.add(k, v, p)
    build_s = time.perf_counter() - t0
    return {"index": index, "engine": engine_over(base, index, ids), "build_s": build_s,
            "index_mib": index.memory_bytes() / 2**20, "rss_mib": rss_mib() - rss0}


def engine_over(base, index, ids: list[str]):
    """A fingerprint engine over ``index`` (track key k is ``ids[k]``), sharing ``base``'s encoder and settings."""
    from audiocopy.engines.fingerprint import engine as fp

    # Track key k is column k of the margins.
    # No levels files: the synthetic catalogue has no audio to refine an answer against.
    state = fp._State(tuple(ids), np.arange(len(ids), dtype=np.int64), index, base.threshold, (), {})
    return fp.FingerprintEngine(base.db, audio=base.audio, features=base.features, encoder=base.encoder,
                                config=base.config, state=state, calibration={})


def time_round(b: dict, windows: np.ndarray, steps: list, base) -> dict:
    """One round of timings (ms per window) of one catalogue size: whole engine and its parts."""
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.engines.fingerprint.match import query_starts, vote
    from audiocopy.signal.features import log_spectrogram

    engine, index = b["engine"], b["index"]
    audio, features, k = engine.audio, engine.features, base.match.top_k
    recognizer = Recognizer(engine)
    feats = log_spectrogram(windows[:32], audio=audio, params=features)
    starts = query_starts(feats.shape[1], frames=engine.encoder.params.frames, params=base.match)
    emb = engine.encoder.embed_windows(feats, starts).reshape(-1, engine.encoder.dim)
    sims, trk, pos = index.search(emb, k)
    shape = (32, len(starts), k)
    return {"busy_cores": busy_cores(0.5),
            "window_b1_ms": median_ms(lambda: recognizer.detect_windows(windows[:1]), 40),
            "window_b32_ms": median_ms(lambda: recognizer.detect_windows(windows[:32]), 8) / 32,
            "live_b32_ms": live_ms(recognizer, steps),
            "features_b32_ms": median_ms(lambda: log_spectrogram(windows[:32], audio=audio, params=features), 8) / 32,
            "encoder_b32_ms": median_ms(lambda: engine.encoder.embed_windows(feats, starts), 8) / 32,
            "search_b32_ms": median_ms(lambda: index.search(emb, k), 8) / 32,
            "vote_b32_ms": median_ms(lambda: vote(starts, trk.reshape(shape), pos.reshape(shape),
                                                   sims.reshape(shape), params=base.match), 8) / 32}


def size_row(b: dict, rounds: list[dict], windows: np.ndarray, q_track: list[str]) -> dict:
    """The report row of one catalogue size: best round per figure, streams held, top-1 source %."""
    from audiocopy.decision.recognizer import Recognizer

    best = {key: min(r[key] for r in rounds) for key in rounds[0] if key != "busy_cores"}
    dets = Recognizer(b["engine"]).detect_windows(windows)
    ids, sources = b["ids"], b["sources"]
    top_source = [sources[ids.index(d.candidates[0].track)] if d.candidates else None for d in dets]
    present = set(sources)  # queries of tracks outside a small catalogue cannot be found
    right = float(np.mean([t == q for t, q in zip(top_source, q_track) if q in present]))
    hop_s = b["engine"].audio.hop_seconds
    return {"tracks": b["size"], "vectors": len(b["index"]), "structure": b["index"].structure,
            "build_s": round(b["build_s"], 1), "index_mib": round(b["index_mib"], 1),
            "rss_delta_mib": round(b["rss_mib"], 1), **{k: round(v, 3) for k, v in best.items()},
            "streams": int(1000.0 / best["live_b32_ms"] * hop_s), "top1_source": round(100 * right, 1),
            "busy_cores_per_round": [r["busy_cores"] for r in rounds], "rounds": rounds}


def scale(corpus: Path, work: Path, sizes=SIZES) -> dict:
    """Identify cost and index RAM at each catalogue size (cached in ``WORK/scale.json`` per encoder)."""
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.engines import catalog
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint import engine as fp
    from audiocopy.engines.fingerprint.index.base import faiss_available
    from audiocopy.training.sources import list_audio

    if not faiss_available():
        raise BenchError("the scale benchmark needs faiss (pip install faiss-cpu)")
    sha = read_encoder_record(SHIPPED_ENCODER)["weights_sha256"]
    cache = read_json(work / "scale.json", {})
    if cache.get("encoder") == sha and [r["tracks"] for r in cache.get("rows", [])] == list(sizes):
        log.info("scale: cached")
        return cache
    db = work / "corpus_db"
    base = fp.load(db)
    records = catalog.track_records(db)
    real = [fpdb.track_vectors(db, r)[0] for r in records]
    stems = [p.stem for p in list_audio(corpus)]
    n_copies = max(sizes) - len(real)
    copies = copy_vectors(corpus, work, n_copies, base.encoder, base.match.enrol_hop_frames) if n_copies > 0 else []
    windows, q_src = corpus_windows(corpus, 64)
    steps = live_streams(corpus, 32, 12)
    built = []
    for size in sizes:
        extra = max(0, size - len(real))
        ids = [r["track_id"] for r in records][:size] + [f"copy{i}" for i in range(extra)]
        sources = [r["track_id"] for r in records][:size] + [stems[i] for i, _ in copies[:extra]]
        vecs = real[:size] + [v.astype(np.float32) for _, v in copies[:extra]]
        built.append({"size": size, "ids": ids, "sources": sources, **build_engine(base, vecs, ids)})
        log.info("built the %d-track index (%s) in %.0f s", size, built[-1]["index"].structure, built[-1]["build_s"])
    rounds: dict[int, list[dict]] = {b["size"]: [] for b in built}
    for _ in range(ROUNDS):
        for b in built:
            rounds[b["size"]].append(time_round(b, windows, steps, base))
    rows = [size_row(b, rounds[b["size"]], windows, [stems[i] for i in q_src]) for b in built]
    out = {"encoder": sha, "rows": rows, "copies": len(copies), "real_tracks": len(real),
           "copy_rule": "speed 0.85-1.15 (not 1.0), white noise 30 dB", "rounds": ROUNDS,
           "busy_cores_before": busy_cores(), "date": datetime.date.today().isoformat()}
    write_json(work / "scale.json", out)
    return out
