#!/usr/bin/env python3
"""Per-query answers of the *pre-restructure* code (commit ecb7fb0) on a benchmark work folder.

Place in ``tools/bench``: the "before" half of the restructure check
(``tools/evaluate.py --legacy --before ... --before-answers FILE``). Unlike
every other module here it runs against the old package layout
(``audiocopy.recognizer``, ``audiocopy.audio``, ``StreamMemory``), so run it
with the old tree first on the path and the old tree's own fingerprint
database (the one its ``tools/bench_fingerprint.py --steps accuracy``
enrolled)::

    git worktree add /work/old ecb7fb0
    PYTHONPATH=/work/old .venv/bin/python tools/bench/old_answers.py \\
        --bench-work WORK --db OLD_FP_WORK/db --out OLD_FP_WORK/answers.json

Each query is answered twice, as that code could: the window path
(``detect_windows`` without stream memory: what its ``identify`` answered for
a 2.5 s file) and the live path (a fresh ``StreamMemory`` per query).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    """Answer every query of ``--bench-work`` with the old code and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench-work", required=True, type=Path, help="work folder with queries/truth.tsv")
    p.add_argument("--db", required=True, type=Path, help="the old code's fingerprint database")
    p.add_argument("--out", required=True, type=Path, help="JSON to write")
    args = p.parse_args(argv)
    try:
        from audiocopy.audio import load_audio
        from audiocopy.engines import StreamMemory
        from audiocopy.recognizer import Recognizer
    except ImportError as exc:
        print(f"error: this needs the pre-restructure package first on PYTHONPATH ({exc})", file=sys.stderr)
        return 1
    rec = Recognizer.open(args.db)
    n = rec.audio.window_samples
    truth = [line.split("\t") for line in (args.bench_work / "queries" / "truth.tsv").read_text().splitlines()[1:]]
    rows = []
    for lo in range(0, len(truth), 64):
        batch = [r for r in truth[lo:lo + 64] if r and r[0]]
        windows = np.stack([np.resize(load_audio(args.bench_work / "queries" / r[0], params=rec.audio), n)
                            for r in batch])
        window = rec.detect_windows(windows)
        live = rec.detect_windows(windows, np.zeros(len(batch)), [StreamMemory() for _ in batch])
        for r, w, s in zip(batch, window, live):
            rows.append({"file": r[0], "expected": r[1] or None, "condition": r[2].strip(),
                         "decided": w.track, "top": w.candidates[0].track if w.candidates else None,
                         "score": float(w.score), "live_decided": s.track,
                         "live_top": s.candidates[0].track if s.candidates else None, "live_score": float(s.score)})
    args.out.write_text(json.dumps({"threshold": float(rec.engine.threshold), "rows": rows}), encoding="utf-8")
    print(f"wrote {len(rows)} answers to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
