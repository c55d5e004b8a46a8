#!/usr/bin/env python3
"""Scale benchmark: the fingerprint index at up to 100,000 tracks; writes ``docs/benchmarks.md``'s ``scale`` section.

What it does (each part in ``tools/bench/scale_*.py``):

1. Real tracks (``scale_real``): the corpus tracks enrolled by
   ``tools/bench_fingerprint.py`` (``WORK/corpus_db``), ``--copies``
   distorted copies of them (``fpscale.copy_vectors``, cached in
   ``WORK/copies``) and ``--gen-tracks`` generated tracks (``--gen-music``,
   cached in ``WORK/generated``), all embedded like enrolment.
2. Derived tracks (``scale_vectors``): the rest of each catalogue, a random
   rotation of a real track's vectors plus a little noise per derived track.
3. Per size in ``--tracks`` (``scale_index``): the engine's faiss index
   (default ``IndexParams``: IVF-PQ past 250,000 vectors, FastScan from
   4,000,000) built chunk by chunk, with an exact search of the same query vectors alongside; index
   memory per track, enrolment speed into the index, top-1 of the PQ index
   and of exact search on clean and distorted windows of corpus tracks the
   encoder never trained on, then identify ms per window (whole engine,
   ``fpscale.time_round``) at batch 1 and 32, best of ``--rounds``.
4. Milvus (``--milvus-tracks``, ``scale_milvus``): the same catalogues into a
   Milvus Lite standalone server on loopback: insert speed, search ms, top-1
   and the server process's own RSS.
5. A projection on paper to 10^6 tracks and 10^4 concurrent streams.

Usage (from the repository root, after ``tools/bench_fingerprint.py --steps enrol``)::

    PYTHONPATH=. .venv/bin/python tools/bench_scale.py --corpus CORPUS_DIR --gen-music GEN_DIR --work WORK
    PYTHONPATH=. .venv/bin/python tools/bench_scale.py --corpus CORPUS_DIR --gen-music GEN_DIR --quick
    PYTHONPATH=. .venv/bin/python tools/bench_scale.py --corpus CORPUS_DIR --gen-music GEN_DIR --work WORK \
        --milvus-only --milvus-tracks 1000,10000

``--milvus-only`` measures the Milvus sizes alone (``WORK/scale_milvus.json``,
the same catalogue and queries as a faiss run with the same ``--queries``
and ``--seed``), shown beside the last faiss run's figures;
``--render-only`` rewrites the section from the saved results. Milvus Lite allows one
server per machine (its etcd takes port 2380), so the step refuses to
start while another one runs.

``--encoder-split`` names the split the shipped encoder's training excluded
(its record predates ``trained_track_ids``; ``scale_real.never_trained``).
"""
from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench.common import BenchError, write_json
from bench.doc import update_section
from bench.fpscale import copy_vectors, engine_over, live_streams, rss_mib, time_round
from bench.machine import load_note, machine_info
from bench.scale_index import build, embed_queries, score, top1_from
from bench.scale_real import corpus_tracks, generated_vectors, never_trained, query_windows
from bench.scale_report import projections, render

log = logging.getLogger("bench_scale")
SECTION_NAME = "scale"


def real_catalogue(args) -> dict:
    """Step 1: the base engine, the real tracks in key order (corpus, generated, copies) and their sources."""
    base, ids, corpus_vecs = corpus_tracks(args.work)
    hop = base.match.enrol_hop_frames
    gen = generated_vectors(args.gen_music, args.work, args.gen_tracks, base.encoder, hop) if args.gen_tracks else []
    copies = copy_vectors(args.corpus, args.work, args.copies, base.encoder, hop) if args.copies else []
    stems = [p.stem for p in sorted(args.corpus.glob("*.wav"))]
    if sorted(stems) != sorted(ids):
        raise BenchError(f"{args.work}/corpus_db does not hold exactly the tracks of {args.corpus}")
    real = corpus_vecs + [v for _, v in gen] + [v for _, v in copies]
    # The corpus id each real track sounds like: itself, none for generated music, the source for a copy.
    sources = ids + [None] * len(gen) + [stems[i] for i, _ in copies]
    return {"base": base, "ids": ids, "real": real, "sources": sources, "n_corpus": len(ids), "n_gen": len(gen),
            "n_copies": len(copies), "real_vectors": int(sum(len(v) for v in real))}


