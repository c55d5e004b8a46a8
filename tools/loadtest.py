#!/usr/bin/env python3
"""Load test: N concurrent real-time streams against a local audiocopy server, with CPU per thread.

Usage::

    # start a server for a catalogue, ramp, and write a section of docs/benchmarks.md
    python tools/loadtest.py --db DB --streams 100,200,300 --audio track.wav --max-p95-ms 300 \
        --write docs/benchmarks.md --section server-48k
    # a running server (its pid gives the CPU per thread); --rate 16000 for 16 kHz clients
    python tools/loadtest.py --server http://127.0.0.1:8080 --server-pid 1234 --streams 1,8,64
    # timing catalogues cloned from any trained database; a 10-minute soak at a fixed N
    python tools/loadtest.py clone-db data/model data/bench/db100 --tracks 100
    python tools/loadtest.py --db DB --soak-streams 4 --soak-minutes 10

Place in the pipeline: a benchmark tool, not a test (see the style guide).
Each stream speaks the ``/ws`` protocol like a browser's Live page: mono
s16le at ``--rate`` (48 kHz by default, what browsers capture) in frames of
``--frame-ms`` (100 ms), sent on a wall-clock schedule, audio looped from a
file or a synthetic signal, each stream at its own offset in it.

A step has two phases. Its N streams join ``--join-per-s`` per second
(50 by default: evenly spaced, so they do not tick in step), as listeners
arrive at a server; then all N stream for ``--seconds`` and stop together.
Joining is measured on its own: a new stream's first window reuses nothing
(the engine caches the work on the overlap of consecutive windows), so it
costs about four later ones, and N streams joining within a fraction of a
second (``--join-per-s 0``: all at once) is a burst the server works off
over the next seconds, not its steady capacity.

Latency of a window = arrival of its result - the moment the frame holding
the window's last sample was sent, i.e. what a user waits once the music
for that window has been played. The step's p50/p95/max are over the
windows answered while every stream is up (``SETTLE_S`` after the last
join to the end); the p95 while joining is reported beside them. The ramp
raises N through ``--streams`` and stops at the first N whose p95 >=
``--max-p95-ms`` or that dropped any window (joins included); the report
names the largest N that held.

CPU. Over each step the tool reads ``/proc/PID/task/*/stat`` of the server
and groups its threads by the names the server gives them: the event loop
(main thread), the compute workers (``compute``, summed), the rest
(BLAS/faiss/encoder/TensorFlow pools, I/O); plus its own process (the load
generator) and the rest of the machine (other work competing for the
cores), all in cores over the same interval, and the workers' own time per
window in each stage.

Only addresses on this machine are targeted (the tool refuses any other
host), every loop is bounded by ``--seconds``, and a server started by the
tool is stopped by it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tools"))
from bench.common import BenchError  # noqa: E402
from bench.doc import update_section  # noqa: E402
from bench.load_server import CpuMeter, ManagedServer, server_facts  # noqa: E402
from bench.machine import busy_cores, machine_info  # noqa: E402
from bench.speed import clone_db  # noqa: E402

DEFAULT_RATE = 48000
DEFAULT_FRAME_MS = 100.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Thread names the server gives its threads (``audiocopy.web.app``).
LOOP_THREAD, COMPUTE_THREAD = "event-loop", "compute"
#: Worker stage counters in /api/status "batcher" (seconds), reported per window:
#: the compute thread's CPU time and its wall time of each stage.
STAGES = ("prep_cpu_s", "score_cpu_s", "decide_cpu_s", "prep_s", "score_s", "decide_s")
#: Streams join this many per second by default (``--join-per-s``).
DEFAULT_JOIN_PER_S = 50.0
#: Seconds after the last stream joined before latencies count as steady: its first window
#: (2.5 s of audio) and the backlog of the joins' first windows are through by then.
SETTLE_S = 3.0


def machine() -> str:
    """One line naming the machine, for the report."""
    m = machine_info()
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}"


@dataclass
class StreamResult:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival, latency ms) per window
    windows: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class StepResult:
    """One step: ``streams`` join ``join_s`` apart in total, then all of them stream for ``seconds``.

    p50/p95/max: latency of the windows answered while every stream was
    up (from ``SETTLE_S`` after the last one joined to the end); join_p95:
    of those answered before (the joins' own cost: a new stream's first
    window has no cache to reuse). windows, dropped, errors: the whole step.
    """

    streams: int
    seconds: float
    windows: int
    dropped: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    errors: int
    batcher: dict
    cpu: dict = field(default_factory=dict)  # cores per thread group (CpuMeter)
    join_s: float = 0.0
    join_p95_ms: float = float("nan")
    measured: int = 0  # windows in the p50/p95/max

    def holds(self, max_p95_ms: float) -> bool:
        return self.measured > 0 and self.dropped == 0 and self.errors == 0 and self.p95_ms < max_p95_ms


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_frames(path: str | None, rate: int, frame_s: float) -> list[bytes]:
    """The audio to loop as s16le frames of ``frame_s``: a file (decoded to ``rate``) or a synthetic 20 s signal."""
    import numpy as np

    if path:
        from audiocopy.config import AudioParams
        from audiocopy.signal.audio import load_audio

        signal_ = load_audio(path, params=AudioParams(sample_rate=rate))
    else:
        t = np.arange(20 * rate) / rate
        signal_ = (0.5 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.25) < 0.08)).astype(np.float32)
    pcm = (np.clip(signal_, -1, 1) * 32767).astype("<i2").tobytes()
    frame_bytes = 2 * int(round(rate * frame_s))
    # Cut once: every stream sends these same bytes objects, so sending costs no slicing.
    return [pcm[i:i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]


async def one_stream(ws_url: str, frames: list[bytes], rate: int, frame_s: float, join_at: float, end_at: float,
                     index: int) -> StreamResult:
    """Join at ``join_at`` (monotonic clock), stream looped audio in real time until ``end_at``; collect latencies."""
    import aiohttp

    result = StreamResult()
    offset = index * 37  # each stream at its own place in the audio
    sent_at: list[float] = []  # monotonic time each frame was sent
    await asyncio.sleep(max(0.0, join_at - time.monotonic()))
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_json({"type": "start", "sample_rate": rate, "format": "s16le", "channels": 1,
                            "source": f"loadtest-{index}", "realtime": True})
        ready = await ws.receive_json(timeout=30)
        if ready.get("type") != "ready":
            result.errors.append(ready.get("message", str(ready)))
            return result

        async def receive():
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind == "window":
                    now = time.monotonic()
                    last_frame = max(0, int(round(data["end_s"] / frame_s)) - 1)
                    if last_frame < len(sent_at):
                        result.latencies.append((now, 1000 * (now - sent_at[last_frame])))
                    result.windows += 1
                elif kind == "dropped":
                    result.dropped += data["windows"]
                elif kind == "error":
                    result.errors.append(f"{data['code']}: {data['message']}")
                elif kind == "stopped":
                    return

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        k = 0
        while t0 + k * frame_s < end_at:
            delay = t0 + k * frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at.append(time.monotonic())
            await ws.send_bytes(frames[(offset + k) % len(frames)])
            k += 1
        await ws.send_json({"type": "stop"})
        try:
            await asyncio.wait_for(receiver, timeout=30)
        except asyncio.TimeoutError:
            result.errors.append("no 'stopped' message within 30 s")
    return result


async def fetch_status(base: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(base + "/api/status") as resp:
        return await resp.json()


def thread_groups(pid: int):
    """Classifier for ``CpuMeter``: the server's threads by the names it gives them."""
    def classify(tid: int, name: str) -> str:
        if tid == pid or name == LOOP_THREAD:  # the main thread runs the event loop
            return "loop"
        return "compute" if name.startswith(COMPUTE_THREAD) else "other_threads"
    return classify


