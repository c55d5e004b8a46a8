#!/usr/bin/env python3
"""Benchmark of the fingerprint engine; writes its section of ``docs/benchmarks.md``.

What it measures, each step cached under ``--work`` (delete a file to redo it):

1. **Accuracy** on exactly the queries ``tools/evaluate.py`` made for cnnbin
   (``--bench-work``, default ``data/bench``: its ``catalog/`` is enrolled,
   its ``wrong/`` tracks give the calibration negatives, its
   ``queries/truth.tsv`` is identified), scored with the same
   ``evaluate.accuracy_tables`` (hit % at FP <= 1 % on the pooled unseen
   negatives), and printed beside cnnbin's figures from its ``results.json``.
2. **Enrolment speed**: every track of ``--corpus`` enrolled into a scratch
   database with ``audiocopy.training.enroll_fingerprint`` (decode, band
   levels, encoder, index), in seconds of audio per second of wall time.
3. **Scale**: identify cost per 2.5 s window and index RAM at 100, 1,000 and
   10,000 tracks. Beyond the corpus, tracks are *distorted copies* of it:
   each copy is a corpus track played at another speed (soxr resampling,
   factors spread over 0.85-1.15 without 1.0, so pitch and tempo both
   move) with white noise at 30 dB, embedded through the same path as
   enrolment. The copies' vectors are cached (``WORK/copies/``). The
   queries are clean 2.5 s windows of corpus tracks; the timing covers the
   whole engine (features, ten sub-window embeddings, top-k search, offset
   vote) at batch 1 (latency) and batch 32 (throughput), and "streams" is
   how many live streams (a window every 0.5 s each) that throughput holds
   on this machine's cores.

4. **Server catalogue** (step ``server-db``, not run by default): writes a
   real fingerprint database ``WORK/db{N}`` of the corpus tracks plus the
   distorted copies above, N tracks in all (``--server-db-size``, default
   1000), for ``tools/loadtest.py --db`` to measure live streams through
   the server. It adds to this report only the path it wrote.

Usage (from the repository root, after ``tools/evaluate.py`` made its queries)::

    PYTHONPATH=. .venv/bin/python tools/bench_fingerprint.py --corpus CORPUS_DIR
    PYTHONPATH=. .venv/bin/python tools/bench_fingerprint.py --corpus CORPUS_DIR --steps server-db
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from benchlib import (  # noqa: E402
    BenchError,
    busy_cores,
    generic_corpus,
    machine_info,
    median_ms,
    read_json,
    update_section,
    write_json,
)

log = logging.getLogger("bench_fingerprint")
SECTION_NAME = "fingerprint"
SIZES = (100, 1000, 10000)
COPY_SNR_DB = 30.0
#: Timing rounds over all catalogue sizes (see ``scale``).
ROUNDS = 3


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------------------
# 1. accuracy on evaluate.py's queries


def _cnnbin_figures(bench: Path) -> dict:
    """cnnbin's accuracy and track model from ``tools/evaluate.py``'s latest results (read afresh every time)."""
    results = read_json(bench / "results.json", {})
    return {"cnnbin": results.get("accuracy"), "cnnbin_model": results.get("model", "spectrogram")}


def accuracy(bench: Path, work: Path) -> dict:
    import evaluate
    from tqdm import tqdm

    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.signal.audio import load_audio
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    truth_path = bench / "queries" / "truth.tsv"
    if not truth_path.is_file():
        raise BenchError(f"{truth_path} not found: run tools/evaluate.py --stop-after queries first")
    sha = read_encoder_record(SHIPPED_ENCODER)["weights_sha256"]
    cache = read_json(work / "accuracy.json", {})
    if cache.get("encoder") == sha and cache.get("truth_size") == truth_path.stat().st_size \
            and "stream_accuracy" in cache:
        log.info("accuracy: cached for this encoder")
        # cnnbin's figures are read afresh: its benchmark may have been rerun since.
        return {**cache, **_cnnbin_figures(bench)}
    db = work / "db"
    if db.exists() and (db / "fingerprint.json").exists() and \
            json.loads((db / "fingerprint.json").read_text())["encoder_sha256"] != sha:
        import shutil

        shutil.rmtree(db)  # enrolled with other weights: start over
    t0 = time.perf_counter()
    report = enroll_fingerprint(bench / "catalog", db, negatives_dir=bench / "wrong")
    enrol_s = time.perf_counter() - t0
    recognizer = Recognizer.open(db)
    rows_in = [line.split("\t") for line in truth_path.read_text(encoding="utf-8").splitlines()[1:] if line]
    n = recognizer.audio.window_samples
    rows, stream_rows = [], []
    identify_s = 0.0
    for lo in tqdm(range(0, len(rows_in), 64), desc="identify", unit="batch"):
        batch = rows_in[lo:lo + 64]
        windows = np.stack([np.resize(load_audio(bench / "queries" / r[0], params=recognizer.audio), n)
                            for r in batch])
        t0 = time.perf_counter()
        dets = recognizer.detect_windows(windows)
        identify_s += time.perf_counter() - t0
        # The server's path (engine.score_stream: sub-windows on the stream's frame grid, each
        # floored on its own), each query a stream of its own.
        live = recognizer.detect_windows(windows, np.zeros(len(batch)), [None] * len(batch))
        for out_rows, found in ((rows, dets), (stream_rows, live)):
            for r, det in zip(batch, found):
                out_rows.append({"file": r[0], "condition": r[2].strip(), "expected": r[1] or None,
                                 "decided": det.track, "top": det.candidates[0].track if det.candidates else None,
                                 "score": float(det.score)})
    conditions = [c for c in evaluate.CONDITIONS if c.name in {r["condition"] for r in rows}]
    acc = evaluate.accuracy_tables(rows, conditions)
    out = {"encoder": sha, "truth_size": truth_path.stat().st_size, "accuracy": acc, **_cnnbin_figures(bench),
           "stream_accuracy": evaluate.accuracy_tables(stream_rows, conditions),
           "queries": len(rows),
           "enrol": {"tracks": len(report.enrolled) + len(report.skipped), "wall_s": round(enrol_s, 1),
                     "x_realtime": round(report.realtime_factor), "threshold": report.threshold},
           "identify_s": round(identify_s, 1)}
    out["date"] = datetime.date.today().isoformat()
    write_json(work / "accuracy.json", out)
    return out


# ---------------------------------------------------------------------------
# 2. enrolment speed


def enrol_speed(corpus: Path, work: Path) -> dict:
    from audiocopy.config import AudioParams, FeatureParams
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.training.enroll_fingerprint import add_tracks
    from audiocopy.training.sources import list_audio

    sha = read_encoder_record(SHIPPED_ENCODER)["weights_sha256"]
    cache = read_json(work / "enrol.json", {})
    if cache.get("encoder") == sha:
        log.info("enrol speed: cached")
        return cache
    import shutil

    db = work / "corpus_db"
    shutil.rmtree(db, ignore_errors=True)
    fpdb.init_db(db, audio=AudioParams(), features=FeatureParams())
    busy = busy_cores()
    report = add_tracks(db, list_audio(corpus))
    out = {"encoder": sha, "tracks": len(report.enrolled), "audio_hours": round(report.audio_seconds / 3600, 2),
           "vectors": report.vectors, "wall_s": round(report.wall_seconds, 1),
           "x_realtime": round(report.realtime_factor),
           "encoder_x_realtime": round(report.audio_seconds / max(report.encoder_seconds, 1e-9)),
           "busy_cores_before": busy}
    out["date"] = datetime.date.today().isoformat()
    write_json(work / "enrol.json", out)
    return out


# ---------------------------------------------------------------------------
# 3. scale


def _copy_vectors(corpus: Path, work: Path, n_copies: int, encoder, hop: int) -> list[tuple[int, np.ndarray]]:
    """(source index, vectors) of ``n_copies`` speed-changed, noisy copies of the corpus tracks.

    Copies are interleaved over the sources (the first ``len(corpus)`` copies
    are one of each track, and so on), so every catalogue size holds copies
    of every source rather than dozens of one. Cached per source.
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
    out_dir = work / "copies"
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
    out = [(i, by_source[i][j]) for j in order for i in range(len(files))]
    return out[:n_copies]