def queries(args, cat: dict) -> dict:
    """Step 1b: clean and distorted windows of never-trained corpus tracks, embedded once by the engine."""
    from bench.provenance import read_record

    from audiocopy.encoder.artifact import SHIPPED_ENCODER

    free, how = never_trained(cat["ids"], read_record(SHIPPED_ENCODER), args.encoder_split)
    q = query_windows(args.corpus, free, args.queries, args.seed)
    starts, clean = embed_queries(cat["base"], q["clean"])
    _, distorted = embed_queries(cat["base"], q["distorted"])
    return {**q, "starts": starts, "emb": {"clean": clean, "distorted": distorted}, "provenance": how,
            "query_tracks": len(set(q["track"]))}


def accuracy(index, exact, qs: dict, cat: dict, k: int, match) -> dict:
    """Top-1 % (by source) of the PQ index and of exact search, clean and distorted, on the same query vectors."""
    n = len(qs["track"])
    sources = cat["sources"]

    def source_of(key):
        return sources[key] if key < len(sources) else None  # derived tracks sound like no corpus track

    out, offset = {}, 0
    for cond in ("clean", "distorted"):
        emb = qs["emb"][cond]
        sims, ids = search_ids(index, emb, k)
        rows = slice(offset, offset + len(emb))
        out[cond] = {"pq": score(top1_from(sims, ids, qs["starts"], n, match), qs["track"], source_of),
                     "exact": score(top1_from(exact.sims[rows], exact.ids[rows], qs["starts"], n, match),
                                    qs["track"], source_of)}
        offset += len(emb)
    return out


def search_ids(index, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sims, packed ids) of the index's top-``k`` for each vector, as ``TopK`` holds them."""
    from audiocopy.engines.fingerprint.index.base import POS_BITS

    sims, tracks, positions = index.search(emb, k)
    ids = np.where(tracks < 0, -1, (tracks.astype(np.int64) << POS_BITS) | np.maximum(positions, 0))
    return sims, ids


def one_size(args, cat: dict, qs: dict, size: int) -> dict:
    """Step 3 for one catalogue size: build, memory, enrolment speed, accuracy (timing comes later)."""
    base = cat["base"]
    k = base.match.top_k
    all_q = np.concatenate([qs["emb"]["clean"], qs["emb"]["distorted"]])
    t0 = time.perf_counter()
    b = build(cat["real"], size, all_q, dim=base.encoder.dim, hop=base.match.enrol_hop_frames, k=k, seed=args.seed)
    wall = time.perf_counter() - t0
    index = b["index"]
    mem = index.memory_bytes()
    ids = [f"t{key}" for key in range(size)]
    row = {"tracks": size, "vectors": b["vectors"], "structure": index.structure, "index_bytes": mem,
           "bytes_per_track": mem / size, "rss_delta_mib": round(b["rss_delta_mib"], 1),
           "train_s": round(b["train_s"], 1), "add_s": round(b["add_s"], 1), "derive_s": round(b["derive_s"], 1),
           "exact_s": round(b["exact_s"], 1), "wall_s": round(wall, 1),
           "vectors_per_s": b["vectors"] / max(b["add_s"], 1e-9),
           "tracks_per_s": size / max(b["add_s"] + b["train_s"], 1e-9),
           "derived": max(0, size - len(cat["real"])),
           "accuracy": accuracy(index, b["exact"], qs, cat, k, base.match)}
    log.info("%d tracks: %s, %.1f kB/track, top-1 %s", size, index.structure, mem / size / 1000, row["accuracy"])
    return {"row": row, "engine": engine_over(base, index, ids), "index": index}


