#!/usr/bin/env python3
"""Stream benchmark (issue #11): long radio programmes through two acoustic chains and the server's ``/ws`` path.

What it measures. Programmes of catalogue excerpts (some sped up, stretched
or pitch-shifted), non-catalogue music, crossfades and a presenter talking
over intros and between songs are rendered with sox and espeak-ng, sent
through a *broadcast* chain (compression, MP3) and a *room* chain (speaker,
room, noise and babble, microphone, AGC, 48 kHz), and streamed through a
real ``audiocopy serve`` as a client would stream them. The plays that
come back, and the "now playing" answer of every window, are scored
against the truth the planner recorded: plays found, correct plays, false
plays per hour, pieces per found play, start and end error, the time
scale and track positions a play reports, how often "now playing" names
the song. The figures go to the ``broadcast`` section of ``docs/benchmarks.md``.

Either engine. ``--engine fingerprint`` (the default, the shipped engine)
enrols the catalogue with ``audiocopy enroll --negatives``; ``--engine
cnnbin`` trains one embedding head per catalogue track on the shipped
encoder as ``tools/evaluate.py --engine cnnbin`` does (``audiocopy dataset``
and ``audiocopy train``, then the play threshold on the dataset's
hold-out of whole packages). Both stream the same audio through the same
server code. Each engine keeps its own database, server state, raw
answers, results file and docs section (``ENGINE_OUTPUTS``), so a run of
one never overwrites the other's.

Steps (``tools/bench``): the package split (``split``) and its role
folders; the catalogue's database (cached, rebuilt when the catalogue, the
negatives, the encoder's SHA-256 or the decision's code change); programme plans (``broadcast_programme``),
audio (``broadcast_render``), chains (``broadcast_chains``), streaming
(``broadcast_stream``), scoring (``broadcast_score``) and the report
(``broadcast_report``). Every piece of audio lives under ``--work``
(default ``/work/bench_broadcast``) and is reused while its inputs are
unchanged; streaming and scoring always run again (they measure the code).

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_broadcast.py --corpus CORPUS_DIR --allow-unchecked-encoder
    PYTHONPATH=. .venv/bin/python tools/bench_broadcast.py --corpus CORPUS_DIR --programmes 2 --minutes 30 \\
        --allow-unchecked-encoder --no-doc      # a smaller run, report in WORK/benchmarks.md only
    PYTHONPATH=. .venv/bin/python tools/bench_broadcast.py --corpus CORPUS_DIR --engine cnnbin

Exit status 0, or 1 with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:  # run as a script from anywhere: the package lives beside tools/
        sys.path.insert(0, str(_p))

from bench.common import (  # noqa: E402
    BenchError,
    generic_corpus,
    ids_sha256,
    read_json,
    run_logged,
    write_json,
    write_run_results,
)

log = logging.getLogger("bench_broadcast")

#: Where each engine's database, cache key, raw answers, server state and log, and results live under
#: ``--work``. The fingerprint engine keeps the names of the runs before there was a choice, so the raw
#: results the docs point to stay where they are.
ENGINE_OUTPUTS = {
    "fingerprint": {"db": "db", "key": "db-key.json", "streams": "streams", "state": "server-state",
                    "log": "server.log", "results": "results.json"},
    "cnnbin": {"db": "db-cnnbin-embedding", "key": "db-cnnbin-key.json", "streams": "streams-cnnbin",
               "state": "server-state-cnnbin", "log": "server-cnnbin.log", "results": "results-cnnbin.json"},
}


def output(args, what: str) -> Path:
    """The path of ``what`` (a key of ``ENGINE_OUTPUTS``) for this run's engine."""
    return args.work / ENGINE_OUTPUTS[args.engine][what]


