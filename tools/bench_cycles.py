#!/usr/bin/env python3
"""CPU per live window of the server's compute cycle, without a server: N 48 kHz streams replayed through it.

Usage::

    PYTHONPATH=. .venv/bin/python tools/bench_cycles.py --db /work/bench/db100 \\
        --audio /work/bench/catalog100/biniax2-data__biniax_common01.wav --streams 128 --batch 6,11,32

Place in the pipeline: a benchmark tool beside ``tools/loadtest.py``. The
load test measures the whole server on the machine's wall clock, which
other work on a shared machine disturbs; this tool measures only CPU time
of the code a compute worker runs (``web.cycle.run_cycle``: decode, resample
and cut; score; decide and build the messages), so before/after comparisons
of that code hold on a busy machine too (run them interleaved: contention
still slows every core a little).

How. Each stream is a real ``StreamPipeline`` fed 100 ms frames of s16le
PCM at ``--rate``, each at its own offset in the looped file (37 frames
apart, as the load test does). Every 100 ms step a fifth of the streams has
a new window due (a stream's window hop is 0.5 s), and those go through
``run_cycle`` in groups of ``--batch`` streams, as the batcher would hand
them over. The first 4 s warm the streams' caches (a stream's first window
computes all of its sub-windows; later ones only the new ~3). Printed per
batch size: the cycle's own thread CPU per window in each stage (as
``CycleStats`` and ``/api/status`` report it) and the whole process's CPU
per window, which adds the encoder's helper threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np

from audiocopy.config import AudioParams
from audiocopy.decision.recognizer import Recognizer
from audiocopy.signal.audio import load_audio
from audiocopy.web.cycle import Limits, run_cycle
from audiocopy.web.pipeline import Input, StreamPipeline
from audiocopy.web.protocol import StartRequest
from audiocopy.web.threads import single_threaded_blas

WARM_STEPS = 40  # 4 s of 100 ms frames
#: Limits that never drop or hold back a window: the tool measures work, not overload.
NO_LIMITS = Limits(max_batch=100_000, max_pending=1_000_000, max_pending_per_owner=100_000)


class _Stream:
    """One replayed stream: its pipeline, the input collected since its last cycle, its place in the file."""

    realtime = True

    def __init__(self, rec: Recognizer, index: int, rate: int):
        self.pipeline = StreamPipeline(start=StartRequest(rate, "s16le", 1, f"s{index}", True), audio=rec.audio,
                                       decision=rec.stream_decision(f"s{index}", wall_start=0.0))
        self.input, self.offset, self.sent = Input(), index * 37, 0


def replay(rec: Recognizer, frames: list[bytes], n_streams: int, batch: int, seconds: float, rate: int) -> dict:
    """Stage CPU ms per window over ``seconds`` of stream time after the warm-up (see the module docstring)."""
    streams = [_Stream(rec, i, rate) for i in range(n_streams)]
    frame_samples = len(frames[0]) // 2
    totals = dict.fromkeys(("prep", "score", "decide", "process"), 0.0)
    windows = 0
    for step in range(WARM_STEPS + int(seconds * 10)):
        measure = step >= WARM_STEPS
        for st in streams:
            st.input.chunks.append(frames[(st.offset + step) % len(frames)])
            st.sent += frame_samples
            st.input.arrivals.append((st.sent, time.monotonic()))
        due = [st for i, st in enumerate(streams) if (step + i) % 5 == 0]
        for lo in range(0, len(due), batch):
            jobs = [(st, st.input) for st in due[lo:lo + batch]]
            for st, _ in jobs:
                st.input = Input()
            p0 = time.process_time()
            _, stats = run_cycle(rec, jobs, NO_LIMITS)
            if measure:
                totals["process"] += time.process_time() - p0
                totals["prep"] += stats.prep_cpu_s
                totals["score"] += stats.score_cpu_s
                totals["decide"] += stats.decide_cpu_s
                windows += stats.windows
    return {"windows": windows, **{k: 1000 * v / max(windows, 1) for k, v in totals.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="CPU per live window of the compute cycle, streams replayed in-process.")
    p.add_argument("--db", required=True, help="an audiocopy database")
    p.add_argument("--audio", required=True, help="file each stream loops, at its own offset")
    p.add_argument("--streams", type=int, default=128)
    p.add_argument("--batch", default="11", help="streams per cycle, comma-separated (default 11)")
    p.add_argument("--seconds", type=float, default=8.0, help="stream time measured after a 4 s warm-up")
    p.add_argument("--rate", type=int, default=48000, help="client sample rate in Hz (default 48000)")
    args = p.parse_args(argv)
    if args.streams < 1 or args.seconds <= 0:
        p.error("--streams must be at least 1 and --seconds positive")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        p.error(f"--batch {args.batch!r}: give whole numbers, e.g. 6,11,32")
    if min(batches) < 1:
        p.error("--batch sizes must be at least 1")
    single_threaded_blas()  # as the server does
    rec = Recognizer.open(args.db, xp=np)
    pcm = (np.clip(load_audio(args.audio, params=AudioParams(sample_rate=args.rate)), -1, 1) * 32767).astype("<i2")
    n = args.rate // 10
    frames = [pcm[i:i + n].tobytes() for i in range(0, len(pcm) - n + 1, n)]
    if len(frames) < WARM_STEPS:
        p.error(f"--audio {args.audio}: shorter than the {WARM_STEPS / 10:g} s warm-up")
    print(f"{args.streams} streams at {args.rate} Hz, {args.seconds:g} s measured; CPU ms per window")
    print("batch | windows | prep | score | decide | cycle thread | whole process")
    for b in batches:
        r = replay(rec, frames, args.streams, b, args.seconds, args.rate)
        thread = r["prep"] + r["score"] + r["decide"]
        print(f"{b} | {r['windows']} | {r['prep']:.3f} | {r['score']:.3f} | {r['decide']:.3f} | {thread:.3f} | "
              f"{r['process']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
