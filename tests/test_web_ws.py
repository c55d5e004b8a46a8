"""The /ws streaming protocol end to end on the tiny catalogue (aiohttp_client).

A catalogue track streamed at 44.1 kHz is matched in the windows that hold
it, with stream times that account for resampling; a non-catalogue signal
gets explicit nulls; a play is logged; and every kind of malformed input is
answered by an ``error`` message while the server keeps serving.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp import WSMsgType
from synth import melody, pattern
from test_web_fixtures import (  # noqa: F401
    CLIENT_RATE,
    SlowRecognizer,
    make_client,
    receive_json,
    recognizer,
    s16le,
    settings,
    start_stream,
    stream_pcm,
    windows_of,
)

pytestmark = pytest.mark.asyncio


async def test_catalog_track_matches_at_the_right_stream_time(make_client):
    client = await make_client()
    silence = np.zeros(3 * CLIENT_RATE, dtype=np.float32)
    signal = np.concatenate([silence, pattern("pulses", 6, CLIENT_RATE)])  # pulses from 3.0 s to 9.0 s
    async with client.ws_connect("/ws") as ws:
        ready = await start_stream(ws)
        assert ready["tracks"] == 3 and ready["window_s"] == 2.5 and ready["hop_s"] == 0.5
        messages = await stream_pcm(ws, s16le(signal))
    windows = windows_of(messages)
    # 9 s of audio: windows start every 0.5 s from 0.0 to 6.5 s, in order, none dropped.
    assert [w["start_s"] for w in windows] == [0.5 * i for i in range(14)]
    assert [w["seq"] for w in windows] == list(range(14))
    assert all(w["end_s"] == w["start_s"] + 2.5 for w in windows)
    by_start = {w["start_s"]: w for w in windows}
    assert by_start[0.0]["match"] is None and by_start[0.5]["match"] is None  # pure silence
    assert all(by_start[s]["match"] == "pulses" for s in np.arange(3.0, 7.0, 0.5))
    assert all(w["score"] > 0 for w in windows if w["match"])
    assert all(w["candidates"][0]["track"] == "pulses" for w in windows[6:])
    plays = [m for m in messages if m["type"] == "play"]
    assert len(plays) == 1 and plays[0]["track"] == "pulses" and plays[0]["source"] == "test"
    assert 1.0 <= plays[0]["start_s"] <= 3.0 and plays[0]["end_s"] == 9.0
    stopped = messages[-1]
    assert stopped == {"type": "stopped", "windows": 14, "dropped": 0, "plays": 1, "seconds": 9.0}
    # The play is in the log once it closed.
    for _ in range(100):  # written off the event loop: allow it up to 10 s on a loaded machine
        logged = (await (await client.get("/api/plays")).json())["plays"]
        if logged:
            break
        await asyncio.sleep(0.1)
    assert [(p["track"], p["source"]) for p in logged] == [("pulses", "test")]


async def test_non_catalog_audio_gets_explicit_nulls(make_client):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000, fmt="f32le")
        # A melody the catalogue was not trained on (the tiny models never saw
        # broadband noise, so noise is not a fair "unknown music" probe for them).
        messages = await stream_pcm(ws, melody(200, 5, 16000).astype("<f4").tobytes(), frame_bytes=6400)
    windows = windows_of(messages)
    assert len(windows) == 6
    assert all("match" in w and w["match"] is None and w["score"] <= 0 for w in windows)
    assert not [m for m in messages if m["type"] == "play"]


async def test_stereo_frames_are_downmixed(make_client):
    client = await make_client()
    mono = pattern("chord", 4, 22050)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=22050, channels=2)
        messages = await stream_pcm(ws, s16le(np.stack([mono, mono], axis=1)), frame_bytes=4 * 2205)
    assert {w["match"] for w in windows_of(messages)} == {"chord"}


async def test_live_stream_behind_compute_drops_oldest_and_says_so(make_client, recognizer):
    client = await make_client(recognizer_=SlowRecognizer(recognizer), max_pending_per_stream=2, max_batch=2)
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000, realtime=True)
        messages = await stream_pcm(ws, s16le(pattern("pulses", 10, 16000)), frame_bytes=32000)
    dropped = [m for m in messages if m["type"] == "dropped"]
    windows = windows_of(messages)
    assert dropped and sum(m["windows"] for m in dropped) == messages[-1]["dropped"] > 0
    assert len(windows) + messages[-1]["dropped"] == 16  # every window answered or reported dropped
    starts = [w["start_s"] for w in windows]
    assert starts == sorted(starts) and starts[-1] == 7.5  # the newest audio is never the one dropped
    assert all(s not in starts for m in dropped for s in m["start_s"])


# --- malformed input: an error message, and the server goes on ------------------

async def _still_serving(client):
    """A fresh connection starts a stream: the server survived."""
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws)


async def _expect_error(ws, code: str) -> dict:
    msg = await receive_json(ws)
    assert msg["type"] == "error" and msg["code"] == code, msg
    assert msg["message"]
    return msg


async def test_binary_before_start_then_recovers(make_client):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await ws.send_bytes(b"\x00\x00" * 100)
        err = await _expect_error(ws, "not_started")
        assert err["fatal"] is False
        await start_stream(ws)  # same connection still works


@pytest.mark.parametrize("text, code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ('{"no_type": 1}', "bad_message"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "stop"}', "not_started"),
    ('{"type": "start", "sample_rate": 0}', "unsupported_sample_rate"),
    ('{"type": "start", "sample_rate": 1000}', "unsupported_sample_rate"),
    ('{"type": "start", "sample_rate": "48000"}', "unsupported_sample_rate"),
    ('{"type": "start", "sample_rate": 10000000}', "unsupported_sample_rate"),
    ('{"type": "start", "sample_rate": 48000, "format": "mp3"}', "unsupported_format"),
    ('{"type": "start", "sample_rate": 48000, "format": "s24le"}', "unsupported_format"),
    ('{"type": "start", "sample_rate": 48000, "channels": 6}', "unsupported_channels"),
    ('{"type": "start", "sample_rate": 48000, "source": ""}', "bad_start"),
    ('{"type": "start", "sample_rate": 48000, "realtime": "yes"}', "bad_start"),
])
async def test_bad_text_frames_answered_with_error(make_client, text, code):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await ws.send_str(text)
        await _expect_error(ws, code)
        await start_stream(ws)


async def test_start_twice_is_an_error(make_client):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws)
        await ws.send_json({"type": "start", "sample_rate": 16000})
        await _expect_error(ws, "already_started")


async def test_odd_byte_count_rejected_without_losing_the_stream(make_client):
    client = await make_client()
    signal = s16le(pattern("pulses", 3, 16000))
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000)
        await ws.send_bytes(b"\x01\x02\x03")  # 1.5 samples of s16le
        await _expect_error(ws, "bad_frame")
        messages = await stream_pcm(ws, signal)
    assert [w["start_s"] for w in windows_of(messages)] == [0.0, 0.5]
    assert messages[-1]["seconds"] == 3.0  # the bad frame added no samples


async def test_f32_frames_must_be_multiples_of_4_bytes(make_client):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=48000, fmt="f32le")
        await ws.send_bytes(b"\x00" * 6)
        await _expect_error(ws, "bad_frame")


async def test_oversize_message_answered_and_connection_kept(make_client, settings):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000)
        await ws.send_bytes(b"\x00" * (settings.max_message_bytes + 2))
        err = await _expect_error(ws, "message_too_large")
        assert str(settings.max_message_bytes) in err["message"]
        await ws.send_str('{"type": "start", "sample_rate": 16000, "pad": "' + "x" * settings.max_message_bytes + '"}')
        await _expect_error(ws, "message_too_large")
        messages = await stream_pcm(ws, s16le(pattern("chirps", 3, 16000)))
    assert windows_of(messages)[0]["match"] == "chirps"


async def test_message_beyond_hard_limit_closes_only_that_connection(make_client, settings):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000)
        await ws.send_bytes(b"\x00" * (5 * settings.max_message_bytes))
        msg = await ws.receive(timeout=10)
        while msg.type == WSMsgType.TEXT:
            msg = await ws.receive(timeout=10)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        assert ws.close_code == 1009
    await _still_serving(client)


async def test_wrong_origin_refused_with_error(make_client):
    client = await make_client()
    async with client.ws_connect("/ws", headers={"Origin": "https://evil.example"}) as ws:
        err = await _expect_error(ws, "forbidden_origin")
        assert err["fatal"] is True
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == 1008
    host = f"{client.server.host}:{client.server.port}"
    async with client.ws_connect("/ws", headers={"Origin": f"http://{host}"}) as ws:  # same origin is fine
        await start_stream(ws)
    await _still_serving(client)


async def test_allowed_origin_setting(make_client):
    client = await make_client(allowed_origins=("https://app.example",))
    async with client.ws_connect("/ws", headers={"Origin": "https://app.example"}) as ws:
        await start_stream(ws)


async def test_too_many_streams(make_client):
    client = await make_client(max_streams=1)
    async with client.ws_connect("/ws") as first:
        await start_stream(first)
        async with client.ws_connect("/ws") as second:  # the slot is taken by a valid start, not the handshake
            await second.send_json({"type": "start", "sample_rate": 16000})
            err = await _expect_error(second, "too_many_streams")
            assert err["fatal"] is True
            await second.receive(timeout=5)
            assert second.close_code == 1013
        status = await (await client.get("/api/status")).json()
        assert status["streams"] == 1
    for _ in range(100):  # the slot is freed when the first stream's handler returns
        if (await (await client.get("/api/status")).json())["streams"] == 0:
            break
        await asyncio.sleep(0.1)
    await _still_serving(client)


async def test_client_disconnect_logs_open_play(make_client):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=16000)
        pcm = s16le(pattern("chord", 5, 16000))
        for i in range(0, len(pcm), 32000):
            await ws.send_bytes(pcm[i:i + 32000])
        for _ in range(6):
            msg = await receive_json(ws)
            if msg["type"] == "window" and msg["start_s"] == 2.5:
                break
    for _ in range(100):  # closed without "stop": the open play is still logged
        plays = (await (await client.get("/api/plays?track=chord")).json())["plays"]
        if plays:
            break
        await asyncio.sleep(0.1)
    assert plays and plays[0]["track"] == "chord" and plays[0]["start_s"] == 0.0
