#!/usr/bin/env python3
"""Stream a file, a URL or the microphone to an audiocopy server and print the matches.

Usage::

    python tools/stream.py song.mp3                         # real time, like a live source
    python tools/stream.py song.mp3 --no-pacing             # as fast as the server can analyse
    python tools/stream.py https://radio.example/live.mp3   # decoded by ffmpeg
    python tools/stream.py mic                              # needs `pip install sounddevice`
    python tools/stream.py song.wav --server ws://host:8080/ws --json
    AUDIOCOPY_SOURCE_TOKEN=... python tools/stream.py mic   # plays logged under the token's source, verified

Place in the pipeline: an operator's client of the ``/ws`` protocol
(docs/protocol.md), the same one the Live page speaks. Audio is sent as
16 kHz mono s16le in 100 ms frames. Files are decoded with
``audiocopy.signal.audio.load_audio``; URLs are decoded by an ffmpeg child process.

Pacing: by default frames leave at the rate a live source would produce
them, so the server treats the stream as live (it drops old windows when it
falls behind). ``--no-pacing`` sends as fast as possible and marks the
stream ``"realtime": false``, so the server slows the sender down instead
and every window is answered.

Source: plays are logged under ``--name`` (default: the file name), marked
unverified, unless a stream token is given: ``--source-token`` or, better
(a command line is visible to other users of the machine), the environment
variable ``AUDIOCOPY_SOURCE_TOKEN``. The server then logs the plays under
the source the token was issued for, verified, whatever ``--name`` says.
A name that has a token, or is a URL monitor's, is refused without it.

Output: one line per window with a match (all windows with ``--all``), one
per play, and a summary; ``--json`` prints every server message as a JSON
line instead. Exit status 0, or 1 with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from audiocopy.config import AudioParams  # noqa: E402

#: Where the stream token is read from when ``--source-token`` is not given.
TOKEN_ENV = "AUDIOCOPY_SOURCE_TOKEN"
#: Send PCM at the recognizer's own rate, so the server never resamples.
SAMPLE_RATE = AudioParams().sample_rate
FRAME_SECONDS = 0.1


class StreamError(Exception):
    """A user-facing failure (bad source, server unreachable, protocol error)."""


async def file_frames(path: str, frame_samples: int) -> AsyncIterator[bytes]:
    """s16le frames of a decoded file."""
    import numpy as np

    from audiocopy.errors import AudiocopyError
    from audiocopy.signal.audio import load_audio

    try:
        signal = await asyncio.to_thread(load_audio, path, params=AudioParams(sample_rate=SAMPLE_RATE),
                                         min_seconds=0)
    except AudiocopyError as exc:
        raise StreamError(str(exc)) from None
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
    step = 2 * frame_samples
    for i in range(0, len(pcm), step):
        yield pcm[i:i + step]


async def url_frames(url: str, frame_samples: int) -> AsyncIterator[bytes]:
    """s16le frames of an http(s) stream decoded by ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise StreamError("streaming a URL needs ffmpeg (apt-get install ffmpeg)")
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "http,https,tcp,tls",
        "-i", url, "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        while True:
            try:
                data = await proc.stdout.readexactly(2 * frame_samples)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    yield exc.partial[: len(exc.partial) // 2 * 2]
                break
            yield data
    finally:
        if proc.returncode is None:
            proc.kill()
        rc = await proc.wait()
    if rc not in (0, -9):
        raise StreamError(f"ffmpeg could not read {url} (exit status {rc})")


async def mic_frames(frame_samples: int) -> AsyncIterator[bytes]:
    """s16le frames from the default input device (sounddevice)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise StreamError(f"microphone capture needs the sounddevice package and PortAudio ({exc})") from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=50)

    def callback(indata, frames, time_info, status):  # runs on PortAudio's thread
        loop.call_soon_threadsafe(lambda data=bytes(indata): queue.full() or queue.put_nowait(data))

    try:
        stream = sd.RawInputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=frame_samples,
                                   callback=callback)
    except Exception as exc:  # PortAudioError: no device
        raise StreamError(f"cannot open a microphone: {exc}") from None
    with stream:
        while True:
            yield await queue.get()


def frames_for(source: str, frame_samples: int) -> AsyncIterator[bytes]:
    if source == "mic":
        return mic_frames(frame_samples)
    if source.startswith(("http://", "https://")):
        return url_frames(source, frame_samples)
    if not os.path.exists(source):
        raise StreamError(f"{source}: no such file (give a file, an http(s) URL or 'mic')")
    return file_frames(source, frame_samples)


def describe(msg: dict, show_all: bool) -> str | None:
    """The human line for a server message (None: nothing to print)."""
    kind = msg.get("type")
    if kind == "window":
        if msg["match"] is None and not show_all:
            return None
        label = msg["match"] or "-"
        return f"{msg['start_s']:8.2f}-{msg['end_s']:.2f} s  {label:<30} {msg['score']:+.2f}  ({msg['latency_ms']:.0f} ms)"
    if kind == "play":
        return (f"PLAY {msg['track']}  {msg['start_s']:.1f}-{msg['end_s']:.1f} s  "
                f"confidence {msg['confidence']:+.2f} over {msg['windows']} windows")
    if kind == "dropped":
        return f"server behind: {msg['windows']} window(s) skipped"
    if kind == "error":
        return f"server error {msg['code']}: {msg['message']}"
    if kind == "ready":
        proof = "verified by its token" if msg.get("source_verified") else "unverified"
        return (f"connected as {msg.get('source')!r} ({proof}): {msg['tracks']} tracks, {msg['window_s']} s windows "
                f"every {msg['hop_s']} s")
    if kind == "stopped":
        return (f"done: {msg['seconds']:.1f} s streamed, {msg['windows']} windows, {msg['dropped']} dropped, "
                f"{msg['plays']} plays")
    return None


async def run(args: argparse.Namespace) -> int:
    import aiohttp

    frame_samples = int(SAMPLE_RATE * FRAME_SECONDS)
    frames = frames_for(args.source, frame_samples)
    realtime = not args.no_pacing
    source_name = args.name or (Path(args.source).name if args.source != "mic" else "microphone")[:100]
    out = (lambda m: print(json.dumps(m), flush=True)) if args.json else \
        (lambda m: (line := describe(m, args.all)) and print(line, flush=True))
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(args.server, heartbeat=30) as ws:
            start = {"type": "start", "sample_rate": SAMPLE_RATE, "format": "s16le", "channels": 1,
                     "source": source_name, "realtime": realtime}
            token = getattr(args, "source_token", None)
            if token:
                start["source_token"] = token
            await ws.send_json(start)
            ready = await ws.receive_json(timeout=30)
            out(ready)
            if ready.get("type") != "ready":
                raise StreamError(ready.get("message", "the server did not accept the stream"))
            receiver = asyncio.create_task(_receive(ws, out))
            sent = 0
            t0 = time.monotonic()
            async for frame in frames:
                if receiver.done():
                    break
                if realtime:  # send each frame when a live source would have produced it
                    delay = t0 + sent / SAMPLE_RATE - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send_bytes(frame)
                sent += len(frame) // 2
            if not ws.closed:
                await ws.send_json({"type": "stop"})
            return await receiver
    except aiohttp.ClientError as exc:
        raise StreamError(f"cannot stream to {args.server}: {exc}") from None


async def _receive(ws, out) -> int:
    import aiohttp

    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        out(data)
        if data.get("type") == "stopped":
            return 0
        if data.get("type") == "error" and data.get("fatal"):
            return 1
    return 1  # closed without "stopped"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--source-token`` falls back to ``$AUDIOCOPY_SOURCE_TOKEN``."""
    p = argparse.ArgumentParser(description="Stream a file, URL or microphone to an audiocopy server's /ws "
                                            "and print the matches as they arrive.")
    p.add_argument("source", help="audio file, http(s) URL, or 'mic'")
    p.add_argument("--server", default="ws://127.0.0.1:8080/ws", help="WebSocket URL (default %(default)s)")
    p.add_argument("--no-pacing", action="store_true", help="send as fast as the server analyses (files)")
    p.add_argument("--name", help="source label stored with plays (default: the file name)")
    p.add_argument("--source-token", default=os.environ.get(TOKEN_ENV) or None, metavar="TOKEN",
                   help=f"stream token issued by the server's admin (default: ${TOKEN_ENV}); plays are then "
                        "logged under the token's source, verified")
    p.add_argument("--all", action="store_true", help="print every window, not only matches")
    p.add_argument("--json", action="store_true", help="print every server message as a JSON line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except StreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
