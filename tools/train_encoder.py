#!/usr/bin/env python3
"""Train the fingerprint engine's shared encoder from scratch (resumable).

This is how the shipped weights in ``audiocopy/weights/`` were made. It
trains ``training.models.build_encoder`` contrastively on distorted views of the
tracks of a corpus (see ``audiocopy.training.encoder.loop``), checkpoints
after every epoch under ``--work`` and exports the best encoder so far to
``--out`` after every epoch that improved validation retrieval. Interrupt it
(Ctrl-C, a time budget, a reboot) and run the same command again: it resumes
from the last checkpoint, and the cache of features is reused.

Stages. ``--next-stage`` goes on from the checkpoint with other
``--augment`` settings (every other setting must be the same): the same
weights, optimizer state and schedule (a longer ``--epochs`` stretches it),
the best epoch chosen afresh on validation views drawn with the new
augmentation, and the record's ``training.stages`` listing each earlier
stage's augmentation and last epoch, so that the record says how every
epoch was trained.

Which tracks. Benchmarks must measure music the encoder never heard, so
``--split WORK/split.json`` (written by ``tools/evaluate.py``, e.g. with
``--stop-after split``) excludes what that split measures: its catalogue and
unseen tracks, every other track of their Debian packages, and the
calibration hold-out of its wrong tracks, whole packages at a time
(``audiocopy.training.sources.calibration_holdout``: thresholds are set on
them, so the false-positive rate is measured on packages the encoder has
not heard either, as the unseen ones). Without ``--split`` only the
calibration hold-out of the corpus is excluded. ``--calibration-share F`` holds out that share of the wrong
tracks instead of the default fifth (more unheard packages to set thresholds on, fewer to train on); the record
keeps it (``calibration_share``) and enrolment follows it.
``--generated DIR`` adds generated music (``tools/generate_music.py``, with its ``manifest.json``);
``--generated-share F`` makes it that share of the training draws (each track is otherwise drawn equally
often, so 300 generated tracks beside 84 real ones would make 78 % of every batch).

Provenance. The encoder's record (field ``training``) lists
``trained_track_ids``: every corpus track id it was given (training and
validation tracks), and ``generated``: the generated corpus' generator,
version, seed, settings and the SHA-256 of its track ids. ``tools/evaluate.py``
refuses to measure a split whose catalogue or unseen tracks are among them.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --stop-after split
    PYTHONPATH=. .venv/bin/python tools/train_encoder.py --corpus CORPUS_DIR \\
        --split data/bench/split.json --generated /work/gen_music --max-minutes 40

Time on the development machine (2 CPU cores): see the ``training`` record
in ``audiocopy/weights/fingerprint_encoder.json`` (minutes, epochs, loss and
validation history).
"""
from __future__ import annotations

import argparse
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

from bench.common import BenchError, generic_paths, ids_sha256, read_json  # noqa: E402

from audiocopy.training.sources import CALIBRATION_SHARE, holdout_rule_name  # noqa: E402

