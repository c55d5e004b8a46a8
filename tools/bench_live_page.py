#!/usr/bin/env python3
"""The Live page in a real browser, with the stream benchmark's room recording as the microphone (issue #11).

The stream benchmark (``tools/bench_broadcast.py``) scores "now playing"
from the ``window`` messages over ``/ws``; this tool measures the page
itself. For each of ``--songs`` catalogue excerpts of the benchmark's
programmes, a cut of the programme's rendering through a chain (``room``:
speaker, room, noise, babble, microphone, AGC at 48 kHz; ``clean``: no
chain, for comparison) starting at the song's first audible sample becomes
Chromium's fake microphone; the tool opens the Live page of a real
``audiocopy serve`` on the benchmark's own database, presses Start, and
reads "now playing" every 0.1 s (``tools/bench/live_page.py`` says what is
scored and why). The figures go to the ``live-page`` section of
``docs/benchmarks.md``, beside the target: named within 5 s, then shown at
least 90 % of the next 20 s. ``--engine cnnbin`` serves the benchmark's
cnnbin database instead (``bench_broadcast.py --engine cnnbin``), with its
own folder (``WORK/live-page-cnnbin``) and section (``live-page-cnnbin``).

Needs the work folder of a finished ``tools/bench_broadcast.py`` run
(``WORK/programmes``, ``WORK/db``), Debian's Chromium and the ``playwright``
package (``pip install -e '.[browser]'``; no browser is downloaded). It
plays in real time: about ``songs x chains x (clip + 3)`` seconds.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_live_page.py --work /work/bench_broadcast

Exit status 0, or 1 with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import datetime
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

import bench_broadcast  # noqa: E402
from bench.common import BenchError, fmt, per_engine, run_logged, write_run_results  # noqa: E402

log = logging.getLogger("bench_live_page")

SECTION = "live-page"
#: The issue's targets for the Live page with room-chain audio as the microphone.
NAMED_TARGET_S = 5.0
SHOWN_TARGET_PCT = 90.0
#: Groups of songs the summary reports: a presenter talking over a song's intro hides it for those seconds.
GROUPS = {"all songs": lambda r: True, "no talk over the intro": lambda r: r["talk_over_s"] == 0,
          "talk over the intro": lambda r: r["talk_over_s"] > 0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The Live page in Chromium, a stream benchmark's room recording as "
                                            "its microphone: how soon it names each song, and how long it shows it.")
    p.add_argument("--work", type=Path, default=Path("/work/bench_broadcast"),
                   help="work folder of a finished tools/bench_broadcast.py run (default /work/bench_broadcast)")
    p.add_argument("--songs", type=int, default=12, help="catalogue excerpts to play (default 12)")
    p.add_argument("--chains", default="room,clean",
                   help="renderings to play each song from, comma-separated: room, clean (default both)")
    p.add_argument("--clip-s", type=float, default=30.0, help="seconds of each song played (default 30)")
    p.add_argument("--follow-s", type=float, default=20.0,
                   help="seconds after the first naming over which 'shown' is measured (default 20)")
    p.add_argument("--seed", type=int, default=0, help="which songs are drawn (default 0)")
    p.add_argument("--engine", choices=sorted(bench_broadcast.ENGINE_OUTPUTS), default="fingerprint",
                   help="which of the stream benchmark's databases to serve (default fingerprint)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default /usr/bin/chromium)")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--no-doc", action="store_true",
                   help="write the readings only (WORK/live-page[-ENGINE]/results.json and runs/results-TIME.json)")
    args = p.parse_args(argv)
    chains = [c.strip() for c in args.chains.split(",") if c.strip()]
    from bench.live_page import CHAIN_FILES

    bad = [c for c in chains if c not in CHAIN_FILES]
    if not chains or bad:
        p.error(f"--chains takes {', '.join(CHAIN_FILES)}, got {args.chains!r}")
    if args.clip_s <= args.follow_s or args.follow_s <= 0:
        p.error("--clip-s must be longer than --follow-s, and --follow-s above 0")
    args.chains = chains
    return args


def make_clips(songs, chains: list[str], programmes: Path, out: Path, clip_s: float) -> list[dict]:
    """Cut every song from every chain's rendering (48 kHz 16-bit WAV, what Chromium's fake microphone reads)."""
    import soundfile as sf
    import soxr
    from bench.live_page import CHAIN_FILES, MIC_RATE, cut_clip

    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for chain in chains:
        for programme in sorted({s.programme for s in songs}):
            path = programmes / programme / CHAIN_FILES[chain]
            if not path.is_file():
                raise BenchError(f"{path} is missing: was the stream benchmark's audio made in this folder?")
            signal, rate = sf.read(str(path), dtype="float32", always_2d=True)
            signal = signal.mean(axis=1)
            for i, song in enumerate(songs):
                if song.programme != programme:
                    continue
                clip = cut_clip(signal, rate, song.audible_start_s, clip_s)
                if rate != MIC_RATE:
                    clip = soxr.resample(clip, rate, MIC_RATE)
                wav = out / f"{chain}-{i:02d}-{song.track}.wav"
                sf.write(str(wav), clip, MIC_RATE, subtype="PCM_16")
                jobs.append({"chain": chain, "song": i, "wav": wav})
            del signal
    return jobs


def run(args) -> dict:
    from bench.broadcast_stream import Server
    from bench.live_page import choose_songs, listen, programme_songs, score_samples, summarise
    from bench.machine import code_revision, load_note, machine_info

    from audiocopy.encoder.artifact import read_encoder_record
    from audiocopy.engines import catalog
    from audiocopy.engines.cnnbin import engine as cnnbin_engine
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.errors import AudiocopyError

    t0 = time.perf_counter()
    db = args.work / bench_broadcast.ENGINE_OUTPUTS[args.engine]["db"]
    section = per_engine(SECTION, args.engine)  # also the run's folder under WORK
    try:
        calibration = catalog.open_db(db).calibration
        # Each engine's database keeps its own copy of the encoder it was enrolled with.
        own = fpdb.ENCODER_FILE if args.engine == "fingerprint" else cnnbin_engine.ENCODER_FILE
        encoder_sha = read_encoder_record(db / own)["weights_sha256"]
    except AudiocopyError as exc:
        raise BenchError(f"{exc}: run tools/bench_broadcast.py --work {args.work} --engine {args.engine} "
                         "first") from None
    if not Path(args.chromium).exists() and not shutil.which(args.chromium):
        raise BenchError(f"no Chromium at {args.chromium} (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise BenchError("playwright is not installed (pip install -e '.[browser]')") from None
    songs = choose_songs(programme_songs(args.work / "programmes", min_seconds=args.clip_s), args.songs,
                         seed=args.seed)
    out = args.work / section
    jobs = make_clips(songs, args.chains, args.work / "programmes", out / "clips", args.clip_s)
    load = load_note()
    rows = []
    with Server(db, out / "server-state", out / "server.log") as server:
        url = f"http://127.0.0.1:{server.port}/"
        for n, job in enumerate(jobs, 1):
            song = songs[job["song"]]
            heard = listen(url, job["wav"], args.clip_s, chromium=args.chromium)
            if heard["listening_s"] is None:
                raise BenchError(f"the Live page never started listening to {job['wav']} "
                                 f"(page errors: {heard['page_errors'][:3]}); server log: {server.log_tail()}")
            row = {"chain": job["chain"], "programme": song.programme, "track": song.track,
                   "audible_start_s": song.audible_start_s, "effect": song.effect,
                   "talk_over_s": song.talk_over_s, "listening_s": heard["listening_s"],
                   **score_samples(heard["samples"], song.track, follow_s=args.follow_s),
                   "samples": heard["samples"]}
            rows.append(row)
            log.info("%d/%d %s %s: named %s s, shown %.1f %%", n, len(jobs), job["chain"], song.track,
                     row["named_s"], row["shown_pct"])
    summary = {c: {group: summarise([r for r in rows if r["chain"] == c and keep(r)],
                                    named_target_s=NAMED_TARGET_S, shown_target_pct=SHOWN_TARGET_PCT)
                   for group, keep in GROUPS.items()} for c in args.chains}
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "revision": code_revision(REPO) or "?",
           "command": shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/bench_live_page.py", *sys.argv[1:]]),
           "machine": machine_info(), "load": load, "work": str(args.work), "seed": args.seed,
           "clip_s": args.clip_s, "follow_s": args.follow_s, "chains": args.chains, "engine": args.engine,
           "encoder_sha256": encoder_sha, "calibration": calibration, "summary": summary, "rows": rows,
           "wall_min": round((time.perf_counter() - t0) / 60, 1)}
    write_run_results(out / "results.json", res, datetime.datetime.now(datetime.timezone.utc))
    if not args.no_doc:
        from bench.doc import update_section

        update_section(args.doc, section, render(res))
    return res


def render(res: dict) -> str:
    """The markdown section."""
    from bench.report import machine_lines

    engine = res.get("engine", "fingerprint")
    lines = [
        "## Live page in a real browser, a room recording as the microphone (`tools/bench_live_page.py`)"
        + ("" if engine == "fingerprint" else f", engine {engine}"), "",
        (f"Measured {res['date']} at revision {res['revision']} in {res['wall_min']} min, on the database and "
         f"programmes of the stream benchmark in `{res['work']}` (encoder {str(res['encoder_sha256'])[:12]}…, "
         f"play threshold {fmt(res['calibration'].get('play_threshold'), 3)}). Command, from the repository root:"),
        "", f"    {res['command']}", "",
        *machine_lines(res),
        (f"- **What is played:** {res['summary'][res['chains'][0]]['all songs']['songs']} catalogue excerpts of "
         f"the benchmark's programmes (drawn with seed {res['seed']}; any alteration, with or without a presenter "
         "over the intro), "
         f"each from its first audible sample for {fmt(res['clip_s'])} s, as Chromium's fake microphone (48 kHz "
         "16-bit), through a real `audiocopy serve`. *room*: the programme's rendering through its room chain "
         "(speaker, room, noise, babble, microphone, AGC); *clean*: the programme before any chain."),
        (f"- **What is read:** the Live page's \"now playing\" (`#current-match`) every 0.1 s after the click on "
         f"Start. *Named*: seconds from the click to the first reading naming the song (capture start-up "
         f"included). *Shown*: share of readings naming it over the {fmt(res['follow_s'])} s after that. Target: "
         f"named within {NAMED_TARGET_S:g} s, then shown at least {SHOWN_TARGET_PCT:g} %."),
        "",
        "| chain | songs | count | named | named within 5 s | named, median s | shown, mean % | shown, median % | "
        "shown ≥ 90 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for chain, groups in res["summary"].items():
        for group, s in groups.items():
            lines.append(f"| {chain} | {group} | {s['songs']} | {s['named']} | {s['named_within_target']} | "
                         f"{fmt(s['named_median_s'])} | {fmt(s['shown_mean_pct'])} | {fmt(s['shown_median_pct'])} | "
                         f"{s['shown_at_target']} |")
    lines += ["", "| chain | programme | track | alteration | talk over intro s | listening s | named s | shown % | "
                  "another track % |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['chain']} | {r['programme']} | {r['track']} | {r['effect']} | {fmt(r['talk_over_s'])} | "
                     f"{fmt(r['listening_s'])} | {fmt(r['named_s'])} | {fmt(r['shown_pct'])} | "
                     f"{fmt(r['wrong_pct'])} |")
    lines += ["", f"Raw readings: `{res['results_file']}`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run_logged(run, args)
    if res is None:
        return 1
    for chain, groups in res["summary"].items():
        s = groups["all songs"]
        print(f"{chain}: named {s['named']}/{s['songs']} (within 5 s: {s['named_within_target']}), median "
              f"{s['named_median_s']} s; shown mean {s['shown_mean_pct']} %, median {s['shown_median_pct']} %")
    return 0


if __name__ == "__main__":
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    sys.exit(main())