def _queries(corpus: Path, n: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """n clean 2.5 s windows of corpus tracks and the index of their source."""
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
        lo = int(rng.integers(audio.sample_rate, max(audio.sample_rate + 1, sig.size - audio.window_samples - audio.sample_rate)))
        windows.append(sig[lo:lo + audio.window_samples])
    return np.stack(windows).astype(np.float32), [int(i) for i in picks]


def _live_streams(corpus: Path, n_streams: int, n_windows: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
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


def _live_ms(recognizer, steps: list, warm: int = 2) -> float:
    """Median ms per window of a batch of live streams (one window of each per call).

    A fresh memory per stream; the first ``warm`` steps fill the caches
    (a stream's first window costs like the window path) and are not timed.
    """
    from audiocopy.engines import StreamMemory

    memories = [StreamMemory() for _ in range(len(steps[0][0]))]
    times = []
    for j, (windows, starts) in enumerate(steps):
        t0 = time.perf_counter()
        recognizer.detect_windows(windows, starts, memories)
        if j >= warm:
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)) / len(memories)


def scale(corpus: Path, work: Path, sizes=SIZES) -> dict:
    from audiocopy.config import AudioParams, FeatureParams, IndexParams
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.engines import catalog
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint import engine as fp
    from audiocopy.engines.fingerprint.index.base import faiss_available
    from audiocopy.engines.fingerprint.index.open import create_index
    from audiocopy.engines.fingerprint.match import query_starts, vote
    from audiocopy.signal.features import log_spectrogram

    if not faiss_available():
        raise BenchError("the scale benchmark needs faiss (pip install faiss-cpu)")
    sha = read_encoder_record(SHIPPED_ENCODER)["weights_sha256"]
    cache = read_json(work / "scale.json", {})
    if cache.get("encoder") == sha and [r["tracks"] for r in cache.get("rows", [])] == list(sizes) \
            and all("live_b32_ms" in r for r in cache["rows"]):
        log.info("scale: cached")
        return cache
    db = work / "corpus_db"
    base = fp.load(db)
    records = catalog.track_records(db)
    real = [fpdb.track_vectors(db, r)[0] for r in records]
    from audiocopy.training.sources import list_audio

    stems = [p.stem for p in list_audio(corpus)]
    n_copies = max(sizes) - len(real)
    copies = _copy_vectors(corpus, work, n_copies, base.encoder, base.match.enrol_hop_frames) if n_copies > 0 else []
    copy_source = [stems[i] for i, _ in copies]
    copies = [v for _, v in copies]
    windows, q_src = _queries(corpus, 64)
    live_steps = _live_streams(corpus, 32, 12)
    q_track = [stems[i] for i in q_src]
    audio, features = AudioParams(), FeatureParams()
    feats = log_spectrogram(windows, audio=audio, params=features)
    starts = query_starts(feats.shape[1], frames=base.encoder.params.frames, params=base.match)
    built = []
    for size in sizes:
        ids = [r["track_id"] for r in records][:size]
        vecs = real[:size]
        sources = [r["track_id"] for r in records][:size]
        if size > len(real):
            extra = size - len(real)
            vecs = vecs + [c.astype(np.float32) for c in copies[:extra]]
            ids = ids + [f"copy{i}" for i in range(extra)]
            sources = sources + copy_source[:extra]
        rss0 = _rss_mib()
        t0 = time.perf_counter()
        index = create_index(base.encoder.dim, IndexParams())
        tracks = [(k, v.astype(np.float32), np.arange(len(v)) * base.match.enrol_hop_frames) for k, v in enumerate(vecs)]
        if sum(len(v) for v in vecs) > index.params.flat_max_vectors:
            index.rebuild(tracks)
        else:
            for k, v, p in tracks:
                index.add(k, v, p)
        build_s = time.perf_counter() - t0
        del tracks, vecs
        # An engine over this index and these ids, sharing the corpus database's encoder and settings.
        state = fp._State(tuple(ids), np.arange(len(ids), dtype=np.int64), index, base.threshold, ())
        engine = fp.FingerprintEngine(db, audio=audio, features=features, encoder=base.encoder,
                                      config=base.config, state=state, calibration={})
        built.append({"size": size, "ids": ids, "sources": sources, "index": index, "engine": engine,
                      "build_s": build_s, "index_mib": index.memory_bytes() / 2**20, "rss_mib": _rss_mib() - rss0})
        log.info("built the %d-track index (%s) in %.0f s", size, index.structure, build_s)

    # Timings: every size once per round, several rounds; each figure is the best round's median.
    # Other processes on a shared machine only ever make a round slower, so the best round is the
    # closest to what this machine does alone; all rounds are kept in the JSON.
    k = base.match.top_k
    rounds: dict[int, list[dict]] = {b["size"]: [] for b in built}
    for _ in range(ROUNDS):
        for b in built:
            index, engine = b["index"], b["engine"]
            recognizer = Recognizer(engine)
            emb = engine.encoder.embed_windows(feats[:32], starts).reshape(-1, engine.encoder.dim)
            sims, trk, pos = index.search(emb, k)
            shape = (32, len(starts), k)
            rounds[b["size"]].append({
                "busy_cores": busy_cores(0.5),
                "window_b1_ms": median_ms(lambda: recognizer.detect_windows(windows[:1]), 40),
                "window_b32_ms": median_ms(lambda: recognizer.detect_windows(windows[:32]), 8) / 32,
                "live_b32_ms": _live_ms(recognizer, live_steps),
                "features_b32_ms": median_ms(lambda: log_spectrogram(windows[:32], audio=audio, params=features), 8) / 32,
                "encoder_b32_ms": median_ms(lambda: engine.encoder.embed_windows(feats[:32], starts), 8) / 32,
                "search_b32_ms": median_ms(lambda: index.search(emb, k), 8) / 32,
                "vote_b32_ms": median_ms(lambda: vote(starts, trk.reshape(shape), pos.reshape(shape),
                                                       sims.reshape(shape), params=base.match), 8) / 32,
            })
    rows = []
    for b in built:
        best = {key: min(r[key] for r in rounds[b["size"]]) for key in rounds[b["size"]][0] if key != "busy_cores"}
        dets = Recognizer(b["engine"]).detect_windows(windows)
        ids, sources = b["ids"], b["sources"]
        top_source = [sources[ids.index(d.candidates[0].track)] if d.candidates else None for d in dets]
        present = set(sources)  # queries of tracks outside a small catalogue cannot be found
        right = float(np.mean([t == q for t, q in zip(top_source, q_track) if q in present]))
        rows.append({"tracks": b["size"], "vectors": len(b["index"]), "structure": b["index"].structure,
                     "build_s": round(b["build_s"], 1), "index_mib": round(b["index_mib"], 1),
                     "rss_delta_mib": round(b["rss_mib"], 1), **{k2: round(v, 3) for k2, v in best.items()},
                     "streams": int(1000.0 / best["live_b32_ms"] * audio.hop_seconds),
                     "top1_source": round(100 * right, 1),
                     "busy_cores_per_round": [r["busy_cores"] for r in rounds[b["size"]]],
                     "rounds": rounds[b["size"]]})
        log.info("scale %s", {k2: v for k2, v in rows[-1].items() if k2 != "rounds"})
    out = {"encoder": sha, "rows": rows, "copies": len(copies), "real_tracks": len(real),
           "copy_rule": "speed 0.85-1.15 (not 1.0), white noise 30 dB", "rounds": ROUNDS,
           "busy_cores_before": busy_cores()}
    out["date"] = datetime.date.today().isoformat()
    write_json(work / "scale.json", out)
    return out


