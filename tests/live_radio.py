"""A local live "radio station" for the monitor tests (this module holds no tests).

A URL monitor is meant for a live stream: an HTTP response that never ends
and whose content depends on *when* one listens, not on when one connected.
A file served as a whole (``test_web_fixtures.pulses_radio``) cannot show
what happens when a server dies in the middle of a song and another one
connects later: that one must hear the rest of the song, not its start.

``LiveRadio`` plays a fixed programme (``Segment`` s: a track of the test's
catalogue, unknown music, silence) on a wall clock that starts with its first
listener (``on_air_at``). A listener connecting at programme time ``t``
receives the audio from ``t`` on, paced in real time (never faster, so a
monitor reads at the station's speed as it would from a real radio); after
the programme the station plays silence for ever. Every response is
endless (HTTP/1.0, no Content-Length, ended by closing the socket).

Formats, both decoded by the monitors' ``ffmpeg -i pipe:0``:

* ``mp3`` (default, what Icecast radios send): the programme is encoded
  once by ffmpeg as constant-bitrate MP3, so programme time maps to a byte
  offset; a listener starts at the first frame header at or after its
  offset. The endless tail repeats an encoded block of silence.
* ``wav``: a WAV header declaring an unknown (maximal) length, then 16-bit
  PCM computed from the clock; no encoder needed.

The server runs in its own threads (``http.server``), so synchronous tests
with server subprocesses can use it; ``close`` ends every response.
"""
from __future__ import annotations

import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import numpy as np

RATE = 22050
BITRATE = 128_000  # bits per second of the MP3 stream (constant: byte offset = time * BITRATE / 8)
TICK_S = 0.1  # how often a listener's connection is topped up to the clock
SILENCE_BLOCK_S = 10.0


@dataclass(frozen=True)
class Segment:
    """One item of the programme: ``seconds`` of ``audio`` (mono float at ``RATE``), labelled.

    track: the catalogue track id a recognizer should report for this part,
    or None for anything that must not be reported (unknown music, silence).
    """

    label: str
    audio: np.ndarray
    track: str | None = None

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


@dataclass(frozen=True)
class Slot:
    """Where a segment sits in the programme (seconds from the start)."""

    label: str
    track: str | None
    start_s: float
    end_s: float


def _encode_mp3(audio: np.ndarray) -> bytes:
    """Mono float audio -> constant-bitrate MP3 frames (no ID3 or Xing header: only audio frames)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                           "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0",
                           "-c:a", "libmp3lame", "-b:a", str(BITRATE), "-write_xing", "0",
                           "-id3v2_version", "0", "-f", "mp3", "pipe:1"],
                          input=pcm, capture_output=True, timeout=300, check=False)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"ffmpeg could not encode the programme: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


def _frame_start(data: bytes, offset: int) -> int:
    """The first MPEG audio frame header (11 sync bits) at or after ``offset``."""
    while offset < len(data) - 1:
        offset = data.find(b"\xff", offset)
        if offset < 0 or offset >= len(data) - 1:
            return len(data)
        if data[offset + 1] & 0xE0 == 0xE0:
            return offset
        offset += 1
    return len(data)


def _wav_header() -> bytes:
    """A 16-bit mono WAV header whose sizes say "as long as it goes" (as streaming encoders write it)."""
    endless = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", endless) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
            + b"data" + struct.pack("<I", endless))


class LiveRadio:
    """An endless live stream of ``programme`` on ``http://127.0.0.1:PORT/live.mp3`` (or ``.wav``).

    programme: the segments in order; format: "mp3" or "wav".
    ``url``; ``slots``: where each segment plays; ``on_air_at``: the wall
    time (``time.time()``) of the first listener, None before;
    ``listeners``: connections served so far (each with its programme time
    at connection). Use as a context manager or call ``close``.
    """

    def __init__(self, programme: list[Segment], *, format: str = "mp3"):
        if format not in ("mp3", "wav"):
            raise ValueError(f"format must be mp3 or wav, not {format!r}")
        if not programme:
            raise ValueError("a programme needs at least one segment")
        self.format = format
        self.slots: list[Slot] = []
        t = 0.0
        for seg in programme:
            self.slots.append(Slot(seg.label, seg.track, t, t + seg.seconds))
            t += seg.seconds
        self.length_s = t
        self._audio = np.concatenate([s.audio for s in programme]).astype(np.float32)
        if format == "mp3":
            self._body = _encode_mp3(self._audio)
            self._tail = _encode_mp3(np.zeros(int(SILENCE_BLOCK_S * RATE), np.float32))
        self.on_air_at: float | None = None
        self.listeners: list[float] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-radio", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/live.{self.format}"

    def now_s(self) -> float:
        """Programme time now (0 before the first listener)."""
        return 0.0 if self.on_air_at is None else time.time() - self.on_air_at

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tune_in(self) -> float:
        with self._lock:
            if self.on_air_at is None:
                self.on_air_at = time.time()
            at = time.time() - self.on_air_at
            self.listeners.append(at)
            return at

    def _bytes_until(self, t: float) -> int:
        """Bytes of the stream (after the header, if any) that carry programme time [0, t)."""
        return int(t * BITRATE / 8) if self.format == "mp3" else int(t * RATE) * 2  # whole samples for PCM

    def _piece(self, start: int, end: int) -> bytes:
        """Stream bytes [start, end): the programme, then silence for ever."""
        if self.format == "wav":
            first, last = start // 2, end // 2
            audio = self._audio[first:last]
            pad = (last - first) - len(audio)
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            return pcm + bytes(2 * max(0, pad))
        out = self._body[start:end]
        tail_at = max(start, len(self._body)) - len(self._body)
        while len(out) < end - start:  # past the programme: the silence block, repeated
            i = tail_at % len(self._tail)
            take = self._tail[i:i + (end - start - len(out))]
            out += take
            tail_at += len(take)
        return out

    def _handler(self):
        radio = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection does

            def log_message(self, *args) -> None:  # no request lines on the test's stderr
                pass

            def do_GET(self) -> None:  # http.server's name for the GET handler
                if self.path.split("?")[0] != f"/live.{radio.format}":
                    self.send_error(404)
                    return
                at = radio._tune_in()
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg" if radio.format == "mp3" else "audio/wav")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                sent = radio._bytes_until(at)
                try:
                    if radio.format == "mp3":
                        sent = _frame_start(radio._body, sent) if sent < len(radio._body) else sent
                    else:
                        self.wfile.write(_wav_header())
                    while not radio._closed.is_set():
                        due = radio._bytes_until(radio.now_s())
                        if due > sent:
                            self.wfile.write(radio._piece(sent, due))
                            self.wfile.flush()
                            sent = due
                        time.sleep(TICK_S)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the listener went away (a killed server, a reconnecting monitor)

        return Handler
