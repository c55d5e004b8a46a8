"""The ``audiocopy`` command: a thin shell over the library.

Place in the pipeline: the top, beside the server. Each sub-command parses
its arguments, builds the frozen config records, calls one library function
and prints the result. Errors a user can cause (``AudiocopyError``) are
shown as one ``error: ...`` line with exit status 1 (2 for bad usage); no
traceback. Progress bars go to stderr, results to stdout, so
``identify --json`` output stays machine-readable.

Sub-commands: convert, dataset, train, enroll, remove, identify, scan, metadata, evaluate, serve.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .config import CnnParams, DatasetParams, IndexParams, TrainParams
from .errors import AudiocopyError, ConfigError

log = logging.getLogger("audiocopy")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_convert(args) -> int:
    from .training.convert import convert_folder

    report = convert_folder(Path(args.src), Path(args.dst), sample_rate=args.rate, progress=not args.quiet)
    print(f"converted {len(report.converted)}, skipped {len(report.skipped)} (already done), "
          f"failed {len(report.failed)}")
    for path, message in report.failed:
        print(f"  failed: {message}", file=sys.stderr)
    return 1 if report.failed and not report.converted and not report.skipped else 0


def _plan(args):
    from .config import AudioParams, AugmentParams, FeatureParams
    from .training.dataset import BuildPlan

    return BuildPlan(AudioParams(), FeatureParams(), AugmentParams(),
                     DatasetParams(positives_per_track=args.positives, windows_per_wrong=args.wrong_windows))


def cmd_dataset(args) -> int:
    from .training.dataset import build_dataset

    manifest = build_dataset(Path(args.licensed), Path(args.wrong) if args.wrong else None, Path(args.out),
                             _plan(args), jobs=args.jobs, progress=not args.quiet)
    roles = [s["role"] for s in manifest["sources"]]
    print(f"dataset {args.out}: {roles.count('licensed')} licensed, {roles.count('wrong')} wrong tracks, "
          f"{len(manifest['failed'])} failed")
    return 0


def _train_params(args) -> TrainParams:
    return TrainParams(epochs=args.epochs)


def _cnn_params(args) -> CnnParams:
    """--model, else the kind the database already holds, else the default (embedding)."""
    from .engines.cnnbin.engine import enrolled_kinds

    kind = args.model or next(iter(sorted(enrolled_kinds(Path(args.db)))), CnnParams().kind)
    return CnnParams(kind=kind)


def _model_arg(parser) -> None:
    parser.add_argument("--model", choices=["embedding", "spectrogram"], default=None,
                        help="cnnbin track model: embedding (default for a new DB: a per-track CNN head over the "
                             "shared encoder's embeddings) or spectrogram (the seed's CNN trained from scratch on "
                             "the spectrogram); an existing DB keeps its own")


def cmd_train(args) -> int:
    from .training.enroll_cnnbin import train_catalog

    report = train_catalog(Path(args.dataset), Path(args.db), cnn=_cnn_params(args), train=_train_params(args),
                           tracks=args.track or None, progress=not args.quiet)
    print(f"trained {len(report.trained)} tracks ({report.seconds_per_track:.1f} s each), "
          f"{len(report.skipped)} already trained; catalogue offset {report.score_offset:.3f}")
    return 0


def _enroll_engine(args) -> str:
    """--engine, else the existing database's own engine, else fingerprint (the default)."""
    if args.engine:
        return args.engine
    from .engines import catalog

    if (Path(args.db) / catalog.DB_FILE).is_file():
        return catalog.open_db(Path(args.db)).engine
    return "fingerprint"


def _index_params(args):
    """The vector index settings of ``enroll``'s flags (used by a new database only)."""
    if args.milvus_uri and args.index != "milvus":
        raise ConfigError("--milvus-uri needs --index milvus")
    return IndexParams(backend=args.index, qdrant_url=args.qdrant_url, milvus_uri=args.milvus_uri,
                       milvus_index=args.milvus_index)


