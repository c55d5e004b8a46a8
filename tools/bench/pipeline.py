"""The accuracy benchmark's steps in order: what ``tools/evaluate.py`` runs.

Place in ``tools/bench``: the top; every other module is one step of it.
Each step is cached under ``--work`` (rerunning skips what is complete, so an
interrupted run resumes; delete a step's output to redo it)::

    WORK/config.json                 settings the folder was made with (a rerun with others is refused)
    WORK/split.json                  the split (``split``)
    WORK/catalog|wrong|unseen/       symlinks into the corpus
    WORK/speech/                     the espeak-ng speech pool (``room``)
    WORK/queries/                    query WAVs, truth.tsv, params.json (``queries``)
    WORK/db-<engine>/                the enrolled database (``enrol``)
    WORK/dataset/                    cnnbin's training dataset
    WORK/timings.json                enrolment wall times and peak RAM
    WORK/answers-<engine>.json       one answer per query (tied to the database's content)
    WORK/results-<engine>.json       everything above in one file
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import shlex
import sys
from pathlib import Path

from .common import REPO, BenchError, check_work_config, generic_corpus, read_json, write_json
from .conditions import DEFAULT, LEGACY, QUICK, QUICK_NEW, condition_set
from .corpus import Track, lay_out_split, read_corpus

log = logging.getLogger(__name__)


def engine_label(args) -> str:
    """``fingerprint``, ``cnnbin-embedding`` or ``cnnbin-spectrogram``."""
    return "fingerprint" if args.engine == "fingerprint" else f"cnnbin-{args.model}"


def settings(args, tracks: list[Track]) -> dict:
    """What the work folder's contents depend on (compared on every rerun)."""
    if args.conditions:
        names = args.conditions
    elif args.quick:
        names = QUICK if args.legacy else QUICK_NEW
    else:
        names = [c.name for c in (LEGACY if args.legacy else DEFAULT)]
    return {"corpus": str(args.corpus.resolve()), "corpus_tracks": len(tracks), "seed": args.seed,
            "catalog": args.catalog, "wrong": args.wrong, "unseen": args.unseen, "k": args.k,
            "legacy": args.legacy, "quick": args.quick, "conditions": names,
            "dataset_flags": ["--positives", "60", "--wrong-windows", "8"] if args.quick else [],
            "train_flags": ["--epochs", "3"] if args.quick else []}


def make_split(args, tracks: list[Track]) -> dict:
    """The split the settings ask for (package split, or the track split with ``--legacy``)."""
    from .split import package_split, track_split

    if args.legacy:
        return track_split(tracks, seed=args.seed, n_catalog=args.catalog, n_wrong=args.wrong, n_unseen=args.unseen)
    return package_split(tracks, seed=args.seed, n_catalog=args.catalog, n_unseen=args.unseen, n_wrong=args.wrong)


def check_provenance(args, split: dict) -> dict:
    """The encoder's record against the split (``provenance``); a dict for the results."""
    from .provenance import check_encoder, generated_text, read_record

    shown = display_path(args.encoder)
    record = read_record(args.encoder)
    check = check_encoder(split, record, allow_unchecked=args.allow_unchecked_encoder, name=f"`{shown}`")
    sentence = check.sentence
    if not check.checked and args.encoder_split:
        from .provenance import reconstruction_text
        from .split import read_split

        sentence += reconstruction_text(split, record.get("training") or {}, read_split(args.encoder_split),
                                        display_path(args.encoder_split))
    return {"checked": check.checked, "n_ids": check.n_ids, "sentence": sentence,
            "generated": check.generated, "generated_text": generated_text(check.generated),
            "encoder": {"path": shown, "sha256": record.get("weights_sha256", "?")}}