def run(args) -> dict:
    """Every step; returns the results (also written to ``WORK/scale_results.json``)."""
    load_before = load_note()
    rss0 = rss_mib()
    cat = real_catalogue(args)
    qs = queries(args, cat)
    built = [one_size(args, cat, qs, size) for size in args.tracks]
    steps = live_streams(args.corpus, 32, 12)
    rounds = {b["row"]["tracks"]: [] for b in built}
    for _ in range(args.rounds):
        for b in built:
            rounds[b["row"]["tracks"]].append(time_round(b, qs["clean"], steps, cat["base"]))
    for b in built:
        rs = rounds[b["row"]["tracks"]]
        b["row"]["timing"] = {key: round(min(r[key] for r in rs), 3) for key in rs[0] if key != "busy_cores"}
        b["row"]["busy_cores_per_round"] = [r["busy_cores"] for r in rs]
    milvus = None
    if args.milvus_tracks:
        from bench.scale_milvus import milvus_sizes

        milvus = milvus_sizes(cat, qs, args.milvus_tracks, seed=args.seed, timeout_s=args.milvus_timeout_s)
    rows = [b["row"] for b in built]
    res = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "machine": machine_info(),
           "load_before": load_before, "load_after": load_note(), "rows": rows, "milvus": milvus,
           "process_rss_mib": round(rss_mib() - rss0, 1),
           "real": {k: cat[k] for k in ("n_corpus", "n_gen", "n_copies", "real_vectors")},
           "queries": {"windows": len(qs["track"]), "tracks": qs["query_tracks"], "provenance": qs["provenance"],
                       "sub_windows": len(qs["starts"])},
           "rounds": args.rounds, "seed": args.seed, "assumptions": vars(args)["assume"]}
    res["projection"] = projections(res)
    write_json(args.work / "scale_results.json", res)
    return res


def run_milvus_only(args) -> dict:
    """``--milvus-only``: the Milvus step alone, saved as ``WORK/scale_milvus.json``.

    It uses the same real catalogue, derived tracks and query windows as the
    faiss run with the same ``--queries`` and ``--seed`` (same caches), so
    the Milvus rows answer the same queries over the same catalogues; the
    section shows them beside that run's (``merged``).
    """
    from bench.scale_milvus import milvus_sizes

    load_before = load_note()
    cat = real_catalogue(args)
    qs = queries(args, cat)
    def save(rows):
        write_json(args.work / "scale_milvus.json", {"rows": rows, "note": "partial: the step was still running",
                                                     "queries": len(qs["track"]), "seed": args.seed})

    out = milvus_sizes(cat, qs, args.milvus_tracks, seed=args.seed, timeout_s=args.milvus_timeout_s, on_row=save)
    out.update(date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
               command="python " + " ".join(shlex.quote(a) for a in sys.argv), load_before=load_before,
               load_after=load_note(), queries=len(qs["track"]), seed=args.seed)
    write_json(args.work / "scale_milvus.json", out)
    return merged(args)


