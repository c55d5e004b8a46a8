#!/usr/bin/env python3
"""Generate a corpus of procedurally composed training music (resumable).

Writes ``--tracks`` WAV files (22050 Hz mono 16-bit) and ``manifest.json``
into ``--out`` with ``audiocopy.training.music.generate_corpus``: seeded
compositions in many styles, rendered by fluidsynth with Debian's General
MIDI soundfonts or by the NumPy synthesiser. Run the same command again to
resume or, with a larger ``--tracks``, to extend the corpus; a folder made
with other settings is refused. Keep the output outside the repository.

Needs (Debian): fluidsynth and at least one GM soundfont, e.g.
``apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont
musescore-general-soundfont musescore-general-soundfont-small
fluidr3mono-gm-soundfont opl3-soundfont csound-soundfont``
(or ``--synth-share 1`` for NumPy-only rendering).

Usage (from the repository root)::

    .venv/bin/python tools/generate_music.py --out /work/gen_music --tracks 40 --seed 1 --jobs 2
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

log = logging.getLogger("generate_music")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Generate procedurally composed training music.")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; reruns resume)")
    p.add_argument("--tracks", required=True, type=int, help="number of tracks the corpus should hold")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPU cores)")
    p.add_argument("--min-seconds", type=float, default=60.0, help="shortest track length (default 60)")
    p.add_argument("--max-seconds", type=float, default=180.0, help="longest track length (default 180)")
    p.add_argument("--styles", default=None, help="comma-separated style names (default: all)")
    p.add_argument("--synth-share", type=float, default=0.2,
                   help="fraction of tracks played by the NumPy synthesiser (default 0.2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if not args.quiet else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from audiocopy.errors import AudiocopyError
    from audiocopy.training.music import generate_corpus

    styles = [s.strip() for s in args.styles.split(",") if s.strip()] if args.styles else None
    started = time.perf_counter()
    try:
        manifest = generate_corpus(args.out, n_tracks=args.tracks, seed=args.seed,
                                   seconds_range=(args.min_seconds, args.max_seconds), styles=styles,
                                   jobs=args.jobs, progress=not args.quiet, synth_share=args.synth_share)
    except AudiocopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    wall = time.perf_counter() - started
    audio = manifest["total_seconds"]
    print(f"{manifest['track_count']} tracks, {audio / 3600:.2f} h of audio in {args.out} "
          f"({wall:.0f} s this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