log = logging.getLogger("train_encoder")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (defaults from ``EncoderTrainParams``)."""
    from audiocopy.config import EncoderTrainParams

    d = EncoderTrainParams()
    p = argparse.ArgumentParser(description="Train the fingerprint encoder (contrastive, resumable).")
    p.add_argument("--corpus", required=True, type=Path, help="folder of training tracks (audio files)")
    p.add_argument("--work", type=Path, default=REPO / "data" / "encoder_train",
                   help="cache and checkpoints (default data/encoder_train); reruns resume from it")
    p.add_argument("--out", type=Path, default=REPO / "audiocopy" / "weights" / "fingerprint_encoder.json",
                   help="encoder record to write (weights beside it as .npz)")
    p.add_argument("--split", type=Path, action="append", default=[],
                   help="split.json of tools/evaluate.py: the tracks it measures are not trained on (repeatable)")
    p.add_argument("--generated", type=Path, default=None,
                   help="folder of generated music with manifest.json (tools/generate_music.py) to train on too")
    p.add_argument("--generated-share", type=float, default=None, metavar="F",
                   help="with --generated: the share of training draws taken from generated music, 0 < F < 1 "
                        "(default: every track drawn equally often, so the share is the generated tracks' share)")
    p.add_argument("--keep-calibration", action="store_true",
                   help="without --split: also train on the tracks enrolment holds out for calibration")
    p.add_argument("--calibration-share", type=float, default=CALIBRATION_SHARE, metavar="F",
                   help="share of the wrong tracks held out, whole packages at a time, for enrolment to set its "
                        f"thresholds on (default {CALIBRATION_SHARE}); recorded, and enrolment follows it")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time (resumable)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (schedule length, default {d.epochs})")
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    p.add_argument("--batch-pairs", type=int, default=d.batch_pairs)
    p.add_argument("--views-per-track", type=int, default=d.views_per_track)
    p.add_argument("--val-tracks", type=int, default=d.val_tracks)
    p.add_argument("--positives-per-anchor", type=int, default=d.positives_per_anchor, metavar="N",
                   help="distorted views of each anchor's moment per batch, every one a positive of the others "
                        f"(default {d.positives_per_anchor})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the views, batches, validation set and initial weights (default {d.seed}); "
                        "a second seed of one recipe measures how much of a difference is chance")
    p.add_argument("--augment", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one field of the training augmentation (config.ENCODER_AUGMENT), e.g. p_chain=0; "
                        "repeatable; the encoder's record keeps the settings used")
    p.add_argument("--next-stage", action="store_true",
                   help="go on from the checkpoint in --work with other --augment settings, as a new stage: the "
                        "record lists each earlier stage's augmentation, and the best epoch is chosen afresh "
                        "(rerun the same command to resume an interrupted stage)")
    p.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.positives_per_anchor < 1:
        p.error(f"--positives-per-anchor must be at least 1, got {args.positives_per_anchor}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.split and args.keep_calibration:
        p.error("--keep-calibration would train on the split's calibration hold-out; drop one of them")
    if args.keep_calibration and args.calibration_share != CALIBRATION_SHARE:
        p.error("--keep-calibration trains on every negative: a --calibration-share would hold out nothing")
    try:
        holdout_rule_name("group", args.calibration_share)
    except ValueError as exc:
        p.error(f"--calibration-share: {exc}")
    return args


def augment_params(overrides: list[str]):
    """``ENCODER_AUGMENT`` with ``FIELD=VALUE`` overrides (numbers; ranges as LOW,HIGH); ``BenchError`` if bad."""
    import dataclasses

    from audiocopy.config import ENCODER_AUGMENT
    from audiocopy.training.augment.recipe import checked_params

    fields = {f.name for f in dataclasses.fields(ENCODER_AUGMENT)}
    changes = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise BenchError(f"--augment {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise BenchError(f"--augment {item!r}: {text!r} is not a number or LOW,HIGH") from None
        current = getattr(ENCODER_AUGMENT, name)
        if isinstance(current, tuple) != (len(values) > 1):
            wanted = "LOW,HIGH" if isinstance(current, tuple) else "one number"
            raise BenchError(f"--augment {item!r}: {name} takes {wanted}")
        if name.startswith("p_") and not 0.0 <= values[0] <= 1.0:
            raise BenchError(f"--augment {item!r}: a probability must lie in [0, 1]")
        changes[name] = values if len(values) > 1 else (int(values[0]) if isinstance(current, int) else values[0])
    try:
        return checked_params(dataclasses.replace(ENCODER_AUGMENT, **changes))
    except ValueError as exc:
        raise BenchError(f"--augment: {exc}") from None


def excluded_ids(corpus_ids: set[str], splits: list[Path], keep_calibration: bool,
                 share: float = CALIBRATION_SHARE) -> set[str]:
    """Corpus track ids not to train on: each split's ``encoder_excluded_ids``, or the calibration hold-out.

    share: the calibration hold-out's share of the wrong tracks (``sources.calibration_holdout``).
    """
    from audiocopy.training.sources import calibration_holdout, with_their_groups
    from bench.split import encoder_excluded_ids, read_split

    if not splits:
        if keep_calibration:
            return set()
        return with_their_groups(calibration_holdout(sorted(corpus_ids), share), corpus_ids)
    out: set[str] = set()
    for path in splits:
        split = read_split(path)
        named = set(split["catalog"]) | set(split["unseen"]) | set(split["wrong"])
        if not named & corpus_ids:
            raise BenchError(f"{path} names none of the tracks in the corpus: is it a split of another corpus?")
        out |= encoder_excluded_ids(split, share)
    return out


def select_tracks(corpus: Path, splits: list[Path], keep_calibration: bool,
                  share: float = CALIBRATION_SHARE) -> tuple[list[Path], dict]:
    """The corpus files to train on, and the provenance summary (counts and ``trained_track_ids``)."""
    from audiocopy.training.sources import list_audio

    files = list_audio(corpus)
    ids = {p.stem for p in files}
    excluded = excluded_ids(ids, splits, keep_calibration, share)
    chosen = [p for p in files if p.stem not in excluded]
    trained = sorted(p.stem for p in chosen)
    return chosen, {"corpus_tracks": len(files), "excluded_tracks": len(excluded & ids),
                    "trained_tracks": len(chosen), "trained_track_ids": trained,
                    "trained_track_ids_sha256": ids_sha256(trained)}


def generated_tracks(folder: Path, corpus_ids: set[str]) -> tuple[list[Path], dict]:
    """The generated tracks of ``folder`` listed in its manifest, and the record's ``generated`` summary."""
    from audiocopy.training.sources import list_audio

    manifest = read_json(folder / "manifest.json")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tracks"), list):
        raise BenchError(f"{folder}/manifest.json is missing or not a generated-music manifest "
                         "(make one with tools/generate_music.py)")
    listed = {t["id"] for t in manifest["tracks"]}
    files = [p for p in list_audio(folder) if p.stem in listed]
    if not files:
        raise BenchError(f"{folder} holds none of the tracks its manifest lists")
    clash = sorted({p.stem for p in files} & corpus_ids)
    if clash:
        raise BenchError(f"generated tracks share ids with corpus tracks ({clash[:3]}); rename one side")
    ids = sorted(p.stem for p in files)
    settings = manifest.get("settings", {})
    return files, {"generator": manifest.get("generator"), "version": manifest.get("version"),
                   "seed": settings.get("seed"), "settings": settings, "track_count": len(ids),
                   "track_ids_sha256": ids_sha256(ids),
                   "manifest_track_ids_sha256": manifest.get("track_ids_sha256")}


