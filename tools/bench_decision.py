#!/usr/bin/env python3
"""Offline replay of the stream decision on the stream benchmark: tune ``DecisionParams`` in seconds per variant.

Place: beside ``tools/bench_broadcast.py`` (issue #11). That benchmark
streams its programmes through a real server, minutes per run; almost all
of it is the engine scoring windows. The decision that turns windows into
plays (``audiocopy.decision.stream.StreamDecision``) is a pure function of
those windows' detections, so this tool computes every window's
``Detection`` once (``bench/decision_data.py``, cached under ``--work``),
then replays the decision for each parameter variant
(``bench/decision_replay.py``): the play threshold recalibrated on the
database's calibration negatives as enrolment would for that variant, the
programmes replayed with it, plays and "now playing" scored by
``bench/broadcast_score.py`` against the truth, exactly as
``bench_broadcast`` scores the server's answers.

Honest tuning: choose parameters on one seed's programmes (``--seed 1``),
then look once at another (``--seed 0``, the one ``bench_broadcast``
reports). The database and its calibration negatives are always
``bench_broadcast``'s (``--broadcast-work``); seed 0's programmes are its
renders, any other seed is rendered here with its own code.

Variants: ``--vary FIELD=v1,v2`` (a ``DecisionParams`` field, read as a
configuration reads it: a margin field in the fingerprint engine's units,
scaled by the replayed engine's unit with the rest; or ``margin_unit``:
the unit itself; repeat for a grid, every combination is run) and ``--rule FIELD=v1,v2`` (a
``decision_replay.Rule`` field: evidence rules tried before they are
proposed for the decision). The current defaults always run first.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_decision.py --corpus CORPUS_DIR --seed 1 \\
        --vary support_margin=-0.08,-0.12 --vary support_bonus=0.08,0.12 --rule online_extra=0,0.05
    PYTHONPATH=. .venv/bin/python tools/bench_decision.py --corpus CORPUS_DIR --seed 0 --check-server

Writes ``WORK/results-seed<N>.json`` and ``WORK/results-seed<N>.md`` (the
table). Exit status 0, or 1 with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bench_broadcast  # noqa: E402
from bench.common import BenchError, write_json  # noqa: E402

log = logging.getLogger("bench_decision")


def _value(text: str):
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


def _grid(specs: list[str], fields: set[str], what: str) -> list[tuple]:
    """``FIELD=v1,v2`` specs -> list of ((field, value), ...) combinations."""
    axes = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in fields or not values:
            raise BenchError(f"{what} {spec!r}: expected FIELD=v1,v2 with FIELD one of {sorted(fields)}")
        axes.append([(name, _value(v)) for v in values.split(",")])
    return [tuple(c) for c in itertools.product(*axes)] if axes else [()]


def variants(vary: list[str], rules: list[str]) -> list:
    """The current defaults, then every combination of the ``--vary`` and ``--rule`` values."""
    from bench.decision_replay import Rule, Variant

    from audiocopy.config import DecisionParams

    params = _grid(vary, {f.name for f in dataclasses.fields(DecisionParams)} | {"margin_unit"}, "--vary")
    rule_sets = _grid(rules, {f.name for f in dataclasses.fields(Rule)}, "--rule")
    out = [Variant("current")]
    for ov, rv in itertools.product(params, rule_sets):
        if not ov and not Rule(**dict(rv)).active:
            continue
        name = " ".join(f"{k}={v}" for k, v in ov + tuple(x for x in rv if Rule(**dict(rv)).active))
        out.append(Variant(name, ov, Rule(**dict(rv))))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Replay the stream decision offline on the stream benchmark's "
                                            "cached detections, for a grid of decision parameters.")
    p.add_argument("--corpus", required=True, type=Path, help="folder of WAV tracks with manifest-dev.tsv")
    p.add_argument("--broadcast-work", type=Path, default=Path("/work/bench_broadcast"),
                   help="bench_broadcast's work folder: its database, split, negatives and seed-0 audio")
    p.add_argument("--work", type=Path, default=Path("/work/bench_decision"),
                   help="cached detections, other seeds' audio and results (default %(default)s)")
    p.add_argument("--engine", choices=sorted(bench_broadcast.ENGINE_OUTPUTS), default="fingerprint",
                   help="whose database in --broadcast-work to replay (bench_broadcast --engine; default "
                        "fingerprint); give each engine its own --work, the caches are keyed by database")
    p.add_argument("--seed", type=int, default=1, help="programme seed (default 1: tune on it, not on 0)")
    p.add_argument("--chains", default="broadcast,room", help="comma-separated chains (default broadcast,room)")
    p.add_argument("--programmes", type=int, default=4, help="programmes per chain (default 4)")
    p.add_argument("--minutes", type=float, default=40.0, help="length of a programme (default 40)")
    p.add_argument("--vary", action="append", default=[], help="DecisionParams FIELD=v1,v2 (repeatable)")
    p.add_argument("--rule", action="append", default=[], help="Rule FIELD=v1,v2 (repeatable)")
    p.add_argument("--negative-tracks", type=int, default=None,
                   help="calibration negatives played, each as it is and through a room (default: as enrolment, "
                        "play_calibration.MAX_TRACKS)")
    p.add_argument("--jobs", type=int, default=2, help="variants replayed at once (processes; default 2)")
    p.add_argument("--check-server", action="store_true",
                   help="compare the cached detections with bench_broadcast's recorded window messages (seed 0)")
    p.add_argument("--tag", default="", help="suffix of the results files (default none)")
    p.add_argument("--detections-only", action="store_true", help="compute the caches and stop")
    args = p.parse_args(argv)
    args.chains = [c.strip() for c in args.chains.split(",") if c.strip()]
    if args.check_server and args.seed != 0:
        p.error("--check-server compares with bench_broadcast's streams, which are seed 0")
    return args


def broadcast_output(args, what: str) -> Path:
    """``bench_broadcast``'s database (``"db"``) or recorded streams (``"streams"``) of ``args.engine``."""
    return args.broadcast_work / bench_broadcast.ENGINE_OUTPUTS[args.engine][what]