def stage_text(batcher: dict) -> str:
    """"prep / score / decide" CPU ms per window with wall ms in brackets, or "-" for a server without stages."""
    if not all(k in batcher for k in STAGES):
        return "-"
    return " / ".join(f"{batcher[k + '_cpu_s']:.2f} ({batcher[k + '_s']:.2f})" for k in ("prep", "score", "decide"))


def stage_ms_per_window(before: dict, after: dict) -> dict:
    """Worker milliseconds per window of each stage between two ``batcher`` status snapshots.

    prep is per window cut (dropped ones included: they were decoded and
    cut too), score and decide per window scored.
    """
    scored = after.get("windows", 0) - before.get("windows", 0)
    cut = after.get("cut", 0) - before.get("cut", 0)
    if scored <= 0 or cut <= 0 or not all(k in after for k in STAGES):
        return {}
    return {k: round(1000 * (after[k] - before[k]) / (cut if k.startswith("prep") else scored), 3) for k in STAGES}


async def run_step(base: str, frames: list[bytes], n: int, seconds: float, rate: int, frame_s: float,
                   server_pid: int | None, join_per_s: float = 0.0) -> StepResult:
    """``n`` streams joining ``join_per_s`` per second (0: all at once), then ``seconds`` with all of them."""
    ws_url = base.replace("http", "ws", 1) + "/ws"
    before = await fetch_status(base)
    meter = CpuMeter(server_pid, thread_groups(server_pid) if server_pid else None)
    meter.start()
    start = time.monotonic() + 0.5
    join_s = n / join_per_s if join_per_s > 0 else 0.0
    # Evenly spaced joins; a shuffled order, so neighbouring streams do not start at neighbouring audio.
    order = random.Random(n).sample(range(n), n)
    joins = [start + join_s * order[i] / n for i in range(n)]
    end = start + join_s + seconds
    results = await asyncio.gather(*(one_stream(ws_url, frames, rate, frame_s, joins[i], end, i) for i in range(n)),
                                   return_exceptions=True)
    cpu = meter.stop()
    after = await fetch_status(base)
    settled = start + join_s + SETTLE_S
    lat, join_lat, windows, dropped, errors = [], [], 0, 0, 0
    for r in results:
        if isinstance(r, BaseException):
            errors += 1
            continue
        for t, ms in r.latencies:
            (lat if t >= settled else join_lat).append(ms)
        windows += r.windows
        dropped += r.dropped
        errors += len(r.errors)
    b0, b1 = before["batcher"], after["batcher"]
    batches = b1["batches"] - b0["batches"]
    batch = {"batches": batches, "mean_batch": round((b1["windows"] - b0["windows"]) / batches, 2) if batches else 0,
             **stage_ms_per_window(b0, b1)}
    return StepResult(n, seconds, windows, dropped, percentile(lat, 50), percentile(lat, 95),
                      max(lat) if lat else float("nan"), errors, batch, cpu, join_s=join_s,
                      join_p95_ms=percentile(join_lat, 95), measured=len(lat))


