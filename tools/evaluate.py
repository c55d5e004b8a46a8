#!/usr/bin/env python3
"""Accuracy benchmark of the recognizer on 2.5 s fragments; writes its section of ``docs/benchmarks.md``.

What it measures. A corpus of tracks is split into a catalogue that is
enrolled, "wrong" tracks (training negatives and the calibration hold-out)
and "unseen" tracks that no model ever trains on, by Debian package so that
no composer is on both sides (``tools/bench/split.py``). From every
catalogue and unseen track, ``--k`` 2.5 s fragments are cut and distorted in
each condition (clean, noise, other music, speech, speed, tempo, pitch, MP3,
phone, a room chain) by sox, ffmpeg/lame and espeak-ng, never by the
training augmentation. A catalogue fragment must be named, an unseen one
must be "no match". The report gives, per condition, the hit / wrong / FP %
of the **shipped decision** (what ``audiocopy identify`` answers for the
fragment; the targets apply to it) beside the hit % at FP ≤ 1 % on the
pooled unseen negatives.

Before anything is enrolled, the encoder's record is checked: it must not
have trained on any catalogue or unseen track (``trained_track_ids``). An
encoder whose record predates that list is refused unless
``--allow-unchecked-encoder``; the report then says the check could not be
made. Train an encoder that fits a split with
``tools/train_encoder.py --split WORK/split.json``.

``--legacy`` reproduces the pre-restructure benchmark (track split,
its 17 conditions, its query files bit for bit) for before/after
comparisons; ``--before`` adds the old code's figures to its table.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --allow-unchecked-encoder
    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --engine cnnbin
    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --stop-after split  # split.json only
    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --legacy --work data/bench-legacy \\
        --allow-unchecked-encoder --before OLD_WORK/accuracy.json

``CORPUS_DIR`` holds mono WAV tracks and ``manifest-dev.tsv`` (columns
file, package, version, kind, license, seconds, path). The steps and their
caches are described in ``tools/bench/pipeline.py``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:  # run as a script from anywhere: the package lives beside tools/
        sys.path.insert(0, str(_p))

from bench.common import BenchError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked (one ``error:`` line and exit 2 for bad combinations)."""
    from audiocopy.encoder.artifact import SHIPPED_ENCODER

    p = argparse.ArgumentParser(description="Accuracy benchmark: split a corpus by package, make distorted "
                                            "2.5 s queries, enrol, identify, and write docs/benchmarks.md.")
    p.add_argument("--corpus", required=True, type=Path, help="folder of WAV tracks with manifest-dev.tsv")
    p.add_argument("--work", type=Path, default=Path("data/bench"),
                   help="folder for all intermediate files (default data/bench); complete steps are skipped")
    p.add_argument("--engine", default="fingerprint", choices=["fingerprint", "cnnbin"],
                   help="engine to enrol and measure (default fingerprint)")
    p.add_argument("--model", default="embedding", choices=["embedding", "spectrogram"],
                   help="cnnbin track model (default embedding); each has its own database in WORK")
    p.add_argument("--encoder", type=Path, default=SHIPPED_ENCODER,
                   help="fingerprint encoder record to check and enrol with (default: the shipped one)")
    p.add_argument("--allow-unchecked-encoder", action="store_true",
                   help="run with an encoder whose record has no trained_track_ids (the report says so)")
    p.add_argument("--encoder-split", type=Path,
                   help="for an unchecked encoder: the split.json its record's --exclude-split named; the report "
                        "then says which measured tracks it most likely trained on")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, offsets and distortions (default 0)")
    p.add_argument("--catalog", type=int, default=50, help="catalogue tracks (default 50)")
    p.add_argument("--wrong", type=int, default=100, help="wrong tracks (default 100)")
    p.add_argument("--unseen", type=int, default=30, help="unseen negative tracks (default 30)")
    p.add_argument("--k", type=int, default=3, help="fragments per catalogue/unseen track (default 3)")
    p.add_argument("--conditions", type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
                   help="comma-separated condition names (default: all of the chosen set)")
    p.add_argument("--legacy", action="store_true",
                   help="the pre-restructure benchmark: track split, its 17 conditions and query files")
    p.add_argument("--same-queries-as", type=Path,
                   help="another work folder whose query files must be byte-identical (counted in the report)")
    p.add_argument("--before", type=Path, help="accuracy.json of the pre-restructure bench_fingerprint.py on the "
                                               "same queries: adds the before/after table")
    p.add_argument("--before-answers", type=Path,
                   help="per-query answers of the old code (tools/bench/old_answers.py): adds a query-by-query "
                        "comparison")
    p.add_argument("--before-commit", default="ecb7fb0", help="the commit --before was measured with")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes for queries and dataset (default 2)")
    p.add_argument("--skip-enrol", action="store_true", help="reuse the engine's database in WORK as it is")
    p.add_argument("--quick", action="store_true", help="smoke run: 5/10/5 tracks, K=1, a few conditions")
    p.add_argument("--doc", type=Path, help="markdown file to update (default docs/benchmarks.md; "
                                             "WORK/benchmarks.md with --quick)")
    p.add_argument("--stop-after", choices=["split", "queries", "enrol"], help="stop after this step")
    args = p.parse_args(argv)
    if args.quick:
        args.catalog, args.wrong, args.unseen, args.k = 5, 10, 5, 1
    for name in ("catalog", "wrong", "unseen", "k", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.before and not args.legacy:
        p.error("--before compares with the pre-restructure benchmark: it needs --legacy")
    if args.before and args.engine != "fingerprint":
        p.error("--before holds the old fingerprint figures: it needs --engine fingerprint")
    if args.before_answers and not args.before:
        p.error("--before-answers goes with --before")
    if args.engine == "cnnbin" and args.encoder.resolve() != SHIPPED_ENCODER.resolve():
        p.error("cnnbin's embedding heads use the shipped encoder; --encoder applies to the fingerprint engine")
    return args


def main(argv=None) -> int:
    """Run the benchmark; 0 on success, 1 with one ``error:`` line when a step cannot go on."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from audiocopy.errors import AudiocopyError
    from bench.pipeline import run

    try:
        res = run(args, argv)
    except (BenchError, AudiocopyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    if res is None:
        print(f"stopped after {args.stop_after}; work folder {args.work}")
        return 0
    print(res["section"])
    print(f"wrote {res['doc']} and {res['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