# ---------------------------------------------------------------------------
# report


def server_db(corpus: Path, work: Path, size: int) -> Path:
    """Write ``WORK/db{size}``: the enrolled corpus plus distorted copies, a real fingerprint database.

    The copies' vectors come from the same cache as the scale step; each is
    saved as a track ``copy-NNNN-<source>`` and indexed as enrolment would
    (rebuilding into IVF-PQ when the catalogue outgrows exact search). The
    corpus database's calibration is kept. Returns the database path.
    """
    import shutil

    from audiocopy.engines import catalog
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint import engine as fp
    from audiocopy.training.sources import list_audio

    src, dst = work / "corpus_db", work / f"db{size}"
    if not (src / catalog.DB_FILE).exists():
        raise BenchError(f"{src} is missing: run the enrol step first")
    if dst.exists():
        log.info("%s exists; delete it to rebuild", dst)
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    engine = fp.load(tmp, writable=True)
    config, index, hop = engine.config, engine.index, engine.config.match.enrol_hop_frames
    n_copies = size - len(engine.track_ids)
    if n_copies < 0:
        raise BenchError(f"the corpus alone has {len(engine.track_ids)} tracks, more than {size}")
    stems = [p.stem for p in list_audio(corpus)]
    copies = _copy_vectors(corpus, work, n_copies, engine.encoder, hop)[:n_copies]
    key = config.next_key
    config = dataclasses.replace(config, next_key=key + len(copies))
    frame_s = engine.features.hop_length / engine.audio.sample_rate
    for i, (source, vectors) in enumerate(copies):
        track_id = f"copy-{i:04d}-{stems[source]}"
        fpdb.save_track(tmp, track_id, key + i, vectors, hop_frames=hop, encoder_sha256=config.encoder_sha256,
                      duration_s=len(vectors) * hop * frame_s, extra={"source": f"copy of {stems[source]}"})
        index.add(key + i, vectors.astype(np.float32), np.arange(len(vectors), dtype=np.int64) * hop)
    fpdb.write_config(tmp, config)
    if getattr(index, "wants_rebuild", lambda: False)():
        log.info("rebuilding the index for %d vectors", len(index))
        index.rebuild((int(r["key"]), *fpdb.track_vectors(tmp, r)) for r in catalog.track_records(tmp))
    fpdb.save_index(tmp, config, index)
    os.replace(tmp, dst)
    log.info("wrote %s: %d tracks, %d vectors (%s)", dst, size, len(index), index.structure)
    return dst


