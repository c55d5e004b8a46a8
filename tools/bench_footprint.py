#!/usr/bin/env python3
"""Footprint benchmark: a cold `audiocopy identify` of one fragment, and the server's memory.

What a user pays before the first answer, measured the way they pay it:

* **Cold identify.** A fresh process runs ``audiocopy identify --json`` on a
  2.5 s fragment: interpreter start, imports, loading the database and the
  encoder, one window, the answer. Repeated ``--runs`` times (each a new
  process, so nothing is warm but the OS file cache); median, min and max
  wall seconds. The same run reports whether TensorFlow or Keras were
  imported (serving must not need them).
* **Server memory.** ``audiocopy serve`` on a database (``--server-db``, e.g.
  1,000 fingerprint tracks), a few streams of real audio through ``/ws``,
  then the server's resident memory (VmRSS) and its peak (VmHWM), read from
  ``/proc``. The report states what that database holds (tracks, how many
  are distorted copies, vectors, index structure), read from the database
  itself; a 1,000-track one is written by ``tools/bench_fingerprint.py
  --corpus CORPUS --steps server-db`` (the corpus plus distorted copies).

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_footprint.py --db DB --fragment-from TRACK.wav \\
        --server-db DB1000 --write docs/benchmarks.md

Figures go to the ``footprint`` section of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench.common import BenchError
from bench.doc import update_section
from bench.load_server import wait_until_healthy
from bench.machine import load_note, machine_info

#: Checks, in the identify process itself, which heavy frameworks got imported.
PROBE = ("import sys, runpy; sys.argv = ['audiocopy'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('audiocopy.cli', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('IMPORTED', ','.join(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules), file=sys.stderr)\n")


def cut_fragment(track: Path, out: Path, *, start_s: float = 30.0, seconds: float = 2.5) -> Path:
    """A 2.5 s WAV cut from ``track`` (at its own rate) for the identify runs."""
    import soundfile as sf

    data, rate = sf.read(str(track), dtype="float32", always_2d=False)
    lo = int(start_s * rate)
    if data.shape[0] < lo + int(seconds * rate):
        lo = max(0, data.shape[0] - int(seconds * rate))
    sf.write(str(out), data[lo:lo + int(seconds * rate)], rate)
    return out


def cold_identify(db: Path, fragment: Path, runs: int) -> dict:
    """Wall seconds of ``runs`` fresh ``audiocopy identify`` processes, and what they imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", PROBE, "identify", "--db", str(db), "--json", str(fragment)]
    times, imported, answer = [], set(), None
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                              timeout=300)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise BenchError(f"identify failed: {done.stderr.strip()[-300:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        line = next((x for x in done.stderr.splitlines() if x.startswith("IMPORTED")), "IMPORTED ")
        imported |= {m for m in line.split(" ", 1)[1].split(",") if m}
    return {"runs": runs, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "imported_frameworks": sorted(imported), "answer": answer}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} for process {pid}")


async def _stream(port: int, audio, seconds: float) -> dict:
    """Send ``seconds`` of 16 kHz s16le audio in 100 ms frames, as fast as the server takes it.

    Returns the server's ``stopped`` message (windows answered, windows
    dropped), so the report can show that the streams were really recognised.
    """
    import aiohttp
    import numpy as np

    pcm = (np.clip(audio[: int(seconds * 16000)], -1, 1) * 32767).astype("<i2").tobytes()
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000, "format": "s16le", "realtime": False})
        for i in range(0, len(pcm), 3200):
            await ws.send_bytes(pcm[i:i + 3200])
        await ws.send_json({"type": "stop"})
        async for msg in ws:
            body = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
            if body.get("type") == "stopped":
                return body
            if body.get("type") == "error" and body.get("fatal"):
                raise BenchError(f"stream refused: {body.get('code')}: {body.get('message')}")
    raise BenchError("the server closed a stream without a 'stopped' message")


def describe_db(db: Path) -> dict:
    """What the server loads: tracks (how many are distorted copies), vectors and the index structure.

    Copies are the tracks ``tools/bench_fingerprint.py --steps server-db``
    adds to the enrolled corpus (their record's ``source`` says ``copy of``);
    the figures come from the database itself, so the report says what was
    measured rather than what the command line was meant to name.
    """
    from audiocopy.engines import catalog
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint.index.open import read_header

    records = catalog.track_records(db)
    header = read_header(fpdb.index_path(db, fpdb.read_config(db)))
    return {"path": str(db), "tracks": len(records),
            "copies": sum(str(r.get("source", "")).startswith("copy of") for r in records),
            "vectors": sum(int(r.get("n_vectors", 0)) for r in records),
            "structure": header.get("extra", {}).get("structure", header.get("backend", "?"))}


