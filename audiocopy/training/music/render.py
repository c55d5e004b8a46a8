"""Rendering compositions to audio with fluidsynth and Debian's GM soundfonts.

Place in the pipeline: ``generate`` composes a track, then calls
``render_fluidsynth`` (most tracks) or ``synth.render`` (the rest) and
``finish`` to get the 22050 Hz mono training WAV. Offline only.

Ideas. Real recordings differ in instruments and rooms, so each track is
played by one of several General MIDI soundfonts shipped by Debian
(different samples of every instrument), picked from the seed, with random
reverb, chorus and gain (the gain is nearly moot: the output is float and
peak-normalised afterwards). Programs or drum kits a soundfont lacks are
mapped to ones it has (read from its ``phdr`` preset headers, which sf2 and
sf3 files share) so no part falls silent. fluidsynth renders at 44.1 kHz in
float (no clipping; fewer aliasing artefacts than rendering at 22.05 kHz,
since it does not low-pass samples it pitches up); soxr resamples to 22050
Hz after the stereo downmix. ``finish`` trims leading and trailing silence,
applies a random EQ tilt and gentle saturation (a mastering chain's
colour and loudness) and peak-normalises.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import RendererUnavailable
from .midi import write_midi
from .score import DRUM_CHANNEL, Composition

log = logging.getLogger(__name__)

#: General MIDI soundfonts Debian ships: (path, package). Symlinks to the
#: same file (default-GM.sf2, MuseScore_General.sf3) are left out.
KNOWN_SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3", "musescore-general-soundfont"),
    ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),
    ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "fluidr3mono-gm-soundfont"),
    ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
    ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
)
FLUID_RATE = 44100
DRUM_BANK = 128


@dataclass(frozen=True)
class SoundFont:
    """An installed soundfont: ``path``, Debian ``package``, ``sha256`` of the file and ``size`` in bytes."""

    path: str
    package: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def record(self) -> dict:
        """What the manifest says about it."""
        return {"file": self.name, "package": self.package, "sha256": self.sha256, "bytes": self.size}


def fluidsynth_path() -> str | None:
    """The ``fluidsynth`` executable, or None when it is not installed."""
    return shutil.which("fluidsynth")


def find_soundfonts(candidates=KNOWN_SOUNDFONTS) -> tuple[SoundFont, ...]:
    """The installed soundfonts among ``candidates`` ((path, package) pairs), hashed, one per real file."""
    found, seen = [], set()
    for path, package in candidates:
        real = os.path.realpath(path)
        if os.path.isfile(real) and real not in seen:
            seen.add(real)
            found.append(SoundFont(path, package, _sha256(real), os.path.getsize(real)))
    return tuple(found)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def presets(path: str) -> frozenset[tuple[int, int]]:
    """(bank, program) pairs a soundfont defines, read from its ``pdta/phdr`` chunk (sf2 and sf3)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise RendererUnavailable(f"{path}: not a SoundFont (RIFF sfbk) file")
        while True:
            chunk = fh.read(12)
            if len(chunk) < 12:
                raise RendererUnavailable(f"{path}: no preset table (pdta) found")
            cid, size, kind = chunk[:4], struct.unpack("<I", chunk[4:8])[0], chunk[8:12]
            if cid == b"LIST" and kind == b"pdta":
                return _phdr(fh.read(size - 4))
            fh.seek(size - 4, os.SEEK_CUR)
            if size & 1 and fh.read(1) not in (b"\0", b""):
                # Some writers (MuseScore's sf3 tools) omit the RIFF pad byte after odd-sized chunks.
                fh.seek(-1, os.SEEK_CUR)


def _phdr(pdta: bytes) -> frozenset[tuple[int, int]]:
    pos = 0
    while pos + 8 <= len(pdta):
        cid, size = pdta[pos:pos + 4], struct.unpack("<I", pdta[pos + 4:pos + 8])[0]
        if cid == b"phdr":
            body = pdta[pos + 8:pos + 8 + size]
            records = [struct.unpack("<20sHH", body[i:i + 24]) for i in range(0, len(body) - 38, 38)]
            return frozenset((bank, prog) for _, prog, bank in records)
        pos += 8 + size + (size & 1)
    return frozenset()