def generated_weights(real_ids: list[str], generated_ids: list[str], share: float) -> dict[str, float]:
    """Sampling weight per track id so that generated music makes ``share`` of the draws.

    Each real track keeps weight 1; each generated track gets the weight that
    makes the generated tracks together ``share`` of the total, so a few dozen
    real tracks are not drowned among hundreds of generated ones. Raises
    BenchError for a share outside (0, 1) or an empty side.
    """
    if not 0.0 < share < 1.0:
        raise BenchError(f"--generated-share must lie strictly between 0 and 1, got {share}")
    if not real_ids or not generated_ids:
        raise BenchError("--generated-share needs both corpus tracks and generated tracks to train on")
    each = share / (1.0 - share) * len(real_ids) / len(generated_ids)
    return {**{t: 1.0 for t in real_ids}, **{t: each for t in generated_ids}}


#: The shipped weights' record must not name this machine's folders: every path option reads as a placeholder.
PATH_PLACEHOLDERS = {"--corpus": "CORPUS_DIR", "--split": "WORK/split.json", "--generated": "GEN_DIR",
                     "--work": "ENC_WORK", "--out": "ENCODER_JSON"}


def recorded_command(argv: list[str]) -> str:
    """The command line the encoder's record keeps, its folders replaced by ``PATH_PLACEHOLDERS``."""
    return shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/train_encoder.py",
                       *generic_paths(argv, PATH_PLACEHOLDERS)])


def main(argv=None) -> int:
    """Select the tracks, train (or resume) and export; 0 on success, 1 with one ``error:`` line."""
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
    weights = None
    try:
        if args.generated_share is not None and not args.generated:
            raise BenchError("--generated-share needs --generated")
        tracks, summary = select_tracks(args.corpus, args.split, args.keep_calibration, args.calibration_share)
        if args.generated:
            from audiocopy.training.sources import list_audio

            corpus_ids = {p.stem for p in list_audio(args.corpus)}
            extra, summary["generated"] = generated_tracks(args.generated, corpus_ids)
            if args.generated_share is not None:
                weights = generated_weights([p.stem for p in tracks], [p.stem for p in extra], args.generated_share)
                summary["generated_share"] = args.generated_share
            tracks = tracks + extra
        log.info("tracks: %s", {k: v for k, v in summary.items() if k not in ("trained_track_ids", "generated")})
        train = replace(EncoderTrainParams(), epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        batch_pairs=args.batch_pairs, views_per_track=args.views_per_track,
                        val_tracks=args.val_tracks, positives_per_anchor=args.positives_per_anchor,
                        seed=args.seed)
        command = recorded_command(sys.argv[1:] if argv is None else argv)
        # Enrolment calibrates on the hold-out this encoder never heard (``enroll_fingerprint.holdout_rule``).
        holdout = "none" if args.keep_calibration else "group"
        provenance = {"command": command, "corpus": "CORPUS_DIR", **summary, "calibration_holdout": holdout,
                      "calibration_share": args.calibration_share,
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"}
        state = train_encoder(tracks, args.work, args.out, aug=augment_params(args.augment), train=train,
                              track_weights=weights,
                              max_minutes=args.max_minutes, provenance=provenance, next_stage=args.next_stage,
                              progress=not args.quiet)
    except (AudiocopyError, BenchError) as exc:
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