def load_all(args) -> tuple:
    """Plans, cached detections of programmes and negatives, track ids, window length."""
    from bench.decision_data import (
        calibration_negatives,
        negative_detections,
        open_recognizer,
        programme_detections,
        programmes,
    )
    from bench.decision_replay import Detections

    plans, wavs = programmes(args.corpus, args.broadcast_work, args.work, seed=args.seed, chains=args.chains,
                             count=args.programmes, minutes=args.minutes)
    db = broadcast_output(args, "db")
    recognizer = open_recognizer(db)
    try:
        track_ids, window_s = recognizer.track_ids, recognizer.audio.window_seconds
        progs = {c: {p.name: Detections([programme_detections(recognizer, db, wavs[c][p.name],
                                                              args.work / f"seed{args.seed}", f"{c}-{p.name}")],
                                        track_ids) for p in plans} for c in args.chains}
        files = calibration_negatives(args.broadcast_work, args.engine, db)
        negatives = Detections(negative_detections(recognizer, db, files, args.work, args.negative_tracks),
                               track_ids)
    finally:
        recognizer.close()
    return {p.name: p.to_json() for p in plans}, progs, negatives, track_ids, window_s


def check_server(args, progs: dict, track_ids: list[str], plans: dict, window_s: float) -> dict:
    """Cached detections against bench_broadcast's recorded windows and plays (same audio, seed 0)."""
    import numpy as np
    from bench.broadcast_score import score_stream, summarise
    from bench.common import read_json
    from bench.decision_replay import Rule, replay

    from audiocopy.config import DecisionParams
    from audiocopy.engines import catalog

    threshold = catalog.open_db(broadcast_output(args, "db")).calibration["play_threshold"]
    out = {"threshold": threshold}
    for chain, streams in progs.items():
        same = total = 0
        diffs, scored = [], []
        for name, dets in streams.items():
            rec = read_json(broadcast_output(args, "streams") / f"{chain}-{name}.json")
            if not rec:
                raise BenchError(f"no recorded stream {chain}-{name} under {broadcast_output(args, 'streams')}")
            mine = {round(d.offset_s, 3): d for d in dets.get(5)[0]}
            for w in rec["windows"]:
                d = mine.get(round(w["start_s"], 3))
                if d is None or not w["cands"]:
                    continue
                total += 1
                same += d.candidates[0].track == w["cands"][0][0]
                diffs.append(abs(d.candidates[0].score - w["cands"][0][1]))
            params = DecisionParams().in_margin_units(DecisionParams().margin_unit(args.engine))
            plays, rows = replay(dets.get(params.top_k)[0], params, threshold, window_s, Rule())
            scored.append(score_stream(plans[name], plays, rows))
        d = np.asarray(diffs)
        out[chain] = {"windows": total, "same_best_pct": round(100 * same / max(total, 1), 3),
                      "score_diff_median": float(np.median(d)), "score_diff_p999": float(np.percentile(d, 99.9)),
                      "score_diff_max": float(d.max()), "over_0.01": int((d > 0.01).sum()),
                      "replay_with_db_threshold": {k: summarise(scored)[k] for k in
                                                   ("recall", "precision", "false_per_hour", "pieces")}}
    return out


