"""Shared fixtures and helpers for the web tests (this module holds no tests).

The web test modules import what they need from here by name. Every app
gets the session's tiny trained catalogue (``tiny_db`` from conftest), a
fresh state folder, a known admin token and small limits, so the malformed-
input cases are cheap to provoke.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest

from audiocopy.config import ServerSettings
from audiocopy.decision.recognizer import Recognizer
from audiocopy.web.auth import AdminAuth

TOKEN = "test-admin-token-0123456789"
CLIENT_RATE = 44100


@pytest.fixture(scope="session")
def recognizer(tiny_db) -> Recognizer:
    """The tiny catalogue, loaded once for all web tests that do not change it."""
    return Recognizer.open(tiny_db)


@pytest.fixture
def settings(tiny_db, tmp_path) -> ServerSettings:
    return ServerSettings(db=tiny_db, state_dir=tmp_path / "state", max_message_bytes=64 * 1024,
                          max_upload_bytes=2 * 1024 * 1024, max_streams=4, batch_linger_ms=1.0)


@pytest.fixture
def make_client(aiohttp_client, settings, recognizer):
    """``await make_client(**overrides)`` -> a test client of an app with those settings."""
    from audiocopy.web.app import create_app

    async def make(recognizer_=None, monitor_resolver=None, **overrides):
        app = create_app(replace(settings, **overrides), recognizer=recognizer_ or recognizer,
                         auth=AdminAuth.from_token(TOKEN), monitor_resolver=monitor_resolver)
        return await aiohttp_client(app)

    return make


def auth_headers(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def s16le(signal: np.ndarray) -> bytes:
    """Float samples (n,) or (n, channels) -> interleaved s16le bytes."""
    return (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()


async def receive_json(ws, timeout: float = 10.0) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type.name == "TEXT", f"expected a text message, got {msg.type.name} {msg.data!r}"
    return json.loads(msg.data)


async def start_stream(ws, *, sample_rate: int = CLIENT_RATE, fmt: str = "s16le", channels: int = 1,
                       realtime: bool = False, source: str = "test") -> dict:
    await ws.send_json({"type": "start", "sample_rate": sample_rate, "format": fmt, "channels": channels,
                        "source": source, "realtime": realtime})
    ready = await receive_json(ws)
    assert ready["type"] == "ready", ready
    return ready


async def stream_pcm(ws, pcm: bytes, *, frame_bytes: int = 8820) -> list[dict]:
    """Send PCM in frames, then ``stop``; return every message up to ``stopped``."""
    for i in range(0, len(pcm), frame_bytes):
        await ws.send_bytes(pcm[i:i + frame_bytes])
    await ws.send_json({"type": "stop"})
    messages = []
    while True:
        msg = await receive_json(ws, timeout=30.0)
        messages.append(msg)
        if msg["type"] == "stopped":
            return messages


def windows_of(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "window"]


class SlowRecognizer:
    """A recognizer ``delay_s`` slower per call, so compute falls behind a fast sender (overload tests)."""

    def __init__(self, inner, delay_s: float = 0.3):
        self.inner = inner
        self.delay_s = delay_s

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def detect_windows(self, windows, starts_s=None, streams=None):
        import time

        time.sleep(self.delay_s)
        return self.inner.detect_windows(windows, starts_s, streams)


async def pulses_radio(aiohttp_server) -> str:
    """A local HTTP "radio" that serves 8 s of the catalogue's "pulses" as a WAV; returns its URL."""
    import io

    import soundfile as sf
    from aiohttp import web
    from synth import pattern

    buf = io.BytesIO()
    sf.write(buf, pattern("pulses", 8, 22050), 22050, format="WAV", subtype="PCM_16")

    async def track(request):
        return web.Response(body=buf.getvalue(), content_type="audio/wav")

    radio = web.Application()
    radio.router.add_get("/pulses.wav", track)
    server = await aiohttp_server(radio)
    return f"http://127.0.0.1:{server.port}/pulses.wav"


def loses_the_first_cancel(calls: list, lost_as: str):
    """An async method ``(self, item)`` that waits forever and loses the first cancel it gets.

    Each call appends ``item`` to ``calls``. lost_as: "timeout" raises
    ``TimeoutError`` instead (what aiohttp's connect timeout can make of a
    cancel, aio-libs/aiohttp#5979), "nothing" swallows it as if the work had
    ended. Later cancels end it.
    """
    async def method(self, item):
        calls.append(item)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if len(calls) > 1:
                raise
            if lost_as == "timeout":
                raise TimeoutError("timed out") from None
            asyncio.current_task().uncancel()

    return method
