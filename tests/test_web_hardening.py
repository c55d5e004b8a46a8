"""Attacks on the server's front door: idle sockets, upload bombs, forged Host and Origin.

Each test here is an attack that worked before the server was hardened
(it fails on that code) and is refused or absorbed now:

* idle WebSockets used to take a stream slot at the handshake, so a few
  sockets that never sent anything locked every real stream out;
* a small FLAC declaring hours of audio was decoded and resampled whole
  before it was cut to ``max_identify_seconds`` (gigabytes of memory);
* a DNS-rebinding page (``Host: evil.example`` with a matching Origin)
  passed the Origin check, and ``/api/identify`` checked no Origin at all.
"""
from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import threading
import time

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp import FormData, WSMsgType
from synth import pattern
from test_web_fixtures import (  # noqa: F401
    TOKEN,
    SlowRecognizer,
    auth_headers,
    make_client,
    receive_json,
    recognizer,
    s16le,
    settings,
    start_stream,
    stream_pcm,
    windows_of,
)

from audiocopy.config import AudioParams
from audiocopy.errors import BadAudio
from audiocopy.signal.audio import load_audio, load_audio_head
from audiocopy.web import api
from audiocopy.web.keys import IDENTIFY_SLOTS
from audiocopy.web.security import host_allowed, origin_allowed


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, signal, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def upload_form(data: bytes, filename: str) -> FormData:
    form = FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return form


async def status_of(client) -> dict:
    return await (await client.get("/api/status")).json()