def cmd_enroll(args) -> int:
    if _enroll_engine(args) == "fingerprint":
        from .training.enroll_fingerprint import enroll_fingerprint

        report = enroll_fingerprint(Path(args.catalog_dir), Path(args.db),
                                    negatives_dir=Path(args.negatives) if args.negatives else None,
                                    encoder_path=Path(args.encoder) if args.encoder else None,
                                    index=_index_params(args), update_vote_settings=args.update_vote,
                                    progress=not args.quiet)
        print(f"enrolled {len(report.enrolled)} tracks into {args.db} ({report.realtime_factor:.0f}x real time), "
              f"{len(report.skipped)} were already enrolled, {len(report.failed)} failed")
        for track, message in report.failed:
            print(f"  failed: {track}: {message}", file=sys.stderr)
        return 0
    if args.update_vote:
        raise ConfigError("--update-vote is for fingerprint databases (cnnbin has no vote)")
    from .training.enroll_cnnbin import enroll

    report = enroll(Path(args.catalog_dir), Path(args.db),
                    negatives_dir=Path(args.negatives) if args.negatives else None,
                    work_dir=Path(args.work) if args.work else None,
                    dataset=DatasetParams(positives_per_track=args.positives, windows_per_wrong=args.wrong_windows),
                    cnn=_cnn_params(args), train=_train_params(args), jobs=args.jobs, progress=not args.quiet)
    print(f"enrolled {len(report.trained)} tracks into {args.db} ({report.seconds_per_track:.1f} s each), "
          f"{len(report.skipped)} were already enrolled")
    return 0


def cmd_remove(args) -> int:
    from .engines import catalog
    from .training.enroll_cnnbin import recalibrate_catalog

    info = catalog.open_db(Path(args.db))
    if info.engine == "fingerprint":
        from .training.enroll_fingerprint import remove_tracks

        missing = remove_tracks(Path(args.db), args.track, progress=not args.quiet)
    else:
        missing = [t for t in args.track if not catalog.remove_track(Path(args.db), t)]
        recalibrate_catalog(Path(args.db))
    for t in missing:
        print(f"not enrolled: {t}", file=sys.stderr)
    return 1 if missing else 0


def cmd_identify(args) -> int:
    from .decision.files import analyse_signal
    from .decision.recognizer import Recognizer
    from .engines import metadata
    from .signal.audio import load_audio

    recognizer = Recognizer.open(Path(args.db))
    entries = metadata.read_metadata(Path(args.db))  # titles are looked up here, at the edge, by track id
    answered = 0
    for name in args.files:
        try:
            signal = load_audio(name, params=recognizer.audio)
            det = analyse_signal(recognizer, signal, source=name).answer
            line = {"file": name, **det.to_json(), **metadata.describe(entries, det.track)}
            answered += 1
        except AudiocopyError as exc:
            line = {"file": name, "match": None, "score": None, "offset_s": None, "title": None, "artist": None,
                    "error": str(exc)}
        if args.json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        elif "error" in line:
            print(f"{name}: error: {line['error']}", flush=True)
        else:
            title = f" ({' - '.join(x for x in (line['artist'], line['title']) if x)})" if line["title"] else ""
            print(f"{name}: {line['match'] or '(no match)'}{title}  score {line['score']:+.3f}  "
                  f"at {line['offset_s']} s", flush=True)
    # A batch with some unreadable files still answers the others (exit 0);
    # when not a single file could be read, the command failed.
    return 0 if answered else 1


def cmd_scan(args) -> int:
    from .atomic_files import atomic_write_bytes
    from .decision.scan import ScanState, collect_files, rows, scan_files, state_path, to_csv, to_json
    from .engines import catalog, metadata
    from .web.threads import single_threaded_blas

    db = Path(args.db)
    if args.out and Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give a file name")
    files = collect_files(args.paths, recursive=args.recursive)
    catalog.open_db(db)  # a missing or broken database is one clear error before any file is read
    stamp = catalog.read_generation(db)  # read before loading: a change while loading means a rescan next time
    # As in the server: OpenBLAS's spinning threads cost more than they give on products this small
    # (measured on 2 busy cores: 54 s of wall and 13 s of CPU for 5 min of audio, 8.6 s and 1.9 s with one).
    single_threaded_blas()
    state = ScanState(state_path(Path(args.out) if args.out else None, db), db)
    results = scan_files(db, files, state=state, generation=f"{stamp.number}:{stamp.token}", force=args.force,
                         progress=not args.quiet, jobs=args.jobs, worker_setup=single_threaded_blas)
    entries = metadata.read_metadata(db)

    def describe(track):
        return metadata.describe(entries, track)

    text = to_json(results, describe) if args.format == "json" else to_csv(rows(results, describe))
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    failed = [r for r in results if r.error is not None]
    print(f"scanned {len(results) - len(failed)} of {len(results)} files "
          f"({sum(r.cached for r in results)} unchanged since the last scan), "
          f"{sum(len(r.plays) for r in results)} plays, {len(failed)} failed", file=sys.stderr)
    for r in failed:
        print(f"  failed: {r.error}", file=sys.stderr)
    return 1 if len(failed) == len(results) else 0


def cmd_metadata(args) -> int:
    from .engines import metadata_csv

    if args.action == "export":
        sys.stdout.write(metadata_csv.export_csv(Path(args.db)))
        return 0
    report = metadata_csv.import_csv(Path(args.db), Path(args.file))
    print(f"imported {report.rows} rows into {args.db}: {report.changed} tracks changed")
    return 0


