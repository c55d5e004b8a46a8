"""No lost plays: the server writes open plays as they grow, counts every window of a source, and recovers.

In-process (aiohttp_client, the tiny catalogue): a play is in the store
while it is still open, and its close replaces that row; the windows a live
stream loses to an overloaded server are counted in its source's row; a
play left open in the store is closed as "recovered" when the app starts.

Out of process: a real server (``server.py``) is killed with SIGKILL in the
middle of a play, started again on the same state folder, and the play is
found, recovered, with a sensible end.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from synth import pattern
from test_web_fixtures import (  # noqa: F401
    SlowRecognizer,
    auth_headers,
    make_client,
    pulses_radio,
    recognizer,
    s16le,
    settings,
    start_stream,
    stream_pcm,
)

from audiocopy.config import AudioParams
from audiocopy.decision.detection import Candidate, Detection
from audiocopy.decision.play import Play
from audiocopy.decision.stream import StreamDecision
from audiocopy.plays.record import PlayOrigin
from audiocopy.plays.store import PlaysLog
from audiocopy.web.app import PLAYS_FILE
from audiocopy.web.pipeline import CHECKPOINT_S, CutWindow, StreamPipeline
from audiocopy.web.protocol import StartRequest
from audiocopy.web.session import origin_of

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


async def _poll(fn, timeout: float = 20.0, what: str = "condition"):
    """``fn()`` until it returns something truthy (plays are written off the event loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.mark.asyncio
async def test_open_play_is_stored_while_streaming_then_closed_in_place(make_client, settings):
    client = await make_client()
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    pcm = s16le(pattern("pulses", 20, RATE))
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=RATE, source="studio")
        half = len(pcm) // 2 // 2 * 2
        for i in range(0, half, 16000):
            await ws.send_bytes(pcm[i:min(i + 16000, half)])
        (open_row,) = await _poll(lambda: store.query(status="open"), what="an open play in the store")
        assert open_row.track == "pulses" and open_row.source == "studio" and open_row.key
        assert (open_row.source_kind, open_row.monitor_id, open_row.source_verified) == ("ws", None, False)
        assert open_row.end_s <= 10.0
        messages = await stream_pcm(ws, pcm[half:], frame_bytes=16000)
    stopped = messages[-1]
    (sent,) = [m for m in messages if m["type"] == "play"]
    closed = await _poll(lambda: store.query(status="closed"), what="the closed play")
    assert store.count() == 1  # the close replaced the open row
    assert closed[0].id == open_row.id and closed[0].key == open_row.key == sent["key"]
    assert closed[0].end_s == sent["end_s"] > open_row.end_s
    (source,) = await _poll(lambda: [r for r in store.sources() if r["windows_answered"] == stopped["windows"]],
                            what="the source's final counts")
    assert (source["name"], source["kind"], source["streams"], source["windows_dropped"]) == ("studio", "ws", 1, 0)
    body = await (await client.get("/api/plays?status=closed")).json()
    assert [p["status"] for p in body["plays"]] == ["closed"] and body["plays"][0]["source_kind"] == "ws"
    listed = await (await client.get("/api/plays/sources")).json()
    assert listed["count"] == 1 and listed["sources"][0]["windows_answered"] == stopped["windows"]


@pytest.mark.asyncio
async def test_windows_a_live_stream_loses_are_counted_in_its_source(make_client, recognizer, settings):
    client = await make_client(recognizer_=SlowRecognizer(recognizer), max_pending_per_stream=2, max_batch=2)
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=RATE, realtime=True, source="phone")
        messages = await stream_pcm(ws, s16le(pattern("pulses", 10, RATE)), frame_bytes=32000)
    stopped = messages[-1]
    assert stopped["dropped"] > 0
    (row,) = await _poll(lambda: [r for r in store.sources()
                                  if r["windows_answered"] + r["windows_dropped"] == 16], what="the final counts")
    assert (row["windows_answered"], row["windows_dropped"]) == (stopped["windows"], stopped["dropped"])


@pytest.mark.asyncio
async def test_app_start_recovers_plays_left_open(make_client, settings):
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    store.add(Play(track="chord", source="radio", start_s=4.0, end_s=19.5, confidence=0.8, peak_score=2.0,
                   windows=30, started_at="2024-05-01T10:00:04.000Z", ended_at="2024-05-01T10:00:19.500Z",
                   key="left-open", open=True), PlayOrigin("monitor", monitor_id="m1", verified=True))
    client = await make_client()
    body = await (await client.get("/api/plays")).json()
    (p,) = body["plays"]
    assert (p["key"], p["status"], p["open"], p["end_s"], p["monitor_id"]) == ("left-open", "recovered", False,
                                                                              19.5, "m1")
    totals = await (await client.get("/api/plays/totals?by=source")).json()
    assert totals["totals"] == [{"source": "radio", "plays": 1, "seconds": 15.5, "first_at": "2024-05-01T10:00:04.000Z",
                                 "last_at": "2024-05-01T10:00:19.500Z"}]
    assert (await client.get("/api/plays/totals?by=album")).status == 400
    page = await (await client.get("/plays")).text()
    assert "<th>Status</th>" in page


