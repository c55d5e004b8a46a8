#!/usr/bin/env python3
"""Scoring cost of cnnbin's embedding heads by catalogue size: NumPy (CPU) against CuPy (GPU).

Why it exists: with ``--model embedding`` every track is a head over the
shared encoder's embeddings, and all heads run as one pass
(``engines.stacked_head.StackedHeads``): one matrix product of a window's
ten sub-window embeddings with every prototype of every track, then
pooling. The cost grows with the total number of prototypes, so this
measures it for 10, 100 and 1,000 tracks of three minutes (1,100
prototypes each, one per 0.16 s) on NumPy and, where a GPU is usable, on
CuPy, and checks that both give the same logits.

The heads are synthetic (seeded unit vectors and biases): the cost depends on
their shapes, not on what they learned. The encoder's own cost (ten
sub-window embeddings per window, shared by all tracks) is in the cnnbin
section of ``docs/benchmarks.md``.

Usage (repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_heads.py --json data/bench/heads.json
    PYTHONPATH=. .venv/bin/python tools/bench_heads.py --render data/bench/heads.json
"""
from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench.common import read_json, write_json  # noqa: E402
from bench.doc import update_section  # noqa: E402
from bench.gpu import fmt_ms, gpu_module, synchronize  # noqa: E402
from bench.machine import busy_cores, machine_info, timed  # noqa: E402

from audiocopy.engines.cnnbin.stacked_head import HeadWeights, StackedHeads  # noqa: E402

log = logging.getLogger("bench_heads")

SECTION = "heads-scale"
N_SUB, DIM, TOLERANCE = 10, 64, 1
#: Prototypes of a three-minute track at one per 0.16 s.
PROTOTYPES = 1100


def synthetic_heads(n_tracks: int, *, prototypes: int, seed: int) -> list[HeadWeights]:
    """Seeded heads: unit-vector prototypes, small biases, unit logit."""
    rng = np.random.default_rng(seed)
    heads = []
    for _ in range(n_tracks):
        p = rng.standard_normal((prototypes, DIM)).astype(np.float32)
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        heads.append(HeadWeights(p, (-0.5 + 0.1 * rng.standard_normal(prototypes)).astype(np.float32),
                                 1.0, 0.0, N_SUB, TOLERANCE))
    return heads


def measure(*, tracks: list[int], batches: list[int], prototypes: int, seed: int, max_runs: int,
            budget_s: float, gpu) -> list[dict]:
    """One row per (tracks, batch, variant): ms per batch and window, max |CuPy - NumPy| of the logits."""
    rng = np.random.default_rng(seed + 1)
    emb = rng.standard_normal((max(batches), N_SUB, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=2, keepdims=True)
    mask = np.ones((max(batches), N_SUB), np.float32)
    rows = []
    for n_tracks in tracks:
        heads = synthetic_heads(n_tracks, prototypes=prototypes, seed=seed)
        stacks = {"numpy": StackedHeads(heads)}
        if gpu is not None:
            stacks["cupy"] = StackedHeads(heads, xp=gpu)
        del heads
        for batch in batches:
            reference = stacks["numpy"].logits(emb[:batch], mask[:batch])
            for variant, stack in stacks.items():
                xp = stack.xp

                def call():
                    out = stack.logits(emb[:batch], mask[:batch])  # NumPy in and out, as the engine calls it
                    synchronize(xp)
                    return out

                out = call()
                ms, runs = timed(call, max_runs=max_runs, budget_s=budget_s)
                row = {"tracks": n_tracks, "batch": batch, "variant": variant, "ms_per_batch": ms,
                       "ms_per_window": ms / batch, "runs": runs,
                       "max_abs_diff": None if variant == "numpy" else float(np.abs(out - reference).max())}
                rows.append(row)
                log.info("%d tracks batch %d %s: %.3f ms", n_tracks, batch, variant, ms)
        del stacks
    return rows


def render(result: dict, json_path: str) -> str:
    m = result["machine"]
    lines = ["## cnnbin embedding heads: scoring cost by catalogue size, NumPy vs CuPy", "",
             f"Measured on {result['date']} with `tools/bench_heads.py`; to reproduce, from the repository root:", "",
             f"    {result['command']}", f"    {result['command'].split(' --json ')[0]} --render {json_path}", "",
             f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; {m['os']}, "
             f"Python {m['python']}; GPU: {result['gpu_status']}. Cores busy before the run: {result['busy_cores']}.",
             f"- **Heads:** synthetic, {result['prototypes']} prototypes each (a three-minute track), "
             f"{N_SUB} sub-windows of {DIM} dimensions per window; the cost depends on the shapes only. "
             "`StackedHeads.logits` with NumPy embeddings in and NumPy logits out (the copies to and from "
             "the GPU are included). The encoder's embedding of the window is not included.", "",
             "| tracks | batch | NumPy ms per window | CuPy ms per window | speed-up | max abs diff |",
             "|---:|---:|---:|---:|---:|---:|"]
    by = {(r["tracks"], r["batch"], r["variant"]): r for r in result["rows"]}
    for t in sorted({r["tracks"] for r in result["rows"]}):
        for b in sorted({r["batch"] for r in result["rows"]}):
            n, c = by.get((t, b, "numpy")), by.get((t, b, "cupy"))
            if n is None:
                continue
            gpu = "no usable GPU" if c is None else fmt_ms(c["ms_per_window"])
            speed = "–" if c is None else f"{n['ms_per_batch'] / c['ms_per_batch']:.1f}×"
            diff = "–" if c is None else f"{c['max_abs_diff']:.1e}"
            lines.append(f"| {t} | {b} | {fmt_ms(n['ms_per_window'])} | {gpu} | {speed} | {diff} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="measure and write the results here")
    p.add_argument("--render", type=Path, help="write the docs section from this JSON")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--tracks", default="10,100,1000")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--prototypes", type=int, default=PROTOTYPES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=50, help="most timed calls per row")
    p.add_argument("--budget-s", type=float, default=2.0, help="about this many seconds of timed calls per row")
    p.add_argument("--numpy-only", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if bool(args.json) == bool(args.render):
        p.error("give exactly one of --json and --render")
    if args.render:
        result = read_json(args.render)
        if result is None:
            raise SystemExit(f"error: {args.render} is missing or unreadable")
        update_section(args.doc, SECTION, render(result, str(args.render)))
        print(f"wrote the {SECTION} section of {args.doc}")
        return 0
    gpu, device = gpu_module("numpy" if args.numpy_only else "auto")
    busy = busy_cores()
    rows = measure(tracks=[int(x) for x in args.tracks.split(",")], batches=[int(x) for x in args.batches.split(",")],
                   prototypes=args.prototypes, seed=args.seed, max_runs=args.runs, budget_s=args.budget_s, gpu=gpu)
    cmd = ["tools/bench_heads.py", "--json", "data/bench/heads.json"] + (["--numpy-only"] if args.numpy_only else [])
    write_json(args.json, {"date": datetime.date.today().isoformat(), "command": "PYTHONPATH=. python3 " + shlex.join(cmd),
                           "machine": machine_info(), "busy_cores": busy, "gpu_status": device,
                           "prototypes": args.prototypes, "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