async def wait_for_status(client, key: str, value, timeout_s: float = 10.0) -> dict:
    """Poll /api/status until ``key`` equals ``value`` (handlers finish a moment after a close)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await status_of(client)
        if status[key] == value or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


async def expect_fatal(ws, code: str, close_code: int, timeout: float = 10.0) -> dict:
    """The next message is a fatal ``code`` error, then the server closes with ``close_code``."""
    msg = await receive_json(ws, timeout=timeout)
    assert msg["type"] == "error" and msg["code"] == code and msg["fatal"] is True, msg
    closing = await ws.receive(timeout=5)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), closing
    assert ws.close_code == close_code
    return msg


# --- 1. stream slots -----------------------------------------------------------------

@pytest.mark.asyncio
async def test_idle_sockets_leave_real_streams_unaffected(make_client):
    """100 sockets that never send ``start`` hold no slot; a real stream is served beside them."""
    client = await make_client(max_streams=2, start_timeout_s=60.0, max_connections_per_address=200)
    url = client.make_url("/ws")
    # A session of its own: the test client's connector stops at 100 connections.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as attacker:
        idle = [await attacker.ws_connect(url, autoping=True) for _ in range(100)]
        status = await status_of(client)
        assert status["connections"] == 100 and status["streams"] == 0
        async with client.ws_connect("/ws") as ws:
            await start_stream(ws, sample_rate=16000)
            messages = await stream_pcm(ws, s16le(pattern("chord", 3, 16000)))
        assert [w["match"] for w in windows_of(messages)] == ["chord", "chord"]
        assert all(not s.closed for s in idle)  # still open: they were not what made room
        for s in idle:
            await s.close()
    status = await wait_for_status(client, "connections", 0)
    assert status["connections"] == 0 and status["streams"] == 0


@pytest.mark.asyncio
async def test_socket_without_start_is_closed_after_the_start_timeout(make_client):
    client = await make_client(start_timeout_s=0.5)
    t0 = time.monotonic()
    async with client.ws_connect("/ws") as ws:
        # Junk before start is answered but does not buy time.
        for _ in range(3):
            await ws.send_str("{not json")
            assert (await receive_json(ws))["code"] == "bad_json"
            await asyncio.sleep(0.1)
        err = await expect_fatal(ws, "start_timeout", 1008)
    assert "0.5 s" in err["message"] and 0.45 <= time.monotonic() - t0 < 5
    assert (await wait_for_status(client, "connections", 0))["connections"] == 0


@pytest.mark.asyncio
async def test_started_stream_without_audio_is_closed_after_the_idle_timeout(make_client):
    client = await make_client(start_timeout_s=0.3, idle_timeout_s=0.8)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000)
        for _ in range(4):  # audio keeps it alive well past the start timeout and one idle timeout
            await ws.send_bytes(s16le(np.zeros(1600)))
            await asyncio.sleep(0.3)
        assert (await status_of(client))["streams"] == 1
        err = await expect_fatal(ws, "idle_timeout", 1008)
    assert "0.8 s" in err["message"]
    status = await wait_for_status(client, "streams", 0)
    assert status["streams"] == 0 and status["connections"] == 0


@pytest.mark.asyncio
async def test_batch_stream_waiting_for_compute_is_not_idle(make_client, recognizer):
    """Time the *server* is slow (back-pressure, ``stop`` waiting for results) never counts as idle."""

    client = await make_client(recognizer_=SlowRecognizer(recognizer, 0.4), idle_timeout_s=0.3, max_batch=2,
                               max_pending_per_stream=2)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000, realtime=False)
        messages = await stream_pcm(ws, s16le(pattern("pulses", 6, 16000)), frame_bytes=32000)
    assert not [m for m in messages if m["type"] == "error"]
    assert messages[-1]["type"] == "stopped" and messages[-1]["windows"] == 8 and messages[-1]["dropped"] == 0


@pytest.mark.asyncio
async def test_connections_per_address_are_capped(make_client):
    client = await make_client(max_connections_per_address=2, start_timeout_s=60.0)
    first = await client.ws_connect("/ws")
    second = await client.ws_connect("/ws")
    async with client.ws_connect("/ws") as third:
        err = await expect_fatal(third, "too_many_connections", 1013)
        assert "2 connections" in err["message"]
    await first.close()
    await wait_for_status(client, "connections", 1)
    async with client.ws_connect("/ws") as again:  # a closed one frees its place
        await start_stream(again)
    await second.close()


@pytest.mark.asyncio
async def test_slot_is_taken_by_start_and_freed_by_close(make_client):
    client = await make_client(max_streams=1)
    async with client.ws_connect("/ws") as waiting, client.ws_connect("/ws") as first:
        await start_stream(first)
        await waiting.send_json({"type": "start", "sample_rate": 16000})
        await expect_fatal(waiting, "too_many_streams", 1013)
    await wait_for_status(client, "streams", 0)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws)


# --- 2. uploads ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def flac_bomb(tmp_path_factory) -> bytes:
    """Three hours of 8 kHz silence as FLAC, written ten minutes at a time (~270 kB)."""
    path = tmp_path_factory.mktemp("bomb") / "silence.flac"
    block = np.zeros(8000 * 600, dtype=np.int16)
    with sf.SoundFile(str(path), "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(18):
            f.write(block)
    return path.read_bytes()


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


class PeakRss:
    """The largest resident set size of this process while in the block, in MB above the start.

    The kernel's high-water mark (VmHWM) is reset at the start where Linux
    allows it (``/proc/self/clear_refs``); a thread sampling VmRSS every 2 ms
    covers the rest. The server under test runs in this process.
    """

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
        self.start_kb = _status_kb("VmRSS")
        self._peak_kb = self.start_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self._peak_kb = max(self._peak_kb, _status_kb("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._hwm:
            self._peak_kb = max(self._peak_kb, _status_kb("VmHWM"))
        self.rise_mb = (self._peak_kb - self.start_kb) / 1024


@pytest.mark.asyncio
async def test_flac_bomb_is_decoded_only_as_far_as_analysed(make_client, flac_bomb):
    assert len(flac_bomb) < 1024 * 1024
    client = await make_client(max_identify_seconds=30.0)
    await status_of(client)  # warm the app before measuring
    with PeakRss() as rss:
        resp = await client.post("/api/identify", data=upload_form(flac_bomb, "silence.flac"))
        data = await resp.json()
    assert resp.status == 200, data
    # Decoding all three hours took 1.3 GB; thirty seconds take a few MB.
    assert rss.rise_mb <= 300, f"RSS rose by {rss.rise_mb:.0f} MB"
    assert data["file"]["seconds"] == 10800.0 and data["file"]["truncated"] is True
    assert data["file"]["analysed_s"] == 30.0 and len(data["windows"]) == 56
    assert data["match"] is None and data["plays"] == []


@pytest.mark.asyncio
async def test_catalog_upload_declaring_hours_is_refused_before_decoding(make_client, flac_bomb, tiny_corpus,
                                                                         settings):
    client = await make_client(negatives_dir=tiny_corpus / "wrong")
    form = upload_form(flac_bomb, "long.flac")
    form.add_field("name", "long")
    resp = await client.post("/api/catalog/tracks", data=form, headers=auth_headers())
    body = await resp.json()
    assert resp.status == 413 and body["error"]["code"] == "too_long" and "180 minutes" in body["error"]["message"]
    assert (await (await client.get("/api/jobs")).json())["jobs"] == []
    assert list((settings.state_path / "uploads").glob("*")) == []


def test_head_decoding_matches_the_full_decode(tmp_path):
    """The head of a file is exactly the start of ``load_audio``'s signal; header length and truncation are told."""
    rate = 44100
    stereo = np.stack([pattern("chirps", 20, rate), pattern("pulses", 20, rate)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate, subtype="PCM_16")
    full = load_audio(path)
    head = load_audio_head(path, max_seconds=5.0)
    assert head.declared_s == 20.0 and head.truncated is True
    np.testing.assert_array_equal(head.samples, full[: 5 * 16000])
    whole = load_audio_head(path, max_seconds=60.0)
    assert whole.truncated is False and whole.samples.size == full.size
    np.testing.assert_array_equal(whole.samples, full)
    exact = load_audio_head(path, max_seconds=20.0)  # cut exactly at the end: nothing follows
    assert exact.truncated is False and exact.samples.size == 20 * 16000
    params = AudioParams(sample_rate=22050)
    np.testing.assert_array_equal(load_audio_head(path, params=params, max_seconds=3.0).samples,
                                  load_audio(path, params=params)[: 3 * 22050])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_head_decoding_through_ffmpeg_stops_early(tmp_path):
    path = tmp_path / "long.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=22050:duration=40", "-c:a", "aac", str(path)], check=True)
    head = load_audio_head(path, max_seconds=4.0)
    assert head.truncated is True and 39.9 < head.declared_s < 40.2
    assert head.samples.size == 4 * 16000
    # The whole-file decode (pydub, 16-bit) agrees to within its quantisation.
    np.testing.assert_allclose(head.samples, load_audio(path)[: 4 * 16000], atol=2e-4)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_upload_that_is_a_playlist_is_not_followed(tmp_path):
    """An "audio" file that is really an HLS playlist must not make ffmpeg fetch its URLs."""
    path = tmp_path / "song.m4a"
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(BadAudio):
        load_audio_head(path, max_seconds=10.0)