def check_local(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        raise SystemExit(f"error: the load test only targets this machine (127.0.0.1/localhost), not {host!r}")
    return url.rstrip("/")


async def ramp(base: str, frames: list[bytes], steps: list[int], args, server_pid: int | None) -> list[StepResult]:
    frame_s = args.frame_ms / 1000
    # Warm-up, not reported: the first calls of a fresh server pay one-off
    # costs (graph tracing for new batch sizes, lazy imports, page faults).
    await run_step(base, frames, 2, 6.0, args.rate, frame_s, server_pid)
    out = []
    for n in steps:
        step = await run_step(base, frames, n, args.seconds, args.rate, frame_s, server_pid, args.join_per_s)
        out.append(step)
        c = step.cpu
        print(f"  N={n:3d}  windows {step.windows:5d}  p50 {step.p50_ms:7.1f} ms  p95 {step.p95_ms:7.1f} ms  "
              f"max {step.max_ms:7.1f} ms  p95 while joining {step.join_p95_ms:7.1f} ms  dropped {step.dropped:4d}  "
              f"errors {step.errors}  "
              f"mean batch {step.batcher['mean_batch']}  cores: loop {c.get('loop', '-')} compute "
              f"{c.get('compute', '-')} other {c.get('other_threads', '-')} generator {c.get('self', '-')} "
              f"machine-other {c.get('other', '-')}  {stage_text(step.batcher)}", flush=True)
        if not step.holds(args.max_p95_ms) and not args.keep_going:
            break
    return out


def describe_db(db: Path) -> str:
    """One line on what a load-test catalogue is, read from the database itself."""
    from audiocopy.engines import catalog

    info = catalog.open_db(db)
    ids = [r["track_id"] for r in catalog.track_records(db)]
    clones = sum(t.startswith("clone-") for t in ids)
    copies = sum(t.startswith("copy-") for t in ids)
    text = f"`{db}`: {info.engine}, {len(ids)} tracks"
    if info.engine == "cnnbin" and ids:
        from audiocopy.engines.cnnbin.engine import enrolled_kinds

        text = f"`{db}`: cnnbin ({', '.join(sorted(enrolled_kinds(db)))} track models), {len(ids)} tracks"
    if clones:
        text += f" ({clones} are model clones made by `loadtest.py clone-db`: timing only)"
    if copies:
        text += (f" ({copies} are distorted copies of corpus tracks, embedded like enrolment, made by "
                 "`bench_fingerprint.py --steps server-db`)")
    if not info.calibration:
        text += "; not calibrated (its decisions use the engine's default threshold; the timing is the same)"
    return text + "."


def report(runs: list[tuple[str, list[StepResult]]], soak: list[str], args, argv: list[str],
           notes: list[str] = ()) -> str:
    max_p95_ms = args.max_p95_ms
    title = "## Streaming server (tools/loadtest.py)" + ("" if args.section == "server" else f": {args.section}")
    lines = [title, "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
             f"cores busy with other work when this report was written: {busy_cores()}.",
             f"Command: `python tools/loadtest.py {shlex.join(argv)}`", "",
             *(f"- {n}" for n in notes), *([""] if notes else []),
             f"Each stream sends {args.rate} Hz mono s16le audio in {args.frame_ms:g} ms frames in real time. "
             + (f"The streams of a step join {args.join_per_s:g} per second (evenly spaced, *join s* in all), "
                if args.join_per_s > 0 else "The streams of a step all join at once, ")
             + f"then all of them stream for {args.seconds:g} s and stop together. "
             f"Latency = result arrival - sending of the window's last frame. *p50/p95/max* are over the windows "
             f"answered from {SETTLE_S:g} s after the last stream joined to the end (every stream up); *p95 while "
             f"joining* is over the windows answered before (a new stream's first window costs about four later "
             f"ones: nothing of it is cached yet). A step holds when that p95 < {max_p95_ms:.0f} ms and no window "
             f"of the whole step, joins included, is dropped. The load generator (one asyncio process) runs on the "
             f"same machine. CPU columns are cores (CPU s per wall s) over the whole step, from /proc: the server's "
             f"event-loop thread, its compute worker threads (together), its other threads (BLAS/encoder/TensorFlow "
             f"pools, I/O), the "
             f"generator process, and the rest of the machine (other work competing for the cores). Stages: the "
             f"compute threads' CPU ms per window in each stage, their wall ms in brackets (prep = PCM decode, "
             f"resampling, window cutting, per window cut; score = recognizer, whose helper threads count under other "
             f"threads; decide = stream decision and message JSON).", ""]
    for label, steps in runs:
        first_miss = next((i for i, s in enumerate(steps) if not s.holds(max_p95_ms)), len(steps))
        held = [s.streams for s in steps[:first_miss]]  # the ramp's answer: every step up to N held
        lines += [f"### {label}", "",
                  "| streams | join s | windows | p50 ms | p95 ms | max ms | p95 while joining, ms | dropped | "
                  "mean batch | loop | compute | other threads | generator | machine other | "
                  "prep / score / decide ms per window |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in steps:
            c = s.cpu
            stages = stage_text(s.batcher)
            lines.append(f"| {s.streams} | {s.join_s:.1f} | {s.windows} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | "
                         f"{s.max_ms:.1f} | {s.join_p95_ms:.1f} | {s.dropped} | {s.batcher['mean_batch']} | {c.get('loop', '-')} | {c.get('compute', '-')} | "
                         f"{c.get('other_threads', '-')} | {c.get('self', '-')} | {c.get('other', '-')} | {stages} |")
        if steps and first_miss == len(steps):
            verdict = f"at least {steps[-1].streams} (every step held; extend --streams to find the limit)"
        else:
            verdict = str(max(held) if held else 0)
        lines += ["", f"Largest N holding p95 < {max_p95_ms:.0f} ms with nothing dropped: **{verdict}**", ""]
    if soak:
        lines += ["### Soak", "", *soak, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_section(path: Path, body: str, name: str = "server") -> None:
    """Replace one section (default ``server``) of the benchmarks doc, leaving other sections alone."""
    update_section(path, name, body)


async def soak(server: ManagedServer, frames: list[bytes], n: int, args) -> list[str]:
    rss0 = server.rss_mb()
    step = await run_step(server.base, frames, n, args.soak_minutes * 60, args.rate, args.frame_ms / 1000, server.pid,
                          args.join_per_s)
    rss1 = server.rss_mb()
    return [f"{n} streams for {args.soak_minutes:g} min: p50 {step.p50_ms:.1f} ms, p95 {step.p95_ms:.1f} ms, "
            f"dropped {step.dropped}, errors {step.errors}; server RSS {rss0:.0f} MB at the start, "
            f"{rss1:.0f} MB at the end; cores: loop {step.cpu.get('loop')}, compute {step.cpu.get('compute')}."]


def _clone_main(argv: list[str]) -> int:
    c = argparse.ArgumentParser(prog="loadtest.py clone-db")
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)
    c.add_argument("--tracks", type=int, required=True)
    a = c.parse_args(argv)
    try:
        clone_db(a.src, a.dst, a.tracks)
    except BenchError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {a.dst} with {a.tracks} tracks (timing only)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Concurrent real-time streams against a local audiocopy server.")
    p.add_argument("--server", help="base URL of a running local server (e.g. http://127.0.0.1:8080)")
    p.add_argument("--server-pid", type=int, help="with --server: its process id, for CPU per thread")
    p.add_argument("--db", action="append", default=[], help="start a server for this database (repeatable)")
    p.add_argument("--code", action="append", type=Path, default=[],
                   help="checkout whose server.py serves each --db, in the same order (default: this one); "
                        "compares two versions in one run")
    p.add_argument("--streams", action="append", default=[],
                   help="ramp of concurrent streams, e.g. 1,2,4,8 (default 1,2,4,6,8,12,16,24,32); give it "
                        "once for all databases or once per --db, in the same order")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="seconds each step runs with all its streams, after they joined (default 30)")
    p.add_argument("--join-per-s", type=float, default=DEFAULT_JOIN_PER_S,
                   help=f"streams joining per second at the start of a step (default {DEFAULT_JOIN_PER_S:g}; "
                        "0: all at once)")
    p.add_argument("--server-args", default="", help="extra options for every server started with --db, e.g. "
                                                   "\"--max-batch 128\" (one string, split like a shell)")
    p.add_argument("--rate", type=int, default=DEFAULT_RATE, help="client sample rate in Hz (default 48000)")
    p.add_argument("--frame-ms", type=float, default=DEFAULT_FRAME_MS, help="frame length in ms (default 100)")
    p.add_argument("--audio", help="file to loop (default: a synthetic signal)")
    p.add_argument("--max-p95-ms", type=float, default=1000.0)
    p.add_argument("--keep-going", action="store_true",
                   help="run every step of the ramp, also after one that did not hold (CPU figures under overload)")
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    p.add_argument("--soak-streams", help="after the ramp, run this many streams for --soak-minutes "
                                          "('auto': half the largest N that held)")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-db", action="append", default=[],
                   help="soak only this --db (repeatable; default: every --db)")
    p.add_argument("--write", type=Path, help="write the report between the server markers of this markdown file")
    p.add_argument("--section", default="server",
                   help="name of the markers to write between (default server; another name adds a section)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["clone-db"]:
        return _clone_main(argv[1:])
    p = build_parser()
    args = p.parse_args(argv)
    if bool(args.server) == bool(args.db):
        p.error("give either --server or --db")
    targets = args.db or [args.server]
    ramps = args.streams or ["1,2,4,6,8,12,16,24,32"]
    if len(ramps) not in (1, len(targets)):
        p.error(f"give --streams once, or once per --db ({len(targets)})")
    ramps = [[int(x) for x in r.split(",") if x.strip()] for r in ramps] * (len(targets) if len(ramps) == 1 else 1)
    if args.code and len(args.code) != len(args.db):
        p.error(f"give --code once per --db ({len(args.db)})")
    if args.join_per_s < 0 or args.seconds <= 0:
        p.error("--join-per-s must be >= 0 and --seconds > 0")
    codes = args.code or [ROOT] * len(args.db)
    missing = [db for db in args.db if not (Path(db) / "db.json").is_file()]
    if missing:
        p.error(f"--db {missing[0]}: no audiocopy database there (build one with `audiocopy enroll`)")
    unknown = sorted(set(args.soak_db) - set(args.db))
    if unknown:
        p.error(f"--soak-db {unknown[0]} is not one of the --db databases")
    frames = load_frames(args.audio, args.rate, args.frame_ms / 1000)
    runs, soak_lines, notes = [], [], list(args.note)
    if args.server:
        base = check_local(args.server)
        print(f"{base}: {asyncio.run(fetch_status(base))['tracks']} tracks")
        notes.append(server_facts(args.server_pid))
        runs.append((f"{args.server}", asyncio.run(ramp(base, frames, ramps[0], args, args.server_pid))))
    for db, steps, code in zip(args.db, ramps, codes):
        notes.append(describe_db(Path(db)))
        with ManagedServer(db, max(steps) + 1, shlex.split(args.server_args), code) as server:
            status = asyncio.run(fetch_status(server.base))
            label = (f"{status['tracks']} tracks, {status['engine']}" + (f", server `{code}`" if args.code else "")
                     + (f", `{args.server_args}`" if args.server_args else ""))
            notes.append(f"{label}: " + server_facts(server.pid, code))
            print(f"{db}: {label} on {server.base}")
            runs.append((label, asyncio.run(ramp(server.base, frames, steps, args, server.pid))))
            if args.soak_streams and (not args.soak_db or db in args.soak_db):
                held = [s.streams for s in runs[-1][1] if s.holds(args.max_p95_ms)]
                n = max(1, max(held, default=2) // 2) if args.soak_streams == "auto" else int(args.soak_streams)
                soak_lines += [f"{label}: " + line for line in asyncio.run(soak(server, frames, n, args))]
                print(soak_lines[-1])
    text = report(runs, soak_lines, args, argv, notes)
    print(text)
    if args.write:
        write_section(args.write, text, args.section)
        print(f"wrote the {args.section} section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