def _fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def render(res: dict) -> str:
    m = res["machine"]
    lines = ["## fingerprint engine: accuracy, enrolment and scale", "",
             f"Written on {res['date']} by `tools/bench_fingerprint.py` from steps measured on "
             + ", ".join(f"{k} {res[k].get('date', 'an earlier day')}" for k in ("accuracy", "enrol", "scale")
                         if k in res)
             + "; to reproduce, from the repository root "
             "(after `tools/evaluate.py` has made its queries):", "", f"    {res['command']}", "",
             f"- **Machine:** {m['cpu']}, {m['cores']} cores, {_fmt(m['ram_gib'])} GiB RAM; {m['os']}, "
             f"Python {m['python']}; CPU only.",
             f"- **Encoder:** `audiocopy/weights/fingerprint_encoder.json` (sha256 {res['encoder'][:12]}…), "
             f"{res['encoder_info']}.", ""]
    acc = res.get("accuracy")
    if acc:
        a, cnn, live = acc["accuracy"], acc.get("cnnbin"), acc["stream_accuracy"]
        cnn_rows = {r["label"]: r for r in (cnn["conditions"] + cnn["groups"] + [cnn["all"]])} if cnn else {}
        live_rows = {r["label"]: r for r in (live["conditions"] + live["groups"] + [live["all"]])}
        lines += ["### Accuracy beside cnnbin (same queries)", "",
                  f"The {acc['queries']} queries of `tools/evaluate.py` (its catalogue of "
                  f"{acc['enrol']['tracks']} tracks enrolled with `audiocopy enroll --engine fingerprint`, "
                  "calibrated on its wrong tracks' held-out fifth), scored by its own `accuracy_tables`: *hit % at "
                  "FP ≤ 1 %* uses one threshold set on the pooled unseen negatives of all conditions "
                  f"({a['pooled_negatives']} queries). The fingerprint decision (score > 0) is calibrated at "
                  "0.5 % false positives per window on held-out negatives. *Live path*: the same queries "
                  "through the server's path (`FingerprintEngine.score_stream`, sub-windows on the stream's "
                  "frame grid, each floored under its own peak), each query a stream of its own, with its own "
                  "FP ≤ 1 % threshold.", "",
                  f"| condition | fingerprint hit % at FP ≤ 1 % | live path | cnnbin (`--model {acc.get('cnnbin_model', 'spectrogram')}`) hit % at FP ≤ 1 % | target "
                  "| fingerprint hit / wrong / FP % (calibrated) |",
                  "|---|---|---|---|---|---|"]
        for r in a["conditions"] + a["groups"] + [a["all"]]:
            c = cnn_rows.get(r["label"], {})
            target = "" if r["target"] is None else f"≥ {r['target']:g}" + (" ✓" if r["met"] else " ✗")
            lines.append(f"| {r['label']} | {_fmt(r['hit_at_fpr'])} | "
                         f"{_fmt(live_rows.get(r['label'], {}).get('hit_at_fpr'))} | "
                         f"{_fmt(c.get('hit_at_fpr'))} | {target} | "
                         f"{_fmt(r['hit'])} / {_fmt(r['wrong'])} / {_fmt(r['fp'])} |")
        lines.append("")
    en = res.get("enrol")
    if en:
        lines += ["### Enrolment speed", "",
                  f"All {en['tracks']} corpus tracks ({en['audio_hours']} h of audio, {en['vectors']} vectors) "
                  f"enrolled into an empty database in {en['wall_s']} s: **{en['x_realtime']}× real time** "
                  f"end to end (decode, resample, band levels, encoder, index, files); the encoder alone runs at "
                  f"{en['encoder_x_realtime']}× real time. Other load before the run: "
                  f"{_fmt(en['busy_cores_before'], 2)} busy cores.", ""]
    sc = res.get("scale")
    if sc:
        lines += ["### Identify cost and index RAM by catalogue size", "",
                  f"Up to {sc['real_tracks']} tracks are the corpus itself; beyond, each track is a distorted copy "
                  f"of a corpus track ({sc['copy_rule']}), {sc['copies']} copies in all, embedded like an "
                  "enrolment. Index: the default backend (faiss; exact inner product up to 250,000 vectors, "
                  "then IVF-PQ with 16-byte codes, nprobe 16). Times are medians per 2.5 s window for the whole "
                  "engine (features, 10 sub-window embeddings, top-20 search each, offset vote, decision), "
                  f"the best of {sc.get('rounds', 1)} rounds over all sizes (other work on a shared machine only "
                  "slows a round down; every round is in the JSON); the split columns are the window path "
                  "per window at batch 32. *Live, batch 32*: the server's path (`score_stream`), 32 streams "
                  "of consecutive windows, one window of each per call, after two warm-up windows: each "
                  "window embeds and searches only the ~3 sub-windows its last 0.5 s adds. Streams: live "
                  "streams of one window every 0.5 s that the live batch-32 throughput holds on this "
                  "machine. Top-1 source: clean corpus windows whose best candidate is their track or one "
                  "of its copies.", "",
                  "| tracks | vectors | index | index RAM (MiB) | ms/window, batch 1 | ms/window, batch 32 | "
                  "features | encoder | search | vote | live, batch 32 | streams | top-1 source % |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sc["rows"]:
            lines.append(f"| {r['tracks']:,} | {r['vectors']:,} | {r['structure']} | {_fmt(r['index_mib'])} | "
                         f"{_fmt(r['window_b1_ms'], 2)} | {_fmt(r['window_b32_ms'], 2)} | "
                         f"{_fmt(r['features_b32_ms'], 2)} | {_fmt(r['encoder_b32_ms'], 2)} | "
                         f"{_fmt(r['search_b32_ms'], 2)} | {_fmt(r['vote_b32_ms'], 2)} | "
                         f"{_fmt(r['live_b32_ms'], 2)} | {r['streams']} | "
                         f"{_fmt(r['top1_source'])} |")
        first, last = sc["rows"][0], sc["rows"][-1]
        lines += ["", f"Identify cost from {first['tracks']:,} to {last['tracks']:,} tracks: "
                      f"×{last['window_b32_ms'] / first['window_b32_ms']:.2f} at batch 32, "
                      f"×{last['window_b1_ms'] / first['window_b1_ms']:.2f} at batch 1, "
                      f"×{last['live_b32_ms'] / first['live_b32_ms']:.2f} live (target ≤ 2×). "
                      f"Other load before the run: {_fmt(sc.get('busy_cores_before'), 2)} busy cores.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fingerprint engine benchmark (accuracy, enrolment speed, scale).")
    p.add_argument("--corpus", required=True, type=Path, help="folder of corpus tracks (enrolment speed, scale)")
    p.add_argument("--bench-work", type=Path, default=REPO / "data" / "bench",
                   help="tools/evaluate.py's work folder (queries, catalog, wrong, results.json)")
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench_fp", help="this benchmark's cache")
    p.add_argument("--steps", default="accuracy,enrol,scale", help="comma-separated steps to run")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="catalogue sizes of the scale step")
    p.add_argument("--server-db-size", type=int, default=1000, help="tracks of the server-db step's database")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    args.work.mkdir(parents=True, exist_ok=True)
    record = read_encoder_record(SHIPPED_ENCODER)
    tr = record.get("training", {})
    res = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "encoder": record["weights_sha256"],
           "encoder_info": f"{record['encoder']['embedding_dim']}-dim, trained {tr.get('train_minutes', '?')} min / "
                           f"{tr.get('epochs', '?')} epochs on {tr.get('train_tracks', '?')} tracks never used below",
           "command": shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/bench_fingerprint.py",
                                  *generic_corpus(sys.argv[1:] if argv is None else argv)])}
    try:
        if "accuracy" in steps:
            res["accuracy"] = accuracy(args.bench_work, args.work)
        if "enrol" in steps or "scale" in steps:
            res["enrol"] = enrol_speed(args.corpus, args.work)
        if "scale" in steps:
            res["scale"] = scale(args.corpus, args.work, sizes=tuple(int(x) for x in args.sizes.split(",")))
        if "server-db" in steps:
            print(f"wrote {server_db(args.corpus, args.work, args.server_db_size)}")
            if steps == ["server-db"]:
                return 0
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_json(args.work / "results.json", res)
    section = render(res)
    update_section(args.doc, SECTION_NAME, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