@pytest.mark.asyncio
async def test_identify_jobs_are_bounded_and_the_rest_get_503(make_client, monkeypatch):
    monkeypatch.setattr(api, "IDENTIFY_WAIT_S", 0.2)
    client = await make_client(max_identify_jobs=1)
    good = wav_bytes(pattern("chord", 2.5, 8000), 8000)
    slots = client.server.app[IDENTIFY_SLOTS]
    await slots.acquire()  # one job running
    try:
        resp = await client.post("/api/identify", data=upload_form(good, "a.wav"))
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "busy" and resp.headers["Retry-After"]
        assert "1 uploads" in body["error"]["message"]
    finally:
        slots.release()
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"))
    assert resp.status == 200 and (await resp.json())["match"] == "chord"


@pytest.mark.asyncio
async def test_identify_checks_origin_and_optional_token(make_client):
    good = wav_bytes(pattern("chord", 2.5, 8000), 8000)
    client = await make_client()
    host = f"{client.server.host}:{client.server.port}"
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"), headers={"Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden_origin"
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"), headers={"Origin": f"http://{host}"})
    assert resp.status == 200

    client = await make_client(identify_token="identify-token-0123456789")
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_required"
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"), headers=auth_headers("wrong-" * 4))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "bad_token"
    for token in ("identify-token-0123456789", TOKEN):  # its own token, or the admin token
        resp = await client.post("/api/identify", data=upload_form(good, "a.wav"), headers=auth_headers(token))
        assert resp.status == 200, await resp.text()