def display_path(path: Path) -> str:
    """A path as a report shows it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def prepare(args, tools) -> tuple[dict, dict, dict, list[Track]]:
    """Corpus, settings, split, provenance and the role folders; returns (cfg, split, provenance, tracks)."""
    from .split import describe, write_split

    tracks = read_corpus(args.corpus)
    cfg = settings(args, tracks)
    try:
        condition_set(cfg["conditions"])  # unknown names fail before anything is written
    except ValueError as exc:
        raise BenchError(f"--conditions: {exc}") from None
    args.work.mkdir(parents=True, exist_ok=True)
    check_work_config(args.work, cfg)
    split = make_split(args, tracks)
    write_split(args.work / "split.json", split)
    log.info("%s", describe(split))
    provenance = check_provenance(args, split)
    lay_out_split(args.work, split, {t.id: t for t in tracks})
    return cfg, split, provenance, tracks


def make_queries(args, cfg: dict, split: dict, tracks: list[Track], tools) -> tuple[list, dict]:
    """Plan and write the queries (and the speech pool when a condition needs it)."""
    from .queries import generate_queries, plan_queries
    from .room import speech_pool

    from .corpus import audible_spans

    by_id = {t.id: t for t in tracks}
    conditions = condition_set(cfg["conditions"])
    # The pre-restructure plan took whole tracks; the new one avoids the silence some renders end in.
    spans = None if args.legacy else audible_spans(tracks, args.work / "audible.json")
    queries = plan_queries(split, by_id, conditions=conditions, k=args.k, seed=args.seed, spans=spans)
    speech = None
    if any(c.kind in ("speech", "room") for c in conditions):
        speech = speech_pool(args.work, tools, seed=args.seed, rate=tracks[0].rate)
    gen = generate_queries(args.work, queries, by_id, tools, seed=args.seed, jobs=args.jobs, speech=speech)
    if gen["generated"]:
        log.info("queries: made %d of %d in %.1f s", gen["generated"], gen["queries"], gen["seconds"])
    if args.same_queries_as:
        gen["same_as"] = compare_queries(args.work / "queries", args.same_queries_as / "queries", queries)
    return queries, gen


def compare_queries(mine: Path, theirs: Path, queries: list) -> dict:
    """How many query files are byte-identical to another work folder's (e.g. the pre-restructure run's)."""
    def digest(path: Path) -> str | None:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    same = 0
    for q in queries:
        theirs_digest = digest(theirs / q.file)
        same += theirs_digest is not None and digest(mine / q.file) == theirs_digest
    log.info("queries: %d of %d byte-identical to %s", same, len(queries), theirs)
    return {"folder": str(theirs), "files": len(queries), "identical": same}


def enrol(args, cfg: dict, split: dict) -> dict:
    """Enrol the catalogue with the chosen engine; returns its timings."""
    from .enrol import enrol_cnnbin, enrol_fingerprint

    if args.engine == "fingerprint":
        return enrol_fingerprint(args.work, split["catalog"], encoder_path=args.encoder)
    return enrol_cnnbin(args.work, split["catalog"], model=args.model, jobs=args.jobs,
                        dataset_flags=cfg["dataset_flags"], train_flags=cfg["train_flags"])


def answer(args, queries: list) -> dict:
    """Every query's answer from the engine's database (``scoring.identify``)."""
    from .enrol import db_dir
    from .scoring import identify

    db = db_dir(args.work, args.engine, args.model)
    items = [(q.file, q.expected, q.condition) for q in queries]
    return identify(args.work / "queries", items, db, args.work / f"answers-{engine_label(args)}.json")


def cnnbin_extras(args, cfg: dict, queries: list, timings: dict) -> dict:
    """cnnbin's enrolment cost and scoring speed for the report."""
    import numpy as np

    from audiocopy.engines import catalog
    from audiocopy.signal.audio import load_audio

    from .distortions import fit_length
    from .enrol import cnnbin_stats, db_dir
    from .machine import busy_cores
    from .speed import measure_cnnbin_speed

    db = db_dir(args.work, "cnnbin", args.model)
    stats = cnnbin_stats(db)
    audio = catalog.open_db(db).audio
    clean = [q for q in queries if q.condition == "clean"][:32] or queries[:32]
    windows = np.stack([fit_length(load_audio(args.work / "queries" / q.file, params=audio),
                                   audio.window_samples)[0] for q in clean])
    busy = busy_cores()
    speed = {**measure_cnnbin_speed(db, windows, args.work / "speed"), "busy_cores_before": busy}
    settings_text = ("dataset " + " ".join(cfg["dataset_flags"]) if cfg["dataset_flags"] else "dataset CLI defaults")
    settings_text += ", " + ("train " + " ".join(cfg["train_flags"]) if cfg["train_flags"] else "training CLI defaults")
    return {"dataset": timings.get("dataset"), "train": timings.get(f"train-{args.model}"), "db": stats,
            "speed": speed, "settings": settings_text}