def parse_args(argv=None) -> argparse.Namespace:
    from audiocopy.encoder.artifact import SHIPPED_ENCODER

    p = argparse.ArgumentParser(description="Stream benchmark: radio programmes through a broadcast and a room "
                                            "chain, streamed through /ws, scored against their truth.")
    p.add_argument("--corpus", required=True, type=Path, help="folder of WAV tracks with manifest-dev.tsv")
    p.add_argument("--work", type=Path, default=Path("/work/bench_broadcast"),
                   help="folder for the database, audio and results (default %(default)s; never the repository)")
    p.add_argument("--programmes", type=int, default=4, help="programmes per chain (default 4)")
    p.add_argument("--minutes", type=float, default=40.0, help="length of a programme, about (default 40)")
    p.add_argument("--chains", default="broadcast,room", help="comma-separated chains (default broadcast,room)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, programmes and chains (default 0)")
    p.add_argument("--catalog", type=int, default=50, help="catalogue tracks (default 50)")
    p.add_argument("--wrong", type=int, default=100, help="wrong tracks: calibration negatives (default 100)")
    p.add_argument("--unseen", type=int, default=30, help="unseen tracks: the non-catalogue music (default 30)")
    p.add_argument("--engine", choices=sorted(ENGINE_OUTPUTS), default="fingerprint",
                   help="engine to enrol and stream with (default fingerprint, the shipped one)")
    p.add_argument("--jobs", type=int, default=2, help="cnnbin: processes building its dataset (default 2)")
    p.add_argument("--encoder", type=Path, default=SHIPPED_ENCODER,
                   help="fingerprint encoder record (cnnbin's heads always read the shipped encoder)")
    p.add_argument("--allow-unchecked-encoder", action="store_true",
                   help="run with an encoder whose record has no trained_track_ids (the report says so)")
    p.add_argument("--encoder-split", type=Path, help="for an unchecked encoder: the split.json its record names")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="report file")
    p.add_argument("--no-doc", action="store_true", help="write the report to WORK/benchmarks.md instead")
    p.add_argument("--worst", type=int, default=8, help="worst songs listed per chain (default 8)")
    args = p.parse_args(argv)
    args.chains = [c.strip() for c in args.chains.split(",") if c.strip()]
    from bench.broadcast_chains import CHAINS

    bad = [c for c in args.chains if c not in CHAINS]
    if bad or not args.chains:
        p.error(f"--chains: unknown {bad or 'none given'} (known: {', '.join(CHAINS)})")
    if args.programmes < 1 or not args.minutes >= 1:
        p.error("--programmes must be ≥ 1 and --minutes ≥ 1")
    if args.jobs < 1:
        p.error("--jobs must be ≥ 1")
    if args.engine == "cnnbin" and args.encoder.resolve() != SHIPPED_ENCODER.resolve():
        # ``audiocopy train`` embeds with the shipped encoder; a report naming another one would lie.
        p.error("--encoder: cnnbin's heads are trained on the shipped encoder's embeddings; put another "
                "encoder's weights in place of the shipped ones to measure cnnbin with it")
    if args.work.resolve().is_relative_to(REPO):
        p.error(f"--work {args.work} is inside the repository; generated audio belongs elsewhere")
    args.work = args.work.resolve()
    return args


def prepare_split(args, tools) -> tuple[dict, list, dict]:
    """Corpus, package split, role folders and the encoder's provenance; (split, tracks, provenance)."""
    from bench.corpus import lay_out_split, read_corpus
    from bench.pipeline import check_provenance
    from bench.split import describe, package_split, write_split

    tracks = read_corpus(args.corpus)
    split = package_split(tracks, seed=args.seed, n_catalog=args.catalog, n_unseen=args.unseen, n_wrong=args.wrong)
    args.work.mkdir(parents=True, exist_ok=True)
    write_split(args.work / "split.json", split)
    log.info("%s", describe(split))
    provenance = check_provenance(args, split)
    lay_out_split(args.work, split, {t.id: t for t in tracks})
    return split, tracks, provenance


def decision_key() -> str:
    """What the two thresholds depend on besides the data: the decision's and calibration's parameters and code.

    A hash of ``DecisionParams()``, ``CalibrationParams()`` and of the
    modules that turn windows into plays and calibrate both thresholds; when
    it changes, a reused database's thresholds are stale and are
    recalibrated.
    """
    import hashlib

    from audiocopy.config import CalibrationParams, DecisionParams, as_dict

    h = hashlib.sha256(json.dumps(as_dict(DecisionParams()), sort_keys=True).encode())
    h.update(json.dumps(as_dict(CalibrationParams()), sort_keys=True).encode())
    for rel in ("decision/stream.py", "decision/hypothesis.py", "decision/backdate.py", "decision/calibration.py",
                "decision/files.py", "training/play_calibration.py", "training/calibration_windows.py"):
        h.update((REPO / "audiocopy" / rel).read_bytes())
    return h.hexdigest()[:16]