# --- a real crash ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``server.py`` as a child process on a free port, its log in the state folder."""

    def __init__(self, db: Path, state: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / f"server-{self.port}.log"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py"), "--db", str(db), "--state-dir", str(state),
                 "--host", "127.0.0.1", "--port", str(self.port), "--admin-token", "crash-test-token-0123456789"],
                stdout=subprocess.DEVNULL, stderr=log_file, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited: {self.log_path.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    if json.load(resp).get("ok"):
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the server did not start within {timeout} s")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _read_all(ws, into: list) -> None:
    """Every text message of ``ws`` (parsed) into ``into``, until it closes."""
    async for msg in ws:
        if msg.type.name == "TEXT":
            into.append(json.loads(msg.data))


@pytest.mark.asyncio
async def test_kill_9_during_a_play_then_restart_finds_it_recovered(tiny_db, tmp_path):
    import aiohttp

    state = tmp_path / "state"
    store_path = state / PLAYS_FILE
    server = _Server(tiny_db, state)
    try:
        await asyncio.get_running_loop().run_in_executor(None, server.wait_ready)
        pcm = s16le(pattern("chord", 60, RATE))
        sent_s, received = 0.0, []
        async with aiohttp.ClientSession() as http, http.ws_connect(server.base.replace("http", "ws") + "/ws") as ws:
            await start_stream(ws, sample_rate=RATE, realtime=False, source="crash test")
            reader = asyncio.create_task(_read_all(ws, received))  # a client reads its results
            found = []
            for i in range(0, len(pcm), RATE):  # one second per message, a little faster than real time
                assert not ws.closed, f"the server closed the stream: {received[-3:]}\n{server.log_tail()}"
                await ws.send_bytes(pcm[i:i + RATE])
                sent_s += len(pcm[i:i + RATE]) / (2 * RATE)  # s16le: 2 bytes a sample
                await asyncio.sleep(0.3)
                found = PlaysLog(store_path).query(status="open") if store_path.exists() else []
                if found:
                    break
            assert found, f"no open play in the store after {sent_s} s of audio\n{server.log_tail()}"
            os.kill(server.proc.pid, signal.SIGKILL)  # no shutdown, no flush: the process is gone
            server.proc.wait(10)
            await asyncio.wait_for(reader, 10)
        (open_row,) = found
        server = _Server(tiny_db, state)
        await asyncio.get_running_loop().run_in_executor(None, server.wait_ready)
        async with aiohttp.ClientSession() as http, http.get(server.base + "/api/plays?status=recovered") as resp:
            plays = (await resp.json())["plays"]
        (p,) = plays
        assert (p["key"], p["track"], p["source"], p["status"]) == (open_row.key, "chord", "crash test", "recovered")
        # Its end is where its last update left it: after its start, within the audio sent.
        assert 0.0 <= p["start_s"] < p["end_s"] <= sent_s
        assert p["end_s"] >= open_row.end_s and p["windows"] >= open_row.windows
        assert "1 play(s) recovered" in server.log_path.read_text()
    finally:
        server.stop()


# --- checkpoints of open plays ------------------------------------------------------


def test_open_plays_are_checkpointed_on_opening_then_every_few_seconds():
    audio = AudioParams()
    decision = StreamDecision("radio", window_s=audio.window_seconds, wall_start=0.0, threshold=1.5)
    pipe = StreamPipeline(start=StartRequest(audio.sample_rate, "s16le", 1, "radio", False), audio=audio,
                          decision=decision)
    assert pipe.checkpoint() == []  # nothing decided yet
    written = []  # (stream time, keys) of every checkpoint
    for i in range(80):  # 40 s of one track, on its offset line
        t = 0.5 * i
        det = Detection("t", 2.0, t, (Candidate("t", 2.0, 10.0 + t),), track_offset_s=10.0 + t)
        pipe.answer(CutWindow(t, np.zeros(audio.window_samples, np.float32), time.monotonic()), det, [], [])
        plays = pipe.checkpoint()
        if plays:
            written.append((t, {p.key for p in plays}))
            assert all(p.open and p.track == "t" for p in plays)
    assert written, "the open play was never checkpointed"
    assert written[0][0] <= 2.0  # written as soon as it opened
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(written)]
    assert gaps and all(abs(g - CHECKPOINT_S) < 0.51 for g in gaps)  # then once per CHECKPOINT_S of stream time
    assert len({k for _, keys in written for k in keys}) == 1  # one play, one key
    pipe.close([], [], emit=False)
    assert pipe.checkpoint() == []  # a closed stream has nothing open


# --- where a play came from ---------------------------------------------------------


def test_origin_of_a_session():
    start = StartRequest(16000, "s16le", 1, "radio one", True)
    assert origin_of("monitor-0a1b2c", start) == PlayOrigin("monitor", monitor_id="0a1b2c", verified=True)
    assert origin_of("3f9e0c1d2a4b", start) == PlayOrigin("ws", verified=False)  # a client's claim proves nothing

    proven = StartRequest(16000, "s16le", 1, "radio one", True, source_verified=True)  # set by a valid stream token
    assert origin_of("3f9e0c1d2a4b", proven).verified is True


@pytest.mark.asyncio
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
async def test_monitor_plays_keep_the_monitor_id(make_client, aiohttp_server, settings):
    url = await pulses_radio(aiohttp_server)
    client = await make_client(allow_private_monitors=True, max_monitors=1)
    resp = await client.post("/api/monitors", headers=auth_headers(), json={
        "url": url, "name": "radio one"})
    assert resp.status == 201, await resp.text()
    monitor = (await resp.json())["monitor"]
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    (play,) = await _poll(lambda: store.query(status="closed"), timeout=30, what="the monitor's play")
    assert (play.source, play.source_kind, play.monitor_id, play.source_verified) == \
        ("radio one", "monitor", monitor["id"], True)
    (row,) = await _poll(lambda: [r for r in store.sources() if r["windows_answered"] >= 12], what="its counts")
    assert (row["name"], row["kind"], row["monitor_id"], row["windows_dropped"]) == ("radio one", "monitor",
                                                                                    monitor["id"], 0)