def _worker(job):
    from bench.decision_replay import run_variant

    variant, ctx = job, _CTX
    t0 = time.perf_counter()
    res = run_variant(variant, ctx["base"], ctx["negatives"], ctx["progs"], ctx["plans"], ctx["window_s"],
                      unit=ctx["unit"])
    res["replay_s"] = round(time.perf_counter() - t0, 1)
    return res


_CTX: dict = {}


def run_grid(args, plans, progs, negatives, window_s) -> list[dict]:
    """Every variant, in processes forked after the detections were unpacked (shared, not copied)."""
    import multiprocessing as mp

    from audiocopy.config import DecisionParams

    todo = variants(args.vary, args.rule)
    for k in sorted({v.params(DecisionParams()).top_k for v in todo}):  # unpack before forking
        negatives.get(k)
        for streams in progs.values():
            for d in streams.values():
                d.get(k)
    # The engine's own margin unit unless a variant sets one (``--vary margin_unit=...``).
    _CTX.update(base=DecisionParams(), unit=DecisionParams().margin_unit(args.engine), negatives=negatives,
                progs=progs, plans=plans, window_s=window_s)
    log.info("%d variants, %d at a time", len(todo), args.jobs)
    if args.jobs <= 1:
        return [_worker(v) for v in todo]
    with mp.get_context("fork").Pool(args.jobs) as pool:
        out = []
        for res in pool.imap(_worker, todo):
            log.info("%s: %s", res["variant"]["name"], _line(res))
            out.append(res)
        return out


def _line(res: dict) -> str:
    parts = [f"thr {res['calibration']['threshold']:.3f}"]
    for chain, s in res["summary"].items():
        if chain != "all":
            parts.append(f"{chain} R {s['recall']} P {s['precision']} F/h {s['false_per_hour']} pc {s['pieces']}")
    return "; ".join(parts)


def table(results: list[dict], chains: list[str]) -> str:
    """Markdown: one row per variant; per chain recall / precision / false per hour / pieces / start / end,
    and the Live page's two figures: seconds to the first "now playing" naming (median) and its share of a
    song's windows."""
    head = ["variant", "threshold"]
    for c in chains:
        head += [f"{c} R %", f"{c} P %", f"{c} F/h", f"{c} pieces", f"{c} start s", f"{c} end s",
                 f"{c} named s", f"{c} shown %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r["variant"]["name"], f"{r['calibration']['threshold']:.3f}"]
        for c in chains:
            s = r["summary"][c]
            row += [str(s["recall"]), str(s["precision"]), str(s["false_per_hour"]), str(s["pieces"]),
                    str(s["start_error_s"]["median"]), str(s["end_error_s"]["median"]),
                    str(s["first_named_s"]["median"]), str(s["now_share"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        t0 = time.perf_counter()
        plans, progs, negatives, track_ids, window_s = load_all(args)
        log.info("detections ready in %.0f s (%.2f h of negatives)", time.perf_counter() - t0, negatives.hours)
        if args.detections_only:
            return 0
        out = {"seed": args.seed, "chains": args.chains, "argv": sys.argv[1:] if argv is None else argv}
        if args.check_server:
            out["check_server"] = check_server(args, progs, track_ids, plans, window_s)
            print(json.dumps(out["check_server"], indent=1))
        out["results"] = run_grid(args, plans, progs, negatives, window_s)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    md = table(out["results"], args.chains)
    stem = f"results-seed{args.seed}{'-' + args.tag if args.tag else ''}"
    write_json(args.work / f"{stem}.json", out)
    (args.work / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
