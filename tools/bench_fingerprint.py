#!/usr/bin/env python3
"""Benchmark of the fingerprint engine; writes its section of ``docs/benchmarks.md``.

What it measures, each step cached (delete a file to redo it):

1. **Accuracy** on the queries ``tools/evaluate.py`` made (``--bench-work``,
   default ``data/bench``): its catalogue enrolled with the fingerprint
   engine, calibrated on the hold-out of its wrong tracks that its encoder
   never trained on, every query
   answered as ``identify`` answers it and scored at both operating points,
   all by the same code as ``tools/evaluate.py --engine fingerprint``
   (``tools/bench``; the database and answers are shared with it, so the two
   tools give the same figures), beside cnnbin's figures from that folder
   when it was run. The encoder's provenance is checked as there.
2. **Enrolment speed**: every track of ``--corpus`` enrolled into a scratch
   database (``WORK/corpus_db``) with ``audiocopy.training.enroll_fingerprint``,
   in seconds of audio per second of wall time.
3. **Scale**: identify cost per 2.5 s window and index RAM at 100, 1,000 and
   10,000 tracks (``tools/bench/fpscale.py``).
4. **Server catalogue** (step ``server-db``, not run by default): writes a
   real fingerprint database ``WORK/db{N}`` of the corpus tracks plus the
   distorted copies of the scale step, N tracks in all (``--server-db-size``),
   for ``tools/loadtest.py --db``. It adds to this report only the path it wrote.

Steps not run this time keep their last results (``WORK/results.json``), so
rerunning one step never drops the others from the section.

Usage (from the repository root, after ``tools/evaluate.py`` made its queries)::

    PYTHONPATH=. .venv/bin/python tools/bench_fingerprint.py --corpus CORPUS_DIR
    PYTHONPATH=. .venv/bin/python tools/bench_fingerprint.py --corpus CORPUS_DIR --steps server-db
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench.common import BenchError, generic_corpus, read_json, write_json  # noqa: E402
from bench.fpscale import SIZES, copy_vectors, scale  # noqa: E402
from bench.machine import busy_cores, machine_info  # noqa: E402

log = logging.getLogger("bench_fingerprint")
SECTION_NAME = "fingerprint"


def truth_items(bench: Path) -> list[tuple[str, str | None, str]]:
    """(file, expected or None, condition) of every query in ``BENCH/queries/truth.tsv``."""
    path = bench / "queries" / "truth.tsv"
    if not path.is_file():
        raise BenchError(f"{path} not found: run tools/evaluate.py --stop-after queries first")
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line]
    return [(r[0], r[1] or None, r[2].strip()) for r in rows]


def accuracy(bench: Path, *, allow_unchecked: bool) -> dict:
    """Step 1 (module docstring), through ``tools/bench`` exactly as ``tools/evaluate.py --engine fingerprint``."""
    from audiocopy.encoder.artifact import SHIPPED_ENCODER
    from bench.conditions import BY_NAME
    from bench.enrol import db_dir, enrol_fingerprint
    from bench.provenance import check_encoder, read_record
    from bench.scoring import accuracy_tables, identify
    from bench.split import describe, read_split

    items = truth_items(bench)
    split = read_split(bench / "split.json")
    check = check_encoder(split, read_record(SHIPPED_ENCODER), allow_unchecked=allow_unchecked,
                          name="the shipped encoder")
    enrol = enrol_fingerprint(bench, split["catalog"], encoder_path=SHIPPED_ENCODER)
    answers = identify(bench / "queries", items, db_dir(bench, "fingerprint"), bench / "answers-fingerprint.json")
    names = list(dict.fromkeys(c for _, _, c in items))
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise BenchError(f"{bench}/queries/truth.tsv has unknown conditions {unknown}")
    cnn = read_json(bench / "results-cnnbin-embedding.json", {})
    return {"accuracy": accuracy_tables(answers["rows"], [BY_NAME[n] for n in names]), "queries": len(items),
            "bench_work": str(bench), "split": describe(split), "provenance": check.sentence, "enrol": enrol,
            "cnnbin": cnn.get("accuracy"), "cnnbin_label": cnn.get("engine_label"),
            "identify_s": answers["seconds"], "date": datetime.date.today().isoformat()}


def enrol_speed(corpus: Path, work: Path) -> dict:
    """Step 2: every corpus track into an empty database (cached per encoder in ``WORK/enrol.json``)."""
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
    db = work / "corpus_db"
    shutil.rmtree(db, ignore_errors=True)
    fpdb.init_db(db, audio=AudioParams(), features=FeatureParams())
    busy = busy_cores()
    report = add_tracks(db, list_audio(corpus))
    out = {"encoder": sha, "tracks": len(report.enrolled), "audio_hours": round(report.audio_seconds / 3600, 2),
           "vectors": report.vectors, "wall_s": round(report.wall_seconds, 1),
           "x_realtime": round(report.realtime_factor),
           "encoder_x_realtime": round(report.audio_seconds / max(report.encoder_seconds, 1e-9)),
           "busy_cores_before": busy, "date": datetime.date.today().isoformat()}
    write_json(work / "enrol.json", out)
    return out


def server_db(corpus: Path, work: Path, size: int) -> Path:
    """Step 4: ``WORK/db{size}``, the enrolled corpus plus distorted copies, a real fingerprint database.

    The copies' vectors come from the scale step's cache; each is saved as a
    track ``copy-NNNN-<source>`` and indexed as enrolment would (rebuilding
    into IVF-PQ when the catalogue outgrows exact search). The corpus
    database's calibration is kept. Returns the database path.
    """
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
    copies = copy_vectors(corpus, work, n_copies, engine.encoder, hop)
    key = config.next_key
    config = dataclasses.replace(config, next_key=key + len(copies))
    frame_s = engine.features.hop_length / engine.audio.sample_rate
    for i, (source, vectors) in enumerate(copies):
        fpdb.save_track(tmp, f"copy-{i:04d}-{stems[source]}", key + i, vectors, hop_frames=hop,
                        encoder_sha256=config.encoder_sha256, duration_s=len(vectors) * hop * frame_s,
                        extra={"source": f"copy of {stems[source]}"})
        index.add(key + i, vectors.astype(np.float32), np.arange(len(vectors), dtype=np.int64) * hop)
    fpdb.write_config(tmp, config)
    if getattr(index, "wants_rebuild", lambda: False)():
        log.info("rebuilding the index for %d vectors", len(index))
        index.rebuild((int(r["key"]), *fpdb.track_vectors(tmp, r)) for r in catalog.track_records(tmp))
    fpdb.save_index(tmp, config, index)
    os.replace(tmp, dst)
    log.info("wrote %s: %d tracks, %d vectors (%s)", dst, size, len(index), index.structure)
    return dst


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; ``--steps`` as a list of known step names."""
    p = argparse.ArgumentParser(description="Fingerprint engine benchmark (accuracy, enrolment speed, scale).")
    p.add_argument("--corpus", required=True, type=Path, help="folder of corpus tracks (enrolment speed, scale)")
    p.add_argument("--bench-work", type=Path, default=REPO / "data" / "bench",
                   help="tools/evaluate.py's work folder (split.json, queries, catalog, wrong)")
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench_fp", help="this benchmark's cache")
    p.add_argument("--steps", default="accuracy,enrol,scale", help="comma-separated steps to run")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="catalogue sizes of the scale step")
    p.add_argument("--server-db-size", type=int, default=1000, help="tracks of the server-db step's database")
    p.add_argument("--allow-unchecked-encoder", action="store_true",
                   help="measure accuracy with an encoder whose record has no trained_track_ids (said in the report)")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(args.steps) - {"accuracy", "enrol", "scale", "server-db"})
    if unknown:
        p.error(f"unknown steps {unknown}")
    return args