# --- 4. Host and Origin --------------------------------------------------------------

@pytest.mark.asyncio
async def test_forged_host_gets_421(make_client):
    client = await make_client()
    port = client.server.port
    for path in ("/", "/api/status", "/api/plays", "/static/js/api.js"):
        resp = await client.get(path, headers={"Host": "evil.example"})
        assert resp.status == 421, path
        body = await resp.json()
        assert body["error"]["code"] == "misdirected_host" and "evil.example" in body["error"]["message"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", f"[::1]:{port}", "localhost"):
        assert (await client.get("/api/status", headers={"Host": host})).status == 200, host
    resp = await client.get("/api/status", headers={"Host": f"evil.example:{port}"})
    assert resp.status == 421


@pytest.mark.asyncio
async def test_dns_rebinding_is_refused_on_ws_and_identify(make_client):
    """A rebinding page reaches the server as evil.example: Host and Origin agree, and both are refused."""
    client = await make_client()
    port = client.server.port
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers=rebound)
    assert info.value.status == 421
    good = wav_bytes(pattern("chord", 2.5, 8000), 8000)
    resp = await client.post("/api/identify", data=upload_form(good, "a.wav"), headers=rebound)
    assert resp.status == 421
    resp = await client.delete("/api/monitors/abc", headers={**rebound, **auth_headers()})
    assert resp.status == 421
    assert (await status_of(client))["streams"] == 0


@pytest.mark.asyncio
async def test_allowed_hosts_setting(make_client):
    client = await make_client(allowed_hosts=("audio.example.org",))
    port = client.server.port
    assert (await client.get("/api/status", headers={"Host": f"audio.example.org:{port}"})).status == 200
    assert (await client.get("/api/status", headers={"Host": f"127.0.0.1:{port}"})).status == 421
    origin = {"Host": f"audio.example.org:{port}", "Origin": f"http://audio.example.org:{port}"}
    async with client.ws_connect("/ws", headers=origin) as ws:
        await start_stream(ws)
    client = await make_client(allowed_hosts=("*",))
    assert (await client.get("/api/status", headers={"Host": "anything.example"})).status == 200


def test_origin_is_compared_with_the_allowed_hosts():
    loopback = ("localhost", "127.0.0.1", "[::1]")
    # Same origin as the request, but the name is not this server's: a rebinding page.
    assert not origin_allowed("http://evil.example:8080", "evil.example:8080", (), loopback)
    assert origin_allowed("http://localhost:8080", "localhost:8080", (), loopback)
    assert not origin_allowed("http://localhost:9999", "localhost:8080", (), loopback)  # another site on the host
    assert origin_allowed("https://app.example", "localhost:8080", ("https://app.example",), loopback)
    assert origin_allowed(None, "evil.example", (), loopback)  # no browser, no Origin
    assert host_allowed("example.org", ("example.org:80",)) and not host_allowed("example.org:81", ("example.org:80",))
    assert not host_allowed("", loopback) and not host_allowed("a b", ("*x",)) and host_allowed("x", ("*",))
    assert not host_allowed("localhost@evil.example", loopback) and not host_allowed("::1", loopback)