def fit_programs(comp: Composition, available: frozenset[tuple[int, int]]) -> Composition:
    """``comp`` with every program/kit the soundfont lacks replaced by the nearest one it has."""
    parts = []
    for part in comp.parts:
        bank = DRUM_BANK if part.channel == DRUM_CHANNEL else 0
        have = sorted(p for b, p in available if b == bank)
        if have and (bank, part.program) not in available:
            family = [p for p in have if p // 8 == part.program // 8] or have
            program = min(family, key=lambda p: abs(p - part.program)) if bank == 0 else have[0]
            parts.append(replace(part, program=program))
        else:
            parts.append(part)
    return replace(comp, parts=tuple(parts))


@dataclass(frozen=True)
class FluidSettings:
    """fluidsynth's mixer: gain, reverb (room 0-1, damping 0-1, width 0-100, level 0-1), chorus."""

    gain: float
    reverb_room: float
    reverb_damp: float
    reverb_width: float
    reverb_level: float
    chorus_voices: int
    chorus_level: float
    chorus_speed: float
    chorus_depth: float

    def options(self) -> list[str]:
        pairs = (("synth.gain", self.gain), ("synth.reverb.room-size", self.reverb_room),
                 ("synth.reverb.damp", self.reverb_damp), ("synth.reverb.width", self.reverb_width),
                 ("synth.reverb.level", self.reverb_level), ("synth.chorus.nr", self.chorus_voices),
                 ("synth.chorus.level", self.chorus_level), ("synth.chorus.speed", self.chorus_speed),
                 ("synth.chorus.depth", self.chorus_depth))
        return [arg for k, v in pairs for arg in ("-o", f"{k}={v}")]


def random_fluid_settings(rng: random.Random) -> FluidSettings:
    """A random but tasteful reverb/chorus/gain setting (dry studio to large hall)."""
    return FluidSettings(gain=round(rng.uniform(0.3, 0.8), 3), reverb_room=round(rng.uniform(0.1, 0.95), 3),
                         reverb_damp=round(rng.uniform(0.0, 0.8), 3), reverb_width=round(rng.uniform(0.2, 90), 2),
                         reverb_level=round(rng.uniform(0.2, 1.0), 3), chorus_voices=rng.randint(1, 6),
                         chorus_level=round(rng.uniform(0.5, 3.0), 3), chorus_speed=round(rng.uniform(0.2, 1.5), 3),
                         chorus_depth=round(rng.uniform(2.0, 16.0), 3))


def render_fluidsynth(comp: Composition, soundfont: SoundFont, settings: FluidSettings, rate: int = 22050,
                      timeout_s: float = 600.0) -> np.ndarray:
    """Render ``comp`` through fluidsynth with ``soundfont``; returns mono float32 samples at ``rate`` Hz.

    Raises ``RendererUnavailable`` if fluidsynth is missing, fails, or writes nothing.
    """
    import soundfile as sf
    import soxr

    exe = fluidsynth_path()
    if exe is None:
        raise RendererUnavailable("fluidsynth is not installed (apt-get install fluidsynth)")
    comp = fit_programs(comp, presets(os.path.realpath(soundfont.path)))
    with tempfile.TemporaryDirectory(prefix="audiocopy-fluid-") as tmp:
        mid = write_midi(comp, Path(tmp) / "track.mid")
        wav = Path(tmp) / "track.wav"
        cmd = [exe, "-n", "-i", "-q", "-r", str(FLUID_RATE), "-O", "float", "-T", "wav", "-F", str(wav),
               "-o", "synth.cpu-cores=1", "-o", "synth.polyphony=512", "-o", "synth.dynamic-sample-loading=1",
               *settings.options(), soundfont.path, str(mid)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RendererUnavailable(f"fluidsynth took over {timeout_s:.0f} s on {soundfont.name}") from exc
        if proc.returncode != 0 or not wav.exists() or wav.stat().st_size < 1024:
            raise RendererUnavailable(f"fluidsynth failed on {soundfont.name} (exit {proc.returncode}): "
                                      f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
        audio, file_rate = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if file_rate != rate:
        mono = soxr.resample(mono, file_rate, rate, quality="HQ")
    return np.asarray(mono, dtype=np.float32)


def _tilt(x: np.ndarray, rate: int, amount: float) -> np.ndarray:
    """A mastering EQ tilt around 600 Hz: ``amount`` > 0 brightens, < 0 darkens (about +-3 dB)."""
    from scipy import signal

    low = signal.sosfilt(signal.butter(1, 600 / (rate / 2), output="sos"), x)
    return low * (1 - amount) + (x - low) * (1 + amount)


def finish(audio: np.ndarray, rate: int, rng: random.Random, threshold_db: float = -50.0) -> np.ndarray:
    """Trim silence at both ends, tilt the EQ, saturate a little (random drive), peak-normalise.

    Args:
        audio: mono float samples.
        rate: sample rate in Hz (trimming works on 10 ms frames).
        rng: draws the EQ tilt, the drive (0 = clean) and the peak level (-0.3 to -3 dBFS).
        threshold_db: frames quieter than this, relative to the loudest frame, count as silence.
    Returns float32 samples with peak = the drawn level; raises ``RendererUnavailable`` if all silent.
    """
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64))
    frame = max(1, rate // 100)
    n = len(x) // frame
    if n == 0 or not np.any(x):
        raise RendererUnavailable("the renderer produced silence")
    energy = np.sqrt(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    loud = np.nonzero(20 * np.log10(energy / energy.max()) > threshold_db)[0]
    x = x[loud[0] * frame:(loud[-1] + 1) * frame]
    x = _tilt(x, rate, rng.uniform(-0.35, 0.35))
    x /= np.max(np.abs(x))
    drive = rng.choice((0.0, 0.0, rng.uniform(0.5, 3.0)))
    if drive > 0:
        # tanh(drive * x) / tanh(drive): louder quiet passages, rounded peaks, like a limiter.
        x = np.tanh(drive * x) / np.tanh(drive)
    fade = min(len(x) // 4, rate // 200)
    if fade > 0:
        x[:fade] *= np.linspace(0.0, 1.0, fade)
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
    peak = 10 ** (-rng.uniform(0.3, 3.0) / 20)
    return (x / max(np.max(np.abs(x)), 1e-12) * peak).astype(np.float32)
