"""Every query answered as ``audiocopy identify`` answers it, and the metrics at two operating points.

Place in ``tools/bench``: after enrolment, before the report.

The answer. Each query file is decoded (``signal.audio.load_audio``) and
analysed by ``decision.files.analyse_signal``: the same call ``identify``
makes. For a 2.5 s fragment that is one window scored with a fresh stream
state, and the answer is that window's own calibrated decision (score > 0
names a track). The row keeps both the answer (``decided``, ``score``) and
the window's best candidate and margin (``top``, ``top_score``), which is
what a threshold sweep moves along.

Two operating points per row of the report:

* **shipped decision**: hit % (answer is the expected track), wrong %
  (a positive answered as another track) and FP % (an unseen negative
  answered as any track), exactly what a user gets. The targets apply here;
* **hit % at FP ≤ 1 %**: one threshold set on the unseen negatives of *all*
  conditions pooled, so that at most 1 % of them pass it; a positive is a
  hit when its best candidate is the expected track with a margin above
  it. Every row is read at that one operating point, which compares
  engines whose calibrations differ.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from .common import read_json, write_json
from .conditions import GROUPS, TARGETS, Condition

log = logging.getLogger(__name__)

#: Operating point of the "hit at FP <= x" column.
MAX_FPR = 0.01


def db_signature(db: Path) -> str:
    """Hash of a database's records and file sizes: cached answers are valid only for the same content."""
    db = Path(db)
    h = hashlib.sha1()
    paths = [db / "db.json", db / "fingerprint.json", *sorted((db / "tracks").glob("*"))]
    for path in paths:
        if not path.is_file():
            continue
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def files_signature(folder: Path, files: list[str]) -> str:
    """Hash of the query files' names, sizes and modification times: remade queries invalidate cached answers."""
    h = hashlib.sha1()
    for f in files:
        st = (folder / f).stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def answer_query(recognizer, path: Path) -> dict:
    """One query's answer (``identify``'s) and its best window: decided, score, top, top_score, windows, plays."""
    from audiocopy.decision.files import analyse_signal
    from audiocopy.signal.audio import load_audio

    analysis = analyse_signal(recognizer, load_audio(path, params=recognizer.audio), source=str(path))
    best = max(analysis.windows, key=lambda d: d.score) if analysis.windows else None
    answer = analysis.answer
    return {"decided": answer.track, "score": float(answer.score),
            "top": best.candidates[0].track if best is not None and best.candidates else None,
            "top_score": float(best.score) if best is not None else float("-inf"),
            "windows": len(analysis.windows), "plays": len(analysis.plays)}


def identify(queries_dir: Path, items: list[tuple[str, str | None, str]], db: Path, cache_path: Path) -> dict:
    """Answers of every query (cached in ``cache_path`` per database content and query files).

    items: (file relative to ``queries_dir``, expected track id or None,
    condition). Returns {"rows": [...], "seconds": wall time of answering,
    "per_query_ms", "load": the machine's load when answering started}.
    """
    from tqdm import tqdm

    from audiocopy.decision.recognizer import Recognizer

    signature = db_signature(db)
    files = [f for f, _, _ in items]
    content = files_signature(Path(queries_dir), files)
    cache = read_json(cache_path, {})
    if cache.get("db") == signature and cache.get("queries") == content \
            and [r["file"] for r in cache.get("rows", [])] == files:
        log.info("identify: cached answers for %d queries, skipped", len(files))
        return cache
    from .machine import load_note

    recognizer = Recognizer.open(db)
    load = load_note()  # the machine is shared: say how busy it was while these timings were taken
    rows = []
    t0 = time.perf_counter()
    for file, expected, condition in tqdm(items, desc="identify", unit="query"):
        rows.append({"file": file, "condition": condition, "expected": expected,
                     **answer_query(recognizer, Path(queries_dir) / file)})
    seconds = time.perf_counter() - t0
    recognizer.close()
    out = {"db": signature, "queries": content, "load": load, "seconds": round(seconds, 2),
           "per_query_ms": round(1000 * seconds / max(1, len(rows)), 2), "rows": rows}
    write_json(cache_path, out)
    return out


def _row(label: str, members: list[str], by_cond: dict, pooled: list, max_fpr: float) -> dict:
    from audiocopy.training.evaluate import summarize

    results = [r for m in members for r in by_cond.get(m, [])]
    own = summarize(results, max_fpr=max_fpr)  # hit, wrong, fp: the shipped decision on this row's queries
    shared = summarize(results, max_fpr=max_fpr, negatives=pooled)
    target = TARGETS.get(label)
    hit = own["hit"]
    return {"label": label, "conditions": members, "positives": own["positives"], "negatives": own["negatives"],
            "hit": hit, "wrong": own["wrong"], "fp": own["fp"], "hit_at_fpr": shared["hit_at_fpr"],
            "target": target, "met": None if target is None or hit is None else hit >= target}


def accuracy_tables(rows: list[dict], conditions: list[Condition], *, max_fpr: float = MAX_FPR) -> dict:
    """Per-condition, per-group and overall metrics at both operating points (module docstring).

    rows: answers with expected, condition, decided, top, top_score.
    Returns {"conditions": [...], "groups": [...], "all": {...},
    "pooled_negatives": n, "threshold_at_fpr": margin, "answer_differs": n}
    with one dict per table row (percentages rounded to 0.1).
    """
    from audiocopy.training.evaluate import QueryResult, summarize

    by_cond: dict[str, list] = {c.name: [] for c in conditions}
    differs = 0
    for r in rows:
        if r["condition"] in by_cond:
            by_cond[r["condition"]].append(QueryResult(r["expected"], r["decided"], r["top"], r["top_score"]))
            window_decision = r["top"] if r["top_score"] > 0 else None
            differs += window_decision != r["decided"]
    pooled = [r for rs in by_cond.values() for r in rs if r.expected is None]
    per_condition = [_row(c.name, [c.name], by_cond, pooled, max_fpr) for c in conditions]
    groups = [_row(label, members, by_cond, pooled, max_fpr) for label, members in GROUPS
              if all(m in by_cond for m in members)]
    overall = _row("all conditions", [c.name for c in conditions], by_cond, pooled, max_fpr)
    return {"conditions": per_condition, "groups": groups, "all": overall, "pooled_negatives": len(pooled),
            "threshold_at_fpr": summarize(pooled, max_fpr=max_fpr)["threshold_at_fpr"], "max_fpr": max_fpr,
            "answer_differs": differs}


def table_rows(acc: dict) -> list[dict]:
    """Every row of an accuracy result in report order: conditions, groups, all."""
    return acc["conditions"] + acc["groups"] + [acc["all"]]
