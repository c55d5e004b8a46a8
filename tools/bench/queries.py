"""The query plan and the query files: 2.5 s fragments of catalogue and unseen tracks, one condition each.

Place in ``tools/bench``: after the split, before enrolment. A track's K
fragment offsets are shared by all conditions, so conditions are compared
on the same music (a paired design): a difference between two rows is the
distortion, not the draw. Each query file holds one condition; its random
parameters come from its own generator (``rng_for(seed, "noise", file)``),
so adding a condition or a track leaves every other file unchanged.

Files (under ``WORK/queries``)::

    <condition>/<track>__k<j>.wav   mono WAV at the corpus rate, exactly 2.5 s
    truth.tsv                       file, expected track id (empty = negative), condition
    plan.json                       what every file was made from (a file whose plan changed is made again)
    params.json                     the random parameters of every query that drew some (room, speech)
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from .common import BenchError, read_json, rng_for, write_json
from .conditions import BY_NAME, LEGACY, Condition
from .distortions import (PREROLL_SECONDS, QUERY_PEAK, SOX_PEAK, Inputs, distort, fit_length, peak_normalise,
                          read_segment)
from .external import Tools

log = logging.getLogger(__name__)

#: Fragments never start or end within this many seconds of a track's ends
#: (fade-ins, silence and count-ins are not what users play to the recognizer).
EDGE_SECONDS = 1.0


def fragment_seconds() -> float:
    """Length of every query (s): the recognizer's window, the product's promise."""
    from audiocopy.config import AudioParams

    return AudioParams().window_seconds


@dataclass(frozen=True)
class Query:
    """One query file and how to make it (offsets in seconds into the source tracks)."""

    file: str  # relative to WORK/queries
    condition: str
    track: str  # source track id
    expected: str | None  # track id for catalogue tracks, None for unseen negatives
    fragment: int
    offset_s: float
    other: str | None = None  # background track of the "music" conditions
    other_offset_s: float | None = None


def plan_queries(split: dict, by_id: dict, *, conditions: list[Condition], k: int, seed: int,
                 spans: dict | None = None) -> list[Query]:
    """Every query of the run, fully determined by the split, the seed and the tracks' audible spans.

    by_id: track id -> ``corpus.Track``. spans: track id -> (first, last)
    audible second (``corpus.audible_spans``); None takes whole tracks (the
    pre-restructure rule, which ``--legacy`` keeps). The offset range leaves
    room for the longest source any legacy condition reads (speed/tempo
    ×1.10), for every set of conditions, so offsets never depend on which
    are run. Background music is never a catalogue track.
    """
    seconds = fragment_seconds()
    longest = seconds * max(c.source_factor for c in LEGACY + conditions)
    pool = split["wrong"] + split["unseen"] + split["spare"]

    def span(track: str) -> tuple[float, float]:
        return spans[track] if spans is not None else (0.0, by_id[track].duration)

    queries = []
    for role in ("catalog", "unseen"):
        for track in split[role]:
            start, end = span(track)
            hi = end - EDGE_SECONDS - longest
            if hi < start + EDGE_SECONDS:
                raise BenchError(f"track {track} has {end - start:.1f} s of music; at least "
                                 f"{2 * EDGE_SECONDS + longest:.1f} s are needed")
            offsets = rng_for(seed, "offsets", track).uniform(start + EDGE_SECONDS, hi, size=k)
            for j, offset in enumerate(offsets):
                rng = rng_for(seed, "other", track, j)
                others = [t for t in pool if t != track]
                other = others[int(rng.integers(len(others)))]
                o_start, o_end = span(other)
                other_hi = o_end - EDGE_SECONDS - seconds
                other_offset = float(rng.uniform(o_start + EDGE_SECONDS, max(o_start + EDGE_SECONDS, other_hi)))
                for cond in conditions:
                    music = cond.kind == "music"
                    queries.append(Query(
                        file=f"{cond.name}/{track}__k{j}.wav", condition=cond.name, track=track,
                        expected=track if role == "catalog" else None, fragment=j, offset_s=round(float(offset), 4),
                        other=other if music else None, other_offset_s=round(other_offset, 4) if music else None))
    return queries


def make_query(q: Query, by_id: dict, tools: Tools, out: Path, *, seed: int, speech, tmp_dir: Path) -> dict:
    """Cut, distort and write one query; returns {"padded": samples padded, "params": random parameters}."""
    from audiocopy.signal.audio import write_wav

    cond = BY_NAME[q.condition]
    track = by_id[q.track]
    seconds = fragment_seconds()
    n = int(round(seconds * track.rate))
    rng = rng_for(seed, "noise", q.file)
    if cond.preroll:
        x, _ = read_segment(track.wav, q.offset_s - PREROLL_SECONDS, seconds + PREROLL_SECONDS)
    else:
        x, _ = read_segment(track.wav, q.offset_s, seconds * cond.source_factor)
    other = read_segment(by_id[q.other].wav, q.other_offset_s, seconds)[0] if q.other else None
    y, params = distort(cond, peak_normalise(x, SOX_PEAK), track.rate, rng, tools, Inputs(other, speech, tmp_dir))
    y, padded = fit_length(y, n)
    path = out / q.file
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, peak_normalise(y, QUERY_PEAK), track.rate)
    return {"padded": padded, "params": params}


def generate_queries(work: Path, queries: list[Query], by_id: dict, tools: Tools, *, seed: int, jobs: int,
                     speech=None) -> dict:
    """Write every missing query WAV, then ``truth.tsv`` and ``params.json``; returns timing and padding stats.

    Threads are enough for parallelism: each query's work happens mostly in
    sox/ffmpeg subprocesses, and ``jobs`` threads keep ``jobs`` of them busy.
    """
    from tqdm import tqdm

    out = Path(work) / "queries"
    plan = {q.file: asdict(q) for q in queries}
    made = read_json(out / "plan.json", {})
    # A file made from another plan (offsets, background) is stale: make it again.
    todo = [q for q in queries if not (out / q.file).is_file() or made.get(q.file, plan[q.file]) != plan[q.file]]
    stats = {"queries": len(queries), "generated": len(todo), "seconds": 0.0, "max_padded_ms": 0.0}
    if not todo and (out / "truth.tsv").is_file():
        log.info("queries: all %d exist, skipped", len(queries))
        return stats
    tmp_dir = Path(work) / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    params = read_json(out / "params.json", {})
    t0, max_pad = time.perf_counter(), 0.0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(make_query, q, by_id, tools, out, seed=seed, speech=speech, tmp_dir=tmp_dir): q
                   for q in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="queries", unit="file"):
            q = futures[fut]
            try:
                made = fut.result()
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise BenchError(f"making query {q.file} failed: {exc}") from exc
            max_pad = max(max_pad, made["padded"] / by_id[q.track].rate)
            if made["params"]:
                params[q.file] = made["params"]
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["max_padded_ms"] = round(1000 * max_pad, 2)
    if max_pad > 0.01:  # a tool returned noticeably less audio than expected
        log.warning("some queries were zero-padded by up to %.1f ms", 1000 * max_pad)
    write_json(out / "params.json", dict(sorted(params.items())))
    write_json(out / "plan.json", {**made, **plan})
    write_truth(out / "truth.tsv", queries)
    return stats


def write_truth(path: Path, queries: list[Query]) -> None:
    """``truth.tsv``: file, expected track id (empty for negatives), condition; one line per query."""
    lines = ["file\texpected\tcondition"] + [f"{q.file}\t{q.expected or ''}\t{q.condition}" for q in queries]
    tmp = Path(path).with_name(Path(path).name + ".part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
