"""Two server processes on one store, one live radio monitor, the holder killed: one play, moved in < 15 s.

Two ``server.py`` workers (ids "worker-a", "worker-b") share one state
folder, so one SQLite store, with the default lease timing (TTL 10 s,
renewal every 3 s). A local "station" served from this test plays the
catalogue's "chord" live (paced by the wall clock from its first listener,
then silence for ever), so a worker that connects later hears the rest of
the song, as from a real radio. Once the holder has an open play of it in
the store, the holder is killed with SIGKILL (no shutdown, no flush). The
other worker must claim the monitor within 15 s of the kill, and when the
song has ended the store must hold it exactly once: one closed play, from
the killed worker's start to the new worker's end, written last by the new
worker (``web.handover``), and no other play of the station.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synth import pattern

from audiocopy.plays.store import PlaysLog

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "takeover-test-token-0123456789"
RATE = 22050
SONG_S = 45.0  # long enough to outlast the kill, the takeover and the new worker's detection
TAKEOVER_LIMIT_S = 15.0

# Two servers start and run for a minute and a half: with the other multi-worker tests, not in the default run.
pytestmark = [pytest.mark.asyncio, pytest.mark.scaleout,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Station:
    """A live WAV stream of ``audio`` on the wall clock from its first listener, then silence."""

    def __init__(self, audio: np.ndarray):
        self.pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.on_air_at: float | None = None

    async def handle(self, request):
        from aiohttp import web

        if self.on_air_at is None:
            self.on_air_at = time.monotonic()
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await resp.prepare(request)
        # A WAV header of unknown (maximal) length: the stream never ends.
        await resp.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
                         struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16) + b"data" +
                         struct.pack("<I", 0xFFFFFFFF))
        sent = int((time.monotonic() - self.on_air_at) * RATE) * 2  # tune in to "now"
        try:
            while True:
                due = int((time.monotonic() - self.on_air_at) * RATE) * 2
                if due > sent:
                    piece = self.pcm[sent:due]
                    piece += bytes(due - sent - len(piece))  # after the song: silence
                    await resp.write(piece)
                    sent = due
                await asyncio.sleep(0.1)
        except (ConnectionError, asyncio.CancelledError):
            return resp


class Worker:
    """``server.py`` as a worker process on a free port, its log in the state folder."""

    def __init__(self, db: Path, state: Path, worker_id: str):
        self.id, self.port = worker_id, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state / f"{worker_id}.log"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py"), "--db", str(db), "--state-dir", str(state),
                 "--host", "127.0.0.1", "--port", str(self.port), "--admin-token", TOKEN, "--worker-id", worker_id,
                 "--allow-private-monitors", "true"],
                stdout=subprocess.DEVNULL, stderr=log_file, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def tail(self) -> str:
        return f"--- {self.id}:\n" + self.log_path.read_text(errors="replace")[-2500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _until(check, *, timeout: float, what: str, logs=()):
    """Poll ``check`` (async, returns a value or None) every 0.25 s; its first value, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s\n" + "\n".join(w.tail() for w in logs))


# Long: one scenario, step by step, reads best in one place
async def test_killed_holder_monitor_moves_within_15_s_and_its_song_is_one_play(tiny_db, tmp_path,
                                                                                  aiohttp_server):
    import aiohttp
    from aiohttp import web

    station = Station(np.concatenate([pattern("chord", SONG_S, RATE)]))
    radio = web.Application()
    radio.router.add_get("/live.wav", station.handle)
    url = f"http://127.0.0.1:{(await aiohttp_server(radio)).port}/live.wav"
    state = tmp_path / "state"
    state.mkdir()
    workers = [Worker(tiny_db, state, "worker-a"), Worker(tiny_db, state, "worker-b")]
    store = PlaysLog(state / "plays.sqlite")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def status(w: Worker):
                try:
                    async with http.get(w.base + "/api/status", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        return await resp.json() if resp.status == 200 else None
                except (TimeoutError, aiohttp.ClientError):
                    return None

            for w in workers:
                await _until(lambda w=w: status(w), timeout=120, what=f"{w.id} start", logs=workers)
            async with http.post(workers[0].base + "/api/monitors", headers=auth,
                                 json={"url": url, "name": "Live Radio"}) as resp:
                assert resp.status == 201, await resp.text()
                mid = (await resp.json())["monitor"]["id"]

            async def holder():
                body = await status(workers[1]) or await status(workers[0])
                held = [w["id"] for w in (body or {}).get("workers") or [] if mid in w["monitors"] and w["alive"]]
                return held[0] if held else None

            first = await _until(holder, timeout=15, what="a worker taking the monitor", logs=workers)
            victim, survivor = sorted(workers, key=lambda w: w.id != first)
            opened = await _until(lambda: _async(lambda: store.query(source="Live Radio", status="open")),
                                  timeout=60, what="an open play of the song", logs=workers)
            assert [(p.track, p.worker_id) for p in opened] == [("chord", victim.id)]
            await asyncio.sleep(2.0)  # the song plays on a little, checkpoints written
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            victim.proc.wait(10)

            async def survivor_holds():
                body = await status(survivor)
                rows = {w["id"]: w for w in (body or {}).get("workers") or []}
                return survivor.id in rows and mid in rows[survivor.id]["monitors"]

            await _until(survivor_holds, timeout=30, what="the takeover", logs=workers)
            took_s = time.monotonic() - killed_at
            print(f"takeover: {took_s:.1f} s after the kill, {killed_at - station.on_air_at:.1f} s into the song")
            assert took_s <= TAKEOVER_LIMIT_S, f"the monitor moved {took_s:.1f} s after the kill"
            body = await status(survivor)
            rows = {w["id"]: w for w in body["workers"]}
            assert body["worker_id"] == survivor.id and rows[victim.id]["alive"] is False
            assert rows[victim.id]["monitors"] == []

            # The song ends (silence follows); the new holder closes the play it continued.
            closed = await _until(lambda: _async(lambda: store.query(source="Live Radio", status="closed")),
                                  timeout=SONG_S + 60, what="the song's play closing", logs=workers)
        print(f"song closed {time.monotonic() - station.on_air_at:.1f} s after it began")
        plays = store.query(source="Live Radio")
        assert len(plays) == 1, [(p.key, p.status, p.worker_id, p.start_s, p.end_s) for p in plays]
        (play,) = closed
        assert (play.key, play.track, play.worker_id) == (opened[0].key, "chord", survivor.id)
        assert play.started_at == opened[0].started_at  # from the killed worker's start...
        assert play.end_s - play.start_s > SONG_S - 15  # ...to the survivor's end: nearly the whole song
    finally:
        for w in workers:
            w.stop()


async def _async(fn):
    return await asyncio.get_running_loop().run_in_executor(None, fn)
