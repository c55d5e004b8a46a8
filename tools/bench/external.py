"""The external tools that make the distortions: sox, an MP3 codec (ffmpeg or lame), espeak-ng.

Place in ``tools/bench``: under ``distortions`` and ``room``. Every call is
a subprocess fed through pipes (no temporary files, except where a seekable
file matters, see ``mp3_roundtrip``); a failing tool raises with its command
line and the tail of its stderr.

Why other tools. The models were trained on distortions made by
``audiocopy.training.augment``; testing with that code would only show that
they learned our own implementation of "speed" or "room". Here every
distortion with an effect in a standard tool is made by that tool.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import BenchError

INSTALL_HINT = "apt-get install -y sox libsox-fmt-all lame ffmpeg espeak-ng"


@dataclass(frozen=True)
class Tools:
    """Paths of the tools found. mp3: "ffmpeg" (libmp3lame inside ffmpeg) or "lame"."""

    sox: str
    mp3: str
    ffmpeg: str | None
    lame: str | None
    espeak: str | None
    versions: dict


def check_tools(*, need_speech: bool) -> Tools:
    """Find sox, an MP3 encoder and (when ``need_speech``) espeak-ng, or fail with the command that installs them."""
    sox, ffmpeg, lame = shutil.which("sox"), shutil.which("ffmpeg"), shutil.which("lame")
    espeak = shutil.which("espeak-ng")
    ffmpeg_mp3 = False
    if ffmpeg:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
        ffmpeg_mp3 = "libmp3lame" in out
    missing = []
    if not sox:
        missing.append("sox")
    if not ffmpeg_mp3 and not lame:
        missing.append("an MP3 encoder (ffmpeg with libmp3lame, or lame)")
    if need_speech and not espeak:
        missing.append("espeak-ng (speech and babble of the speech and room conditions)")
    if missing:
        raise BenchError(f"missing {' and '.join(missing)}; the queries are distorted with these tools. "
                         f"Install them (Debian, as root): {INSTALL_HINT}")
    mp3 = "ffmpeg" if ffmpeg_mp3 else "lame"
    versions = {"sox": first_line([sox, "--version"]),
                mp3: first_line([ffmpeg, "-version"] if ffmpeg_mp3 else [lame, "--version"])}
    if espeak:
        versions["espeak-ng"] = first_line([espeak, "--version"])
    return Tools(sox, mp3, ffmpeg, lame, espeak, versions)


def first_line(cmd: list[str]) -> str:
    """A tool's name and version from the first line of its version output ("?" if it says nothing)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    if not text:
        return "?"
    # "/usr/bin/sox:  SoX v14.4.2", "ffmpeg version 5.1 Copyright ...": keep name and version only.
    line = text[0].split(":", 1)[-1] if text[0].startswith("/") else text[0]
    return re.sub(r"\s+(Copyright|Data at:).*", "", line).strip()


def run(cmd: list[str], data: bytes | None = None) -> bytes:
    """Run a tool, feeding ``data`` on stdin; its stdout, or ``RuntimeError`` naming the command."""
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


def sox_effect(tools: Tools, signal: np.ndarray, sample_rate: int, effects: list[str]) -> np.ndarray:
    """Apply sox effects to a mono float32 signal (Hz ``sample_rate``) through pipes; same rate out."""
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sample_rate)]
    # Output rate is pinned: after `speed`, sox resamples back to it by itself.
    out = run([tools.sox, "-V1", *raw, "-", *raw, "-", *effects], signal.astype(np.float32).tobytes())
    return np.frombuffer(out, dtype=np.float32).copy()


def mp3_roundtrip(tools: Tools, signal: np.ndarray, sample_rate: int, kbps: int, tmp_dir: Path) -> np.ndarray:
    """Encode to MP3 at ``kbps`` kbit/s and decode back (same rate).

    The MP3 goes to a real file, not a pipe: only a seekable output gets the
    LAME header with the encoder delay, which lets the decoder return
    sample-aligned audio instead of a shifted one.
    """
    import soundfile as sf

    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        mp3 = Path(tmp) / "q.mp3"
        if tools.mp3 == "ffmpeg":
            run([tools.ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1",
                 "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", f"{kbps}k", str(mp3)],
                signal.astype(np.float32).tobytes())
            out = run([tools.ffmpeg, "-v", "error", "-i", str(mp3), "-f", "f32le", "-ac", "1",
                       "-ar", str(sample_rate), "pipe:1"])
            return np.frombuffer(out, dtype=np.float32).copy()
        pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
        run([tools.lame, "--quiet", "-r", "-s", f"{sample_rate / 1000:g}", "--signed", "--bitwidth", "16",
             "--little-endian", "-m", "m", "-b", str(kbps), "-", str(mp3)], pcm)
        wav = Path(tmp) / "q.wav"
        run([tools.lame, "--quiet", "--decode", str(mp3), str(wav)])
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise RuntimeError(f"lame decoded at {rate} Hz instead of {sample_rate} Hz")
        return data.mean(axis=1)


def speak(tools: Tools, text: str, *, voice: str, words_per_minute: int, pitch: int, sample_rate: int) -> np.ndarray:
    """Speech of ``text`` by espeak-ng (voice, speed in words per minute, pitch 0-99), mono float32 at ``sample_rate``.

    espeak-ng writes a WAV at its own rate to stdout; sox converts it.
    """
    if tools.espeak is None:
        raise BenchError(f"espeak-ng is needed for speech; install it: {INSTALL_HINT}")
    wav = run([tools.espeak, "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "--stdout", text])
    out = run([tools.sox, "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1",
               "-r", str(sample_rate), "-"], wav)
    return np.frombuffer(out, dtype=np.float32).copy()