def run_steps(args, res: dict) -> bool:
    """Run the chosen steps into ``res``; False when only the server database was asked for."""
    if "accuracy" in args.steps:
        res["accuracy"] = accuracy(args.bench_work, allow_unchecked=args.allow_unchecked_encoder)
    if "enrol" in args.steps or "scale" in args.steps:
        res["enrol"] = enrol_speed(args.corpus, args.work)
    if "scale" in args.steps:
        res["scale"] = scale(args.corpus, args.work, sizes=tuple(int(x) for x in args.sizes.split(",")))
    if "server-db" in args.steps:
        print(f"wrote {server_db(args.corpus, args.work, args.server_db_size)}")
    return args.steps != ["server-db"]


def main(argv=None) -> int:
    """Run the chosen steps and write the section; 0 on success, 1 with one ``error:`` line."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.errors import AudiocopyError
    from bench.doc import update_section
    from bench.report_fingerprint import render

    args.work.mkdir(parents=True, exist_ok=True)
    record = read_encoder_record(SHIPPED_ENCODER)
    tr = record.get("training", {})
    previous = read_json(args.work / "results.json", {})
    res = {**{k: previous[k] for k in ("accuracy", "enrol", "scale") if k in previous},
           "date": datetime.date.today().isoformat(), "machine": machine_info(), "encoder": record["weights_sha256"],
           "encoder_info": f"{record['encoder']['embedding_dim']}-dim, trained {tr.get('train_minutes', '?')} min / "
                           f"{tr.get('epochs', '?')} epochs on {tr.get('train_tracks', '?')} corpus tracks",
           "command": shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/bench_fingerprint.py",
                                  *generic_corpus(sys.argv[1:] if argv is None else argv)])}
    try:
        if not run_steps(args, res):
            return 0
    except (BenchError, AudiocopyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Cached steps of another encoder do not describe this one.
    res = {k: v for k, v in res.items()
           if not isinstance(v, dict) or v.get("encoder", res["encoder"]) == res["encoder"]}
    write_json(args.work / "results.json", res)
    section = render(res)
    update_section(args.doc, SECTION_NAME, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
