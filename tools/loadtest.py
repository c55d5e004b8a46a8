#!/usr/bin/env python3
"""Load test: N concurrent real-time streams against a local audiocopy server.

Usage::

    # against a running server
    python tools/loadtest.py --server http://127.0.0.1:8080 --streams 1,2,4,8,12,16 --seconds 30
    # start a server per catalogue, ramp, and write docs/benchmarks.md
    python tools/loadtest.py --db data/bench/db10 --db data/bench/db100 --write docs/benchmarks.md
    # timing catalogues of 10 and 100 tracks cloned from any trained database
    python tools/loadtest.py clone-db data/model data/bench/db100 --tracks 100
    # 10-minute soak at a fixed N, with the server's RSS at the start and the end
    python tools/loadtest.py --db data/bench/db100 --soak-streams 4 --soak-minutes 10 --write docs/benchmarks.md

Place in the pipeline: a benchmark tool, not a test (see the style guide).
Each stream speaks the ``/ws`` protocol like a live microphone: 16 kHz s16le
frames of 100 ms sent on a wall-clock schedule, audio looped from a file or
a synthetic signal, start times staggered so streams do not tick in step.

Latency of a window = arrival of its result - the moment the frame holding
the window's last sample was sent, i.e. what a user waits once the music
for that window has been played. The ramp raises N through ``--streams``
and stops at the first N with p95 >= ``--max-p95-ms`` or any dropped
window; the report names the largest N that held.

Only addresses on this machine are targeted (the tool refuses any other
host), every loop is bounded by ``--seconds``, and a server started by the
tool is stopped by it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tools"))
from benchlib import BenchError, busy_cores, clone_db, machine_info, update_section  # noqa: E402


def machine() -> str:
    """One line naming the machine, for the report."""
    m = machine_info()
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}"

SAMPLE_RATE = 16000
FRAME_SECONDS = 0.1
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class StreamResult:
    latencies_ms: list[float] = field(default_factory=list)
    windows: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class StepResult:
    streams: int
    seconds: float
    windows: int
    dropped: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    errors: int
    batcher: dict

    def holds(self, max_p95_ms: float) -> bool:
        return self.windows > 0 and self.dropped == 0 and self.errors == 0 and self.p95_ms < max_p95_ms


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_signal(path: str | None):
    """Audio to loop: a file (decoded to 16 kHz) or a synthetic 20 s signal."""
    import numpy as np

    if path:
        from audiocopy.config import AudioParams
        from audiocopy.signal.audio import load_audio

        signal_ = load_audio(path, params=AudioParams(sample_rate=SAMPLE_RATE))
    else:
        t = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
        signal_ = (0.5 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.25) < 0.08)).astype(np.float32)
    return (np.clip(signal_, -1, 1) * 32767).astype("<i2").tobytes()


async def one_stream(ws_url: str, pcm: bytes, seconds: float, index: int, measure_after_s: float) -> StreamResult:
    """Stream ``seconds`` of looped audio in real time; collect per-window latency."""
    import aiohttp

    result = StreamResult()
    frame_bytes = int(SAMPLE_RATE * FRAME_SECONDS) * 2
    n_frames = int(seconds / FRAME_SECONDS)
    sent_at: list[float] = []  # monotonic time each frame was sent
    await asyncio.sleep(random.Random(index).uniform(0, 0.5))  # stagger: streams are not in phase
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json({"type": "start", "sample_rate": SAMPLE_RATE, "format": "s16le", "channels": 1,
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
                    last_frame = max(0, int(round(data["end_s"] / FRAME_SECONDS)) - 1)
                    if data["start_s"] >= measure_after_s and last_frame < len(sent_at):
                        result.latencies_ms.append(1000 * (now - sent_at[last_frame]))
                    result.windows += 1
                elif kind == "dropped":
                    result.dropped += data["windows"]
                elif kind == "error":
                    result.errors.append(f"{data['code']}: {data['message']}")
                elif kind == "stopped":
                    return

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        for k in range(n_frames):
            delay = t0 + k * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            start = (k * frame_bytes) % len(pcm)
            frame = pcm[start:start + frame_bytes]
            if len(frame) < frame_bytes:
                frame += pcm[: frame_bytes - len(frame)]
            sent_at.append(time.monotonic())
            await ws.send_bytes(frame)
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


async def run_step(base: str, pcm: bytes, n: int, seconds: float) -> StepResult:
    ws_url = base.replace("http", "ws", 1) + "/ws"
    before = await fetch_status(base)
    results = await asyncio.gather(*(one_stream(ws_url, pcm, seconds, i, measure_after_s=1.0) for i in range(n)),
                                   return_exceptions=True)
    after = await fetch_status(base)
    lat, windows, dropped, errors = [], 0, 0, 0
    for r in results:
        if isinstance(r, BaseException):
            errors += 1
            continue
        lat += r.latencies_ms
        windows += r.windows
        dropped += r.dropped
        errors += len(r.errors)
    b0, b1 = before["batcher"], after["batcher"]
    batches = b1["batches"] - b0["batches"]
    batch = {"batches": batches, "mean_batch": round((b1["windows"] - b0["windows"]) / batches, 2) if batches else 0}
    return StepResult(n, seconds, windows, dropped, percentile(lat, 50), percentile(lat, 95),
                      max(lat) if lat else float("nan"), errors, batch)


def check_local(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        raise SystemExit(f"error: the load test only targets this machine (127.0.0.1/localhost), not {host!r}")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedServer:
    """A server.py child on a free local port, stopped on exit."""

    def __init__(self, db: str, max_streams: int, extra: list[str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        state = Path(db) / "server-loadtest"
        self.cmd = [sys.executable, str(ROOT / "server.py"), "--db", db, "--host", "127.0.0.1", "--port",
                    str(self.port), "--max-streams", str(max_streams), "--state-dir", str(state),
                    "--admin-token", "loadtest-not-a-secret-0000", *extra]
        self.log_path = state / "server.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ManagedServer":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        # The server's log goes to a file: hundreds of streams log a play each,
        # and an unread pipe would fill up and stall the server mid-measurement.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
        deadline = time.monotonic() + 180
        import urllib.request

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
                raise SystemExit(f"error: the server exited: {tail}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    if json.load(resp).get("ok"):
                        return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit("error: the server did not start within 180 s")

    def rss_mb(self) -> float | None:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except (OSError, AttributeError):
            return None
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(m.group(1)) / 1024 if m else None

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def ramp(base: str, pcm: bytes, steps: list[int], seconds: float, max_p95_ms: float) -> list[StepResult]:
    # Warm-up, not reported: the first calls of a fresh server pay one-off
    # costs (graph tracing for new batch sizes, lazy imports, page faults).
    await run_step(base, pcm, 2, 6.0)
    out = []
    for n in steps:
        step = await run_step(base, pcm, n, seconds)
        out.append(step)
        print(f"  N={n:3d}  windows {step.windows:5d}  p50 {step.p50_ms:7.1f} ms  p95 {step.p95_ms:7.1f} ms  "
              f"max {step.max_ms:7.1f} ms  dropped {step.dropped:4d}  errors {step.errors}  "
              f"mean batch {step.batcher['mean_batch']}", flush=True)
        if not step.holds(max_p95_ms):
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


def report(runs: list[tuple[str, list[StepResult]]], soak: list[str], args, max_p95_ms: float,
           notes: list[str] = (), section: str = "server") -> str:
    title = "## Streaming server (tools/loadtest.py)" + ("" if section == "server" else f": {section}")
    lines = [title, "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
             f"cores busy with other work when this report was written: {busy_cores()}.",
             f"Command: `python tools/loadtest.py {' '.join(args)}`", "",
             *(f"- {n}" for n in notes), *([""] if notes else []),
             f"Each stream sends 16 kHz audio in 100 ms frames in real time. Latency = result arrival - sending of "
             f"the window's last frame. A step holds when p95 < {max_p95_ms:.0f} ms and no window is dropped. "
             f"The load generator (one asyncio process) runs on the same machine, so its CPU time is taken "
             f"from the server's.", ""]
    for label, steps in runs:
        held = [s.streams for s in steps if s.holds(max_p95_ms)]
        lines += [f"### {label}", "", "| streams | windows | p50 ms | p95 ms | max ms | dropped | mean batch |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {s.streams} | {s.windows} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | {s.max_ms:.1f} | {s.dropped} | "
                  f"{s.batcher['mean_batch']} |" for s in steps]
        if steps and steps[-1].holds(max_p95_ms):
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


async def soak(server: ManagedServer, pcm: bytes, n: int, minutes: float) -> list[str]:
    rss0 = server.rss_mb()
    step = await run_step(server.base, pcm, n, minutes * 60)
    rss1 = server.rss_mb()
    return [f"{n} streams for {minutes:g} min: p50 {step.p50_ms:.1f} ms, p95 {step.p95_ms:.1f} ms, "
            f"dropped {step.dropped}, errors {step.errors}; server RSS {rss0:.0f} MB at the start, "
            f"{rss1:.0f} MB at the end."]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["clone-db"]:
        c = argparse.ArgumentParser(prog="loadtest.py clone-db")
        c.add_argument("src", type=Path)
        c.add_argument("dst", type=Path)
        c.add_argument("--tracks", type=int, required=True)
        a = c.parse_args(argv[1:])
        try:
            clone_db(a.src, a.dst, a.tracks)
        except BenchError as exc:
            raise SystemExit(f"error: {exc}") from None
        print(f"wrote {a.dst} with {a.tracks} tracks (timing only)")
        return 0
    p = argparse.ArgumentParser(description="Concurrent real-time streams against a local audiocopy server.")
    p.add_argument("--server", help="base URL of a running local server (e.g. http://127.0.0.1:8080)")
    p.add_argument("--db", action="append", default=[], help="start a server for this database (repeatable)")
    p.add_argument("--streams", action="append", default=[],
                   help="ramp of concurrent streams, e.g. 1,2,4,8 (default 1,2,4,6,8,12,16,24,32); give it "
                        "once for all databases or once per --db, in the same order")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each step (default 30)")
    p.add_argument("--audio", help="file to loop (default: a synthetic signal)")
    p.add_argument("--max-p95-ms", type=float, default=1000.0)
    p.add_argument("--soak-streams", help="after the ramp, run this many streams for --soak-minutes "
                                          "('auto': half the largest N that held)")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-db", action="append", default=[],
                   help="soak only this --db (repeatable; default: every --db)")
    p.add_argument("--write", type=Path, help="write the report between the server markers of this markdown file")
    p.add_argument("--section", default="server",
                   help="name of the markers to write between (default server; another name adds a section)")
    args = p.parse_args(argv)
    if bool(args.server) == bool(args.db):
        p.error("give either --server or --db")
    targets = args.db or [args.server]
    ramps = args.streams or ["1,2,4,6,8,12,16,24,32"]
    if len(ramps) not in (1, len(targets)):
        p.error(f"give --streams once, or once per --db ({len(targets)})")
    ramps = [[int(x) for x in r.split(",") if x.strip()] for r in ramps] * (len(targets) if len(ramps) == 1 else 1)
    unknown = sorted(set(args.soak_db) - set(args.db))
    if unknown:
        p.error(f"--soak-db {unknown[0]} is not one of the --db databases")
    pcm = load_signal(args.audio)
    runs, soak_lines, notes = [], [], []
    if args.server:
        base = check_local(args.server)
        print(f"{base}: {asyncio.run(fetch_status(base))['tracks']} tracks")
        runs.append((f"{args.server}", asyncio.run(ramp(base, pcm, ramps[0], args.seconds, args.max_p95_ms))))
    for db, steps in zip(args.db, ramps):
        notes.append(describe_db(Path(db)))
        with ManagedServer(db, max(steps) + 1, []) as server:
            status = asyncio.run(fetch_status(server.base))
            label = f"{status['tracks']} tracks, {status['engine']}"
            print(f"{db}: {label} on {server.base}")
            runs.append((label, asyncio.run(ramp(server.base, pcm, steps, args.seconds, args.max_p95_ms))))
            if args.soak_streams and (not args.soak_db or db in args.soak_db):
                held = [s.streams for s in runs[-1][1] if s.holds(args.max_p95_ms)]
                n = max(1, max(held, default=2) // 2) if args.soak_streams == "auto" else int(args.soak_streams)
                soak_lines += [f"{label}: " + line for line in
                               asyncio.run(soak(server, pcm, n, args.soak_minutes))]
                print(soak_lines[-1])
    text = report(runs, soak_lines, argv, args.max_p95_ms, notes, args.section)
    print(text)
    if args.write:
        write_section(args.write, text, args.section)
        print(f"wrote the {args.section} section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