def merged(args) -> dict:
    """The last faiss run's results (``WORK/scale_results.json``) with the Milvus step's, when they match, and
    this command line's projection assumptions."""
    from bench.common import read_json

    res = read_json(args.work / "scale_results.json", None)
    if not res:
        raise BenchError(f"{args.work}/scale_results.json not found: run the faiss sizes first")
    milvus = read_json(args.work / "scale_milvus.json", None)
    if milvus and (milvus["queries"], milvus["seed"]) == (res["queries"]["windows"], res["seed"]):
        res["milvus"] = milvus
    elif milvus:
        log.warning("WORK/scale_milvus.json used other queries or seed than the faiss run: left out")
    # The projection is arithmetic on the measured figures: it takes this command line's assumptions.
    res["assumptions"] = args.assume
    res["projection"] = projections(res)
    return res


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``--quick`` shrinks every size for a smoke run."""
    p = argparse.ArgumentParser(description="Scale benchmark of the fingerprint index (faiss, optionally Milvus).")
    p.add_argument("--corpus", required=True, type=Path, help="folder of the corpus tracks (WAV)")
    p.add_argument("--gen-music", type=Path, help="folder of generated music (tools/generate_music.py)")
    p.add_argument("--gen-tracks", type=int, default=300, help="generated tracks to embed (0: none)")
    p.add_argument("--copies", type=int, default=930, help="distorted copies of corpus tracks to embed")
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench_fp", help="bench_fingerprint.py's work folder")
    p.add_argument("--tracks", default="1000,100000", help="catalogue sizes (comma-separated)")
    p.add_argument("--milvus-tracks", default="", help="catalogue sizes also measured on a Milvus Lite server")
    p.add_argument("--milvus-timeout-s", type=float, default=900.0, help="per size: give up on Milvus after this")
    p.add_argument("--milvus-only", action="store_true",
                   help="only the Milvus sizes (WORK/scale_milvus.json), shown beside the last faiss run's")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite the section from WORK/scale_results.json and WORK/scale_milvus.json")
    p.add_argument("--queries", type=int, default=120, help="query windows (each also distorted)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (best round's median is reported)")
    p.add_argument("--encoder-split", type=Path, help="the split the shipped encoder's training excluded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="sizes 1000,5000, 40 queries, 1 round, 0 generated tracks")
    p.add_argument("--streams-per-worker", type=int, default=300,
                   help="assumption: streams one worker holds (the 100-track load test)")
    p.add_argument("--cores-per-worker", type=int, default=2, help="assumption: cores of that worker")
    p.add_argument("--worker-base-mib", type=float, default=400.0, help="assumption: worker RAM besides the index")
    p.add_argument("--usd-per-core-hour", type=float, default=0.04, help="assumption: cloud price of one core-hour")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    if args.quick:
        args.tracks, args.queries, args.rounds, args.gen_tracks = "1000,5000", 40, 1, 0
    if args.gen_tracks and args.gen_music is None:
        p.error("--gen-music is required unless --gen-tracks 0")
    try:
        args.tracks = sorted(int(x) for x in args.tracks.split(",") if x.strip())
        args.milvus_tracks = sorted(int(x) for x in args.milvus_tracks.split(",") if x.strip())
    except ValueError:
        p.error("--tracks and --milvus-tracks take comma-separated whole numbers")
    if args.queries < 32:
        p.error("--queries must be at least 32 (the batch-32 timings take 32 windows)")
    if args.milvus_only and not args.milvus_tracks:
        p.error("--milvus-only needs --milvus-tracks")
    if not args.tracks or min(args.tracks + args.milvus_tracks) < 1 or max(args.tracks) >= 1 << 30:
        p.error("catalogue sizes must be between 1 and 2**30")
    args.assume = {"streams_per_worker": args.streams_per_worker, "cores_per_worker": args.cores_per_worker,
                   "worker_base_mib": args.worker_base_mib, "usd_per_core_hour": args.usd_per_core_hour}
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # SIGTERM as an exception, so the Milvus step's ``finally`` stops the server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(argv)
    try:
        if args.render_only:
            res = merged(args)
        elif args.milvus_only:
            res = run_milvus_only(args)
        else:
            res = run(args)
            if not args.milvus_tracks:
                # Keep the last ``--milvus-only`` step's rows (WORK/scale_milvus.json) beside the new faiss ones.
                res = merged(args)
    except BenchError as exc:
        print(f"bench_scale: {exc}", file=sys.stderr)
        return 1
    update_section(args.doc, SECTION_NAME, render(res))
    print(f"wrote the {SECTION_NAME} section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
