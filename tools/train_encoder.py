#!/usr/bin/env python3
"""Train the fingerprint engine's shared encoder from scratch (resumable).

This is how the shipped weights in ``audiocopy/weights/`` were made. It
trains ``models.build_encoder`` contrastively on distorted views of the
tracks of a corpus (see ``audiocopy.training.encoder.loop``), checkpoints
after every epoch under ``--work`` and exports the best encoder so far to
``--out`` after every epoch that improved validation retrieval. Interrupt it
(Ctrl-C, a time budget, a reboot) and run the same command again: it resumes
from the last checkpoint, and the cache of features is reused.

Which tracks. Benchmarks must measure music the encoder never heard, so the
tracks that ``tools/evaluate.py`` puts in the catalogue or among the unseen
negatives are excluded (``--exclude-split WORK/split.json``), and so are the
wrong tracks that enrolment holds out for calibrating the decision threshold
(the same hash-chosen fifth as ``training.dataset``): the false-positive
rate is then measured on music the encoder has not seen either.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/train_encoder.py --corpus CORPUS_DIR \\
        --exclude-split data/bench/split.json --max-minutes 40

Time on the development machine (2 CPU cores): see the ``training`` record
in ``audiocopy/weights/fingerprint_encoder.json`` (minutes, epochs, loss and
validation history).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from benchlib import generic_corpus  # noqa: E402

log = logging.getLogger("train_encoder")


def parse_args(argv=None) -> argparse.Namespace:
    from audiocopy.config import EncoderTrainParams

    d = EncoderTrainParams()
    p = argparse.ArgumentParser(description="Train the fingerprint encoder (contrastive, resumable).")
    p.add_argument("--corpus", required=True, type=Path, help="folder of training tracks (audio files)")
    p.add_argument("--work", type=Path, default=REPO / "data" / "encoder_train",
                   help="cache and checkpoints (default data/encoder_train); reruns resume from it")
    p.add_argument("--out", type=Path, default=REPO / "audiocopy" / "weights" / "fingerprint_encoder.json",
                   help="encoder record to write (weights beside it as .npz)")
    p.add_argument("--exclude-split", type=Path, action="append", default=[],
                   help="split.json of tools/evaluate.py: its catalog and unseen tracks are not trained on "
                        "(repeatable)")
    p.add_argument("--keep-calibration", action="store_true",
                   help="also train on the wrong tracks enrolment holds out for calibration")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time (resumable)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (schedule length, default {d.epochs})")
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--batch-pairs", type=int, default=d.batch_pairs)
    p.add_argument("--views-per-track", type=int, default=d.views_per_track)
    p.add_argument("--val-tracks", type=int, default=d.val_tracks)
    p.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def select_tracks(corpus: Path, exclude_splits: list[Path], keep_calibration: bool) -> tuple[list[Path], dict]:
    """The corpus files to train on, and a summary of what was excluded."""
    from audiocopy.training.sources import is_calibration_track, list_audio

    files = list_audio(corpus)
    excluded: set[str] = set()
    for path in exclude_splits:
        split = json.loads(path.read_text(encoding="utf-8"))
        for role in ("catalog", "unseen"):
            excluded |= set(split.get(role, []))
    calibration = set() if keep_calibration else \
        {p.stem for p in files if is_calibration_track(p.stem)}
    chosen = [p for p in files if p.stem not in excluded and p.stem not in calibration]
    return chosen, {"corpus_tracks": len(files), "excluded_split": len(excluded & {p.stem for p in files}),
                    "excluded_calibration": len(calibration - excluded), "trained_tracks": len(chosen)}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dataclasses import replace

    from audiocopy.config import EncoderTrainParams
    from audiocopy.errors import AudiocopyError
    from audiocopy.training.encoder.loop import train_encoder

    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        tracks, summary = select_tracks(args.corpus, args.exclude_split, args.keep_calibration)
        log.info("tracks: %s", summary)
        train = replace(EncoderTrainParams(), epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        batch_pairs=args.batch_pairs, views_per_track=args.views_per_track,
                        val_tracks=args.val_tracks)
        # The shipped weights' record must not name this machine's folders.
        command = shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/train_encoder.py",
                              *generic_corpus(sys.argv[1:] if argv is None else argv)])
        provenance = {"command": command, "corpus": "CORPUS_DIR", **summary,
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"}
        state = train_encoder(tracks, args.work, args.out, train=train, max_minutes=args.max_minutes,
                              provenance=provenance, progress=not args.quiet)
    except AudiocopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last epoch", file=sys.stderr)
        return 130
    done = "finished" if state.epoch >= args.epochs else "paused (rerun to resume)"
    print(f"{done}: {state.epoch} epochs, {state.seconds / 60:.1f} min, best validation top-1 "
          f"{state.best_top1:.3f}; encoder at {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
