"""Streaming programmes through a real server's ``/ws`` path, and what came back.

Place in ``tools/bench``: after ``broadcast_chains``, before
``broadcast_score``. The benchmark measures the stream decision where users
meet it: ``audiocopy serve`` is started as a child process on a free
loopback port with the benchmark's database, and each programme is sent as
a client would send it (``docs/protocol.md``): ``start`` with
``realtime: false``, so the server reads the socket only as fast as it
analyses and answers every window (TCP back-pressure, nothing dropped),
s16le PCM at the chain's rate in 0.5 s messages, then ``stop``.

Kept per stream: every ``window`` message's time, best match and score,
and its ``stream`` field (the "now playing" answer); every ``play``; the
``stopped`` totals; errors and ``dropped`` messages, which must not occur.
The server is always stopped at the end (SIGINT, then SIGKILL after 30 s),
also when streaming fails.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .common import BenchError
from .enrol import child_env
from .load_server import wait_until_healthy

log = logging.getLogger(__name__)

FRAME_S = 0.5
#: Admin token of the benchmark's own server (loopback only, state in the work folder).
TOKEN = "bench-broadcast-not-a-secret-0000"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``audiocopy serve`` on a free loopback port with a fresh state folder; a context manager.

    db: the database folder; state: the server's state folder (emptied
    first, so its plays log holds this run only); log_path: its stderr.
    """

    def __init__(self, db: Path, state: Path, log_path: Path, *, start_timeout_s: float = 300.0):
        self.db, self.state, self.log_path = Path(db), Path(state), Path(log_path)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.timeout = start_timeout_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True)
        cmd = [sys.executable, "-m", "audiocopy.cli", "serve", "--db", str(self.db), "--host", "127.0.0.1",
               "--port", str(self.port), "--state-dir", str(self.state), "--admin-token", TOKEN,
               "--max-streams", "4"]
        log.info("starting %s", " ".join(cmd))
        with open(self.log_path, "wb") as err:  # a file, not a pipe: an unread pipe would stall the server
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=child_env())
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        try:
            wait_until_healthy(self.proc, f"http://127.0.0.1:{self.port}", self.timeout)
        except BenchError as exc:
            raise BenchError(f"{exc}: {self.log_tail()}") from None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode(errors="replace").strip()
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGINT (a clean shutdown logs open plays), SIGKILL if it is still there after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def _pcm_blocks(wav: Path, frames: int):
    import soundfile as sf

    with sf.SoundFile(str(wav)) as f:
        if f.channels != 1:
            raise BenchError(f"{wav} has {f.channels} channels; the benchmark streams mono")
        for block in f.blocks(blocksize=frames, dtype="int16"):
            yield block.astype("<i2").tobytes()


def _window_row(m: dict) -> dict:
    """The fields of a ``window`` message the scoring uses (and a little for diagnosis)."""
    s = m.get("stream") or {}
    cands = [[c["track"], c["score"]] for c in (m.get("candidates") or [])[:3]]
    return {"seq": m["seq"], "start_s": m["start_s"], "end_s": m["end_s"], "match": m["match"], "score": m["score"],
            "cands": cands, "now": s.get("track"), "since_s": s.get("since_s"), "offset": s.get("track_offset_s"),
            "time_scale": s.get("time_scale")}


async def _receive(ws, out: dict) -> None:
    import aiohttp

    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        m = json.loads(msg.data)
        kind = m.get("type")
        if kind == "window":
            out["windows"].append(_window_row(m))
        elif kind == "play":
            out["plays"].append(m)
        elif kind in ("dropped", "error"):
            out["problems"].append(m)
            if kind == "error" and m.get("fatal"):
                return
        elif kind == "stopped":
            out["stopped"] = m
            return


async def _stream(url: str, wav: Path, rate: int, source: str, timeout_s: float) -> dict:
    import aiohttp
    import soundfile as sf

    if sf.info(str(wav)).samplerate != rate:
        raise BenchError(f"{wav} is not at {rate} Hz")
    out: dict = {"windows": [], "plays": [], "problems": [], "stopped": None}
    t0 = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.ws_connect(url, heartbeat=30, max_msg_size=0) as ws:
        await ws.send_json({"type": "start", "sample_rate": rate, "format": "s16le", "channels": 1,
                            "source": source[:100], "realtime": False})
        ready = await ws.receive_json(timeout=60)
        if ready.get("type") != "ready":
            raise BenchError(f"the server refused the stream: {ready}")
        out["ready"] = ready
        receiver = asyncio.create_task(_receive(ws, out))
        for frame in _pcm_blocks(wav, int(rate * FRAME_S)):
            if receiver.done():
                break
            await ws.send_bytes(frame)
        if not ws.closed:
            await ws.send_json({"type": "stop"})
        await asyncio.wait_for(receiver, timeout=timeout_s)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def stream_file(url: str, wav: Path, rate: int, source: str, *, timeout_s: float = 3600.0) -> dict:
    """Stream one WAV (mono, ``rate`` Hz) through ``/ws`` and collect the answers.

    Returns {"windows": [rows], "plays": [play messages], "problems": [dropped
    and error messages], "stopped": the stopped message, "ready": ...,
    "wall_s": seconds it took}. Raises ``BenchError`` when the server
    refuses, errs, drops windows or does not answer every window.
    """
    try:
        out = asyncio.run(_stream(url, Path(wav), rate, source, timeout_s))
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"streaming {wav} to {url} failed: {exc!r}") from None
    stopped = out["stopped"]
    if stopped is None:
        raise BenchError(f"the server closed the stream of {wav} without 'stopped': {out['problems'][-3:]}")
    if out["problems"] or stopped.get("dropped"):
        raise BenchError(f"the stream of {wav} had problems (dropped {stopped.get('dropped')}): {out['problems'][:3]}")
    if stopped["windows"] != len(out["windows"]):
        raise BenchError(f"the stream of {wav}: {stopped['windows']} windows analysed, "
                         f"{len(out['windows'])} window messages received")
    return out


def stream_all(db: Path, jobs: list[dict], *, state: Path, log_path: Path) -> dict[str, dict]:
    """Start one server for ``db`` and stream every job in turn; the server is stopped at the end, always.

    jobs: {"name", "wav", "rate"}; state: the server's state folder (emptied
    first); log_path: its stderr. Returns name -> ``stream_file``'s result.
    """
    results = {}
    with Server(db, state, log_path) as server:
        for job in jobs:
            t0 = time.perf_counter()
            results[job["name"]] = stream_file(server.url, Path(job["wav"]), job["rate"], f"bench {job['name']}")
            r = results[job["name"]]
            log.info("streamed %s: %d windows, %d plays in %.0f s", job["name"], len(r["windows"]), len(r["plays"]),
                     time.perf_counter() - t0)
    return results