def server_memory(db: Path, track: Path, *, streams: int, seconds: float) -> dict:
    """RSS and peak RSS (MiB) of a server on ``db`` before and after ``streams`` streams of real audio."""
    from audiocopy.config import AudioParams
    from audiocopy.signal.audio import load_audio

    audio = load_audio(track, params=AudioParams())
    port = _free_port()
    state = Path(tempfile.mkdtemp(prefix="footprint-"))
    cmd = [sys.executable, "-m", "audiocopy.cli", "serve", "--db", str(db), "--port", str(port),
           "--state-dir", str(state), "--admin-token", "footprint-benchmark-token"]
    with open(state / "server.log", "w") as log_file:
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                                stderr=log_file)
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}", 120.0)
        idle = _status_kib(proc.pid, "VmRSS") / 1024

        async def all_streams():
            return await asyncio.gather(*(_stream(port, audio, seconds) for _ in range(streams)))

        stopped = asyncio.run(all_streams())
        if not sum(int(x.get("windows", 0)) for x in stopped):
            raise BenchError("the server answered no window of the streams: its memory would say nothing")
        return {"tracks_db": str(db.name), "db": describe_db(db), "idle_rss_mib": round(idle, 1),
                "rss_after_streams_mib": round(_status_kib(proc.pid, "VmRSS") / 1024, 1),
                "peak_rss_mib": round(_status_kib(proc.pid, "VmHWM") / 1024, 1), "streams": streams,
                "stream_seconds": seconds, "windows": sum(int(x.get("windows", 0)) for x in stopped),
                "dropped_windows": sum(int(x.get("dropped", 0)) for x in stopped)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _server_rows(m: dict) -> list[str]:
    """The server-memory rows and the paragraph saying which database they were measured on."""
    d = m["db"]
    made = (f"{d['tracks'] - d['copies']:,} enrolled corpus tracks plus {d['copies']:,} distorted copies of them, "
            "each a corpus track at another speed (0.85-1.15x) with white noise at 30 dB, written by "
            "`tools/bench_fingerprint.py --steps server-db`") if d["copies"] else "all enrolled tracks"
    return [(f"| server RSS on `{m['tracks_db']}` ({d['tracks']:,} tracks), idle after start | "
             f"{m['idle_rss_mib']} MiB | |"),
            (f"| server RSS after {m['streams']} streams of {m['stream_seconds']:.0f} s | "
             f"{m['rss_after_streams_mib']} MiB | <= 400 MiB |"),
            f"| server peak RSS (VmHWM) | {m['peak_rss_mib']} MiB | |", "",
            (f"The server database: `{d['path']}`, {d['tracks']:,} tracks: {made}; {d['vectors']:,} vectors, "
             f"index `{d['structure']}`. RSS is the server's VmRSS after start and after {m['streams']} concurrent "
             f"`/ws` streams of {m['stream_seconds']:.0f} s of real audio ({m['windows']:,} windows answered, "
             f"{m['dropped_windows']} dropped); the target (<= 400 MiB with 1,000 "
             "fingerprint tracks) is in MiB (2^20 bytes).")]


def report(res: dict, command: str) -> str:
    """The ``footprint`` section of the benchmarks doc."""
    c, m = res["identify"], res.get("server")
    lines = ["## Footprint: cold identify and server memory (tools/bench_footprint.py)", "",
             f"Measured {res['date']} on {res['machine']}; {res['load']}.", f"Command: `{command}`", "",
             "| measure | value | target |", "|---|---:|---:|",
             (f"| cold `audiocopy identify --json` of one 2.5 s file ({c['runs']} fresh processes), median "
              f"(min-max) | {c['median_s']} s ({c['min_s']}-{c['max_s']}) | <= 1 s |"),
             f"| frameworks imported by that process | {', '.join(c['imported_frameworks']) or 'none'} | none |"]
    lines += _server_rows(m) if m else []
    lines += ["", (f"The identify database: `{res['db']}`; its answer for the fragment: "
                   f"`{json.dumps(c['answer'], ensure_ascii=False)[:200]}`.")]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Cold identify time and server memory.")
    p.add_argument("--db", type=Path, required=True, help="database for the identify runs")
    p.add_argument("--fragment-from", type=Path, required=True, help="audio file to cut the 2.5 s fragment from")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--server-db", type=Path, help="database the server loads (e.g. 1,000 fingerprint tracks)")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--stream-seconds", type=float, default=30.0)
    p.add_argument("--write", type=Path, help="update the footprint section of this benchmarks doc")
    args = p.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fragment = cut_fragment(args.fragment_from, Path(tmp) / "fragment.wav")
            m, load = machine_info(), load_note()
            res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "db": str(args.db.name),
                   "machine": f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, "
                              f"Python {m['python']}",
                   "load": f"load average {load['loadavg']}, cores busy with other work {load['busy_cores']}",
                   "identify": cold_identify(args.db, fragment, args.runs)}
        if args.server_db:
            res["server"] = server_memory(args.server_db, args.fragment_from, streams=args.streams,
                                          seconds=args.stream_seconds)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2))
    if args.write:
        command = shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/bench_footprint.py",
                              *(sys.argv[1:] if argv is None else argv)])
        update_section(args.write, "footprint", report(res, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