def database(args, split: dict) -> dict:
    """The catalogue's database for ``args.engine`` (see ``fingerprint_database`` and ``cnnbin_database``)."""
    return cnnbin_database(args, split) if args.engine == "cnnbin" else fingerprint_database(args, split)


def fingerprint_database(args, split: dict) -> dict:
    """``WORK/db``: the catalogue enrolled by the CLI, rebuilt only when catalogue, negatives or encoder change."""
    from bench.enrol import child_env, fingerprint_complete
    from bench.machine import run_measured

    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.engines import catalog

    db = output(args, "db")
    encoder_sha = read_encoder_record(args.encoder)["weights_sha256"]
    key = {"catalog": ids_sha256(split["catalog"]), "wrong": ids_sha256(split["wrong"]), "encoder": encoder_sha}
    old = read_json(output(args, "key"), {})
    cmd = [sys.executable, "-m", "audiocopy.cli", "-q", "enroll", "--db", str(db), str(args.work / "catalog"),
           "--negatives", str(args.work / "wrong"), "--engine", "fingerprint"]
    if args.encoder.resolve() != SHIPPED_ENCODER.resolve():
        cmd += ["--encoder", str(args.encoder)]
    complete = fingerprint_complete(db, split["catalog"], encoder_sha)
    if old.get("key") == key and complete and old.get("decision") == decision_key():
        note = f"reused from an earlier run (enrolled in {old['enrol']['wall_s']:.0f} s)"
    elif old.get("key") == key and complete:
        # The play threshold belongs to the decision that will read it: a
        # changed rule or parameter is recalibrated (the CLI skips the
        # enrolled tracks and redoes both thresholds on the negatives).
        measured = run_measured(cmd, child_env())
        old = {**old, "decision": decision_key(), "recalibrated": measured}
        write_json(output(args, "key"), old)
        note = (f"enrolled in an earlier run ({old['enrol']['wall_s']:.0f} s), both thresholds recalibrated for "
                f"this decision code in {measured['wall_s']:.0f} s")
    else:
        shutil.rmtree(db, ignore_errors=True)
        measured = run_measured(cmd, child_env())
        if not fingerprint_complete(db, split["catalog"], encoder_sha):
            raise BenchError(f"enrolment did not enrol every catalogue track into {db} (see its output above)")
        old = {"key": key, "enrol": measured, "decision": decision_key()}
        write_json(output(args, "key"), old)
        note = f"enrolled in {measured['wall_s']:.0f} s"
    info = catalog.open_db(db)
    return {"path": str(db), "tracks": len(catalog.track_records(db)), "calibration": info.calibration,
            "note": note, "enrol": old["enrol"]}


def cnnbin_database(args, split: dict) -> dict:
    """``WORK/db-cnnbin-embedding``: one head per catalogue track, trained and calibrated as the accuracy
    benchmark does (``bench.enrol.enrol_cnnbin``).

    Rebuilt whole when the catalogue, the negatives, the shipped encoder or
    the decision's code (``decision_key``: the play threshold belongs to it)
    change; the dataset (``WORK/dataset``) is kept while the catalogue and
    the negatives are, since its windows depend on nothing else.
    """
    from bench.enrol import cnnbin_complete, enrol_cnnbin

    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record
    from audiocopy.engines import catalog

    db, key_file = output(args, "db"), output(args, "key")
    data = {"catalog": ids_sha256(split["catalog"]), "wrong": ids_sha256(split["wrong"])}
    key = {**data, "encoder": read_encoder_record(SHIPPED_ENCODER)["weights_sha256"], "decision": decision_key()}
    old = read_json(key_file, {})
    if old.get("key") == key and cnnbin_complete(db, split["catalog"]):
        note = f"reused from an earlier run ({_cnnbin_enrol_text(old['enrol'])})"
    else:
        if not _dataset_fits(args.work / "dataset", split):
            shutil.rmtree(args.work / "dataset", ignore_errors=True)
        shutil.rmtree(db, ignore_errors=True)
        timings = enrol_cnnbin(args.work, split["catalog"], model="embedding", jobs=args.jobs, dataset_flags=[],
                               train_flags=[])
        if not cnnbin_complete(db, split["catalog"]):
            raise BenchError(f"training did not give every catalogue track a calibrated head in {db} "
                             "(see its output above)")
        old = {"key": key, "enrol": {k: timings.get(k) for k in ("dataset", "train-embedding", "play-embedding")}}
        write_json(key_file, old)
        note = _cnnbin_enrol_text(old["enrol"])
    info = catalog.open_db(db)
    return {"path": str(db), "tracks": len(catalog.track_records(db)), "calibration": info.calibration,
            "note": note, "enrol": old["enrol"]}