def cmd_evaluate(args) -> int:
    from .training.evaluate import evaluate_queries, read_truth

    truth = read_truth(Path(args.truth))
    summary = evaluate_queries(Path(args.db), truth, max_fpr=args.max_fpr, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_serve(args) -> int:
    from .web.launch import run
    from .web.settings import settings_from_args

    run(settings_from_args(args), announce=lambda line: print(line, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiocopy", description="Recognise licensed music in audio from 2.5 s fragments.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_catalog_commands(sub)
    _add_query_commands(sub)
    return p


def _dataset_args(q) -> None:
    """The dataset size options shared by ``dataset`` and ``enroll``."""
    q.add_argument("--positives", type=_positive_int, default=DatasetParams().positives_per_track,
                   help="augmented windows per licensed track (default %(default)s)")
    q.add_argument("--wrong-windows", type=_positive_int, default=DatasetParams().windows_per_wrong,
                   help="augmented windows per wrong training track (default %(default)s)")
    q.add_argument("--jobs", type=_positive_int, default=None, help="worker processes (default: all cores)")


def _add_data_commands(sub) -> None:
    """convert, dataset, train: the seed's offline steps."""
    c = sub.add_parser("convert", help="convert a folder of audio (mp3, ...) to mono WAV",
                       description="Convert every audio file in SRC_DIR to a mono 16-bit WAV in DST_DIR "
                                   "(skips files already converted, reports failures and carries on).")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--rate", type=_positive_int, default=22050, help="output sample rate in Hz (default 22050)")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("dataset", help="build the training dataset (positives + wrong tracks)",
                       description="Draw distorted 2.5 s windows from licensed and wrong tracks and store their "
                                   "features as on-disk shards with a manifest. Resumes when interrupted.")
    d.add_argument("--licensed", default="data/audio/wav_licensed", help="folder of licensed tracks")
    d.add_argument("--wrong", default="data/audio/wav_wrong", help="folder of wrong (negative) tracks, >= 100")
    d.add_argument("--out", default="data/datasets", help="dataset folder")
    _dataset_args(d)
    d.set_defaults(func=cmd_dataset)

    t = sub.add_parser("train", help="train one model per licensed track from a dataset (cnnbin)",
                       description="Train and calibrate the per-track models (--model) of a dataset into a recognizer "
                                   "database. Tracks already trained are skipped, so it resumes.")
    t.add_argument("--dataset", default="data/datasets")
    t.add_argument("--db", default="data/model")
    t.add_argument("--track", action="append", help="train only this track id (repeatable)")
    t.add_argument("--epochs", type=_positive_int, default=TrainParams().epochs,
                   help="maximum training epochs per track (early stopping picks the best)")
    _model_arg(t)
    t.set_defaults(func=cmd_train)


def _add_catalog_commands(sub) -> None:
    """enroll, remove: changing a recognizer database."""
    e = sub.add_parser("enroll", help="build a recognizer database from a folder of tracks",
                       description="Enrol every audio file of CATALOG_DIR (track id = file stem): build the "
                                   "dataset and train/calibrate the engine. Resumes when interrupted.")
    e.add_argument("catalog_dir")
    e.add_argument("--db", required=True)
    e.add_argument("--negatives", help="folder of wrong tracks to train against (>= 100 recommended)")
    e.add_argument("--engine", default=None, choices=["fingerprint", "cnnbin"],
                   help="fingerprint (default for a new DB: shared encoder + vector index, no training) or "
                        "cnnbin (one CNN trained per track); an existing DB keeps its own; see docs/benchmarks.md")
    e.add_argument("--encoder", help="fingerprint: encoder record (.json) for a new database "
                                     "(default: the shipped weights)")
    e.add_argument("--index", default="auto", choices=["auto", "faiss", "numpy", "qdrant", "milvus"],
                   help="fingerprint: vector index of a new database (default auto: faiss, else NumPy)")
    e.add_argument("--qdrant-url", help="fingerprint with --index qdrant: a Qdrant server, e.g. "
                                        "http://qdrant:6333 (default: embedded local mode inside DB; "
                                        "API key from QDRANT_API_KEY)")
    e.add_argument("--milvus-uri", help="fingerprint with --index milvus: the Milvus server or cluster proxy, e.g. "
                                        "http://127.0.0.1:19530 (token, if needed, from MILVUS_TOKEN; the URI and "
                                        "a per-database collection are stored in DB/fingerprint.json)")
    e.add_argument("--milvus-index", default="auto", choices=["auto", "IVF_FLAT", "IVF_PQ", "HNSW"],
                   help="fingerprint with --index milvus: index type (default auto: IVF_FLAT, IVF_PQ past "
                        f"{IndexParams().flat_max_vectors:,} vectors)")
    e.add_argument("--update-vote", action="store_true",
                   help="fingerprint: an existing database adopts this version's vote settings (the local "
                        "density) and threshold rule (a bounded false-positive rate), and both thresholds are "
                        "recalibrated on --negatives; no track is re-embedded")
    e.add_argument("--work", help="where to keep the dataset (default DB/dataset)")
    e.add_argument("--epochs", type=_positive_int, default=TrainParams().epochs,
                   help="maximum training epochs per track (early stopping picks the best)")
    _model_arg(e)
    _dataset_args(e)
    e.set_defaults(func=cmd_enroll)

    r = sub.add_parser("remove", help="remove tracks from a database",
                       description="Delete enrolled tracks and recalibrate (the catalogue offset for cnnbin, "
                                   "the threshold for fingerprint).")
    r.add_argument("--db", required=True)
    r.add_argument("track", nargs="+")
    r.set_defaults(func=cmd_remove)


def _add_query_commands(sub) -> None:
    """identify, evaluate, serve: using a database."""
    i = sub.add_parser("identify", help="identify audio files",
                       description="Identify each FILE. With --json, print one JSON line per file: "
                                   '{"file", "match" (track id or null), "score" (higher = more confident; '
                                   '> 0 exactly when there is a match), "offset_s", "title", "artist" (from the '
                                   'catalogue metadata, null when unknown)} and "error" for a bad file.')
    i.add_argument("--db", required=True)
    i.add_argument("--json", action="store_true", help="JSON lines output")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.set_defaults(func=cmd_identify)

    v = sub.add_parser("evaluate", help="measure accuracy on labelled queries",
                       description="Identify the files listed in a TSV (file<TAB>expected track id, empty for "
                                   "music that is not in the catalogue) and report hit, wrong-track and "
                                   "false-positive rates, at the calibrated decision and at the threshold that "
                                   "keeps false positives <= --max-fpr.")
    v.add_argument("--db", required=True)
    v.add_argument("--truth", required=True, help="TSV: file path, expected track id (may be empty)")
    v.add_argument("--max-fpr", type=float, default=0.01)
    v.set_defaults(func=cmd_evaluate)

    from .web.settings import add_arguments as add_server_arguments  # cheap: no aiohttp until serve runs

    _add_scan_commands(sub)
    s = sub.add_parser("serve", help="serve live recognition and the web app on http://127.0.0.1:8080",
                       description="Start the streaming recognition server (WebSocket /ws and the Live, Identify, "
                                   "Catalog, Plays and Monitors pages). Every option also reads the environment "
                                   "variable named in its help.")
    add_server_arguments(s)
    s.set_defaults(func=cmd_serve)


def _add_scan_commands(sub) -> None:
    """scan, metadata: archives and the catalogue's titles."""
    c = sub.add_parser("scan", help="list every play in long recordings (airchecks, DJ sets, archives)",
                       description="Run each audio file (or every audio file of a folder) through the same decision "
                                   "as a live stream and list every play with its evidence (the part of the track, "
                                   "time scale, pitch, alteration) and its title and artist. Files scanned before "
                                   "(same size, time and database) are not decoded again unless --force; "
                                   "undecodable files are reported and skipped. Exit 1 when every file failed.")
    c.add_argument("--db", required=True)
    c.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    c.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    c.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default csv)")
    c.add_argument("--out", help="write to FILE (atomically) instead of stdout; the scan state is kept beside it")
    c.add_argument("--force", action="store_true", help="rescan files scanned before")
    c.add_argument("--jobs", type=_positive_int, default=1,
                   help="files scanned at once, in worker processes that each load the database (default 1)")
    c.set_defaults(func=cmd_scan)

    m = sub.add_parser("metadata", help="import or export the catalogue's titles, artists and rights owners (CSV)",
                       description="import DB FILE.csv: replace the metadata of the tracks listed (columns "
                                   "track_id,title,artist,album,isrc,owner_id,rights_owner); all rows or none, "
                                   "bad rows named by line. export DB: every enrolled track as CSV on stdout.")
    msub = m.add_subparsers(dest="action", required=True)
    mi = msub.add_parser("import", help="import metadata from a CSV file (all-or-nothing)")
    mi.add_argument("db")
    mi.add_argument("file", metavar="FILE.csv")
    me = msub.add_parser("export", help="print the metadata of every enrolled track as CSV")
    me.add_argument("db")
    m.set_defaults(func=cmd_metadata)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter is not for users
    try:
        return args.func(args)
    except AudiocopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