def command_line(argv: list[str] | None) -> str:
    """The command as the report shows it (corpus folder generic; reuse flags dropped: reproducing means enrolling)."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--skip-enrol"]
    return shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/evaluate.py", *generic_corpus(args)])


def run(args, argv=None) -> dict | None:
    """Run every step (stopping after ``args.stop_after``); returns the results, or None when stopped early."""
    from .conditions import condition_set as conds
    from .doc import update_section
    from .external import check_tools
    from .machine import load_note, machine_info
    from .queries import fragment_seconds
    from .report import render_accuracy
    from .scoring import accuracy_tables

    tools = check_tools(need_speech=not args.legacy)
    cfg, split, provenance, tracks = prepare(args, tools)
    if args.stop_after == "split":
        return None
    queries, gen = make_queries(args, cfg, split, tracks, tools)
    if args.stop_after == "queries":
        return None
    timings = read_json(args.work / "timings.json", {}) if args.skip_enrol else enrol(args, cfg, split)
    if args.stop_after == "enrol":
        return None
    answers = answer(args, queries)
    acc = accuracy_tables(answers["rows"], conds(cfg["conditions"]))
    label = engine_label(args)
    results_file = args.work / f"results-{label}.json"
    res = {"date": datetime.date.today().isoformat(), "command": command_line(argv), "machine": machine_info(),
           "load": answers.get("load") or load_note(), "tool_versions": tools.versions, "split": split,
           "corpus_tracks": len(tracks),
           "engine_label": label, "encoder": provenance.pop("encoder"), "provenance": provenance,
           "config": {**cfg, "jobs": args.jobs}, "fragment_seconds": fragment_seconds(),
           "queries": {"count": len(queries), "generation": gen}, "accuracy": acc,
           "identify": {k: answers[k] for k in ("seconds", "per_query_ms")}, "timings": timings,
           "calibration": db_calibration(args),
           "results_file": display_path(results_file)}
    if args.before:
        res["before"] = {**read_before(args.before), "commit": args.before_commit,
                         "old_work": str(args.same_queries_as or "OLD_WORK"), "old_fp_work": str(args.before.parent)}
        if args.before_answers:
            res["before"]["per_query"] = compare_answers(read_json(args.before_answers, {}), answers["rows"])
    if args.engine == "cnnbin":
        res["cnnbin"] = cnnbin_extras(args, cfg, queries, timings)
    write_json(results_file, {**res, "answers": answers["rows"]})
    section = ("restructure-" if args.legacy else "accuracy-") + label
    doc = args.doc or (args.work / "benchmarks.md" if args.quick else REPO / "docs" / "benchmarks.md")
    res["section"], res["doc"] = render_accuracy(res), str(doc)
    update_section(doc, section, res["section"])
    return res


def db_calibration(args) -> dict:
    """The enrolled database's calibration record (thresholds)."""
    from audiocopy.engines import catalog

    from .enrol import db_dir

    return catalog.open_db(db_dir(args.work, args.engine, args.model)).calibration


def compare_answers(before: dict, rows: list[dict]) -> dict:
    """Query by query: this run's answers against the old code's window and live paths (``old_answers.py``)."""
    old = {r["file"]: r for r in before.get("rows", [])}
    if set(old) != {r["file"] for r in rows}:
        raise BenchError("--before-answers was made on other query files than this run's")
    window = [r for r in rows if old[r["file"]]["decided"] != r["decided"]]
    gaps = [abs(old[r["file"]]["score"] - r["top_score"]) for r in rows]
    live_gaps = [abs(old[r["file"]]["live_score"] - r["top_score"]) for r in rows]
    return {"queries": len(rows), "threshold": before.get("threshold"),
            "differ_live": sum(old[r["file"]]["live_decided"] != r["decided"] for r in rows),
            "max_gap_live": max(live_gaps, default=0.0), "max_gap_window": max(gaps, default=0.0),
            "median_gap_window": sorted(gaps)[len(gaps) // 2] if gaps else 0.0,
            "top_differs": sum(old[r["file"]]["top"] != r["top"] for r in rows),
            "top_differs_positive": sum(old[r["file"]]["top"] != r["top"] and r["expected"] is not None
                                        for r in rows),
            "differ_window": [{"file": r["file"], "expected": r["expected"], "before": old[r["file"]]["decided"],
                               "before_margin": old[r["file"]]["score"], "after": r["decided"],
                               "after_margin": r["top_score"]} for r in window]}


def read_before(path: Path) -> dict:
    """The pre-restructure fingerprint accuracy (``accuracy.json`` of its ``bench_fingerprint.py``)."""
    before = read_json(path)
    if not isinstance(before, dict) or "accuracy" not in before:
        raise BenchError(f"{path} is not an accuracy.json of the pre-restructure tools/bench_fingerprint.py")
    return {"accuracy": before["accuracy"], "stream_accuracy": before.get("stream_accuracy"),
            "threshold": before.get("enrol", {}).get("threshold")}