def _dataset_fits(dataset: Path, split: dict) -> bool:
    """Whether the dataset under ``dataset`` was drawn from this split's catalogue and wrong tracks, in this
    work folder (a complete dataset is otherwise reused as it is, whatever it holds)."""
    manifest = read_json(dataset / "manifest.json", {})
    sources = manifest.get("sources") or []
    roles = {role: {s["track_id"] for s in sources if s.get("role") == role} for role in ("licensed", "wrong")}
    here = all(Path(s.get("path", "")).is_relative_to(dataset.parent) for s in sources)  # links: not resolved
    return bool(sources) and here and roles == {"licensed": set(split["catalog"]), "wrong": set(split["wrong"])}


def _cnnbin_enrol_text(enrol: dict) -> str:
    """How long the cnnbin database took: dataset, heads, play threshold (a reused dataset says so)."""
    dataset, train, play = (enrol.get(k) or {} for k in ("dataset", "train-embedding", "play-embedding"))
    built = ("a complete dataset found in the work folder was used" if "wall_s" not in dataset else
             f"dataset built in {dataset['wall_s']} s{' (resumed)' if dataset.get('resumed') else ''}")
    return (f"{built}, heads trained in {train.get('wall_s', '?')} s, play threshold calibrated in "
            f"{play.get('wall_s', '?')} s")


def make_programmes(args, split: dict, tracks: list, tools) -> tuple[list, dict, float]:
    """Plans and their clean renders; (plans, name -> clean WAV, seconds spent)."""
    from bench.broadcast_programme import Source, plan_programme
    from bench.broadcast_render import presenter_clips, render_cached
    from bench.corpus import audible_spans

    t0 = time.perf_counter()
    spans = audible_spans(tracks, args.work / "audible.json")
    by_id = {t.id: t for t in tracks}
    songs = [Source(i, by_id[i].duration, spans[i]) for i in split["catalog"]]
    others = [Source(i, by_id[i].duration, spans[i]) for i in split["unseen"]]
    plans = [plan_programme(f"p{k + 1}", songs, others, seed=args.seed, minutes=args.minutes)
             for k in range(args.programmes)]
    clips = presenter_clips(args.work, tools, seed=args.seed)
    wavs = {t.id: t.wav for t in tracks}
    clean = {p.name: render_cached(p, args.work / "programmes" / p.name, wavs, tools, clips) for p in plans}
    return plans, clean, time.perf_counter() - t0


def make_chains(args, plans: list, clean: dict, tools) -> tuple[dict, float]:
    """Every programme through every chain; ({chain: {programme: apply_chain result}}, seconds spent)."""
    from bench.broadcast_chains import apply_chain
    from bench.room import speech_pool

    t0 = time.perf_counter()
    babble = speech_pool(args.work, tools, seed=args.seed, rate=44100).clips if "room" in args.chains else None
    out = {c: {} for c in args.chains}
    for p in plans:
        for c in args.chains:
            out[c][p.name] = apply_chain(c, tools, clean[p.name], args.work / "programmes" / p.name,
                                         seed=args.seed, programme=p.name, clips=babble)
    return out, time.perf_counter() - t0


def stream_and_score(args, db: dict, plans: list, chained: dict) -> tuple[dict, dict, float]:
    """Stream every chained programme through one server, keep the raw answers, score them per chain."""
    from bench.broadcast_score import breakdown, score_stream, summarise, worst_items
    from bench.broadcast_stream import stream_all

    t0 = time.perf_counter()
    jobs = [{"name": f"{c}-{p.name}", "wav": chained[c][p.name]["wav"], "rate": chained[c][p.name]["rate"]}
            for c in args.chains for p in plans]
    raw = stream_all(Path(db["path"]), jobs, state=output(args, "state"), log_path=output(args, "log"))
    stream_s = time.perf_counter() - t0
    for name, r in raw.items():
        write_json(output(args, "streams") / f"{name}.json", r)
    scored = {c: [score_stream(p.to_json(), raw[f"{c}-{p.name}"]["plays"], raw[f"{c}-{p.name}"]["windows"])
                  for p in plans] for c in args.chains}
    every = [s for c in args.chains for s in scored[c]]
    res = {"summary": {**{c: summarise(scored[c]) for c in args.chains}, "all": summarise(every)},
           "breakdown": {c: breakdown(scored[c]) for c in args.chains},
           "worst": {c: worst_items(scored[c], args.worst) for c in args.chains},
           "false": {c: [f for s in scored[c] for f in s["false"]] for c in args.chains},
           "scored": scored}
    stats = {"windows": sum(len(r["windows"]) for r in raw.values()),
             "dropped": sum(r["stopped"]["dropped"] for r in raw.values()),
             "problems": sum(len(r["problems"]) for r in raw.values()),
             "audio_hours": round(sum(r["stopped"]["seconds"] for r in raw.values()) / 3600, 4),
             "seconds": round(stream_s, 1), "per_stream_s": {n: r["wall_s"] for n, r in raw.items()}}
    stats["x_realtime"] = round(stats["audio_hours"] * 3600 / stream_s, 1)
    return res, stats, stream_s


def audio_made(args, plans: list, chained: dict, since: float) -> dict:
    """Minutes the audio took when it was made (None where unrecorded); ``this_run``: all of it made now.

    since: when this run started (epoch s); a record newer than that was written by this run.
    """
    folders = [args.work / "programmes" / p.name for p in plans]
    render = [read_json(f / "render.json", {}).get("wall_s") for f in folders]
    chains = [r.get("wall_s") for c in chained.values() for r in c.values()]
    records = [f / "render.json" for f in folders] + [f / f"{c}.json" for f in folders for c in chained]
    return {"render_min": None if None in render else round(sum(render) / 60, 1),
            "chains_min": None if None in chains else round(sum(chains) / 60, 1),
            "this_run": all(r.stat().st_mtime >= since for r in records)}


def command_line(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/bench_broadcast.py", *generic_corpus(args)])


def run(args, argv=None) -> dict:
    """Every step in order; returns the results (also written to the engine's results file and the report)."""
    from bench.broadcast_report import render_section, section_name
    from bench.doc import update_section
    from bench.external import check_tools
    from bench.machine import load_note, machine_info

    t_start, since = time.perf_counter(), time.time()
    tools = check_tools(need_speech=True)
    split, tracks, provenance = prepare_split(args, tools)
    db = database(args, split)
    plans, clean, render_s = make_programmes(args, split, tracks, tools)
    chained, chains_s = make_chains(args, plans, clean, tools)
    load = load_note()
    scores, streaming, stream_s = stream_and_score(args, db, plans, chained)
    items = [it for p in plans for it in p.items]
    res = {"date": datetime.date.today().isoformat(), "command": command_line(argv), "machine": machine_info(),
           "load": load, "tool_versions": tools.versions, "split": split, "corpus_tracks": len(tracks),
           "encoder": provenance.pop("encoder"), "provenance": provenance, "database": db,
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "chains": args.chains, "programme_minutes": ", ".join(f"{p.seconds / 60:.1f}" for p in plans) + " min",
           "counts": {k: sum(it.kind == k for it in items) for k in ("song", "other", "talk")},
           "chain_params": chained, "streaming": streaming,
           "timings": {"render_s": round(render_s, 1), "chains_s": round(chains_s, 1), "stream_s": round(stream_s, 1)},
           "audio_made": audio_made(args, plans, chained, since), "engine": args.engine, **scores}
    res["counts"]["songs"] = res["counts"].pop("song")
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_run_results(output(args, "results"), res, datetime.datetime.now(datetime.timezone.utc))
    doc = args.work / "benchmarks.md" if args.no_doc else args.doc
    update_section(doc, section_name(args.engine), render_section(res))
    res["doc"] = str(doc)
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    res = run_logged(run, args, argv)
    if res is None:
        return 1
    for c in [*res["chains"], "all"]:
        s = res["summary"][c]
        print(f"{c:9s} recall {s['recall']} %  precision {s['precision']} %  false/h {s['false_per_hour']}  "
              f"pieces {s['pieces']}  start {s['start_error_s']['median']} s  end {s['end_error_s']['median']} s  "
              f"time scale {s['time_scale_error']['median']}")
    print(f"report: {res['doc']}; raw results: {res['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
