"""Whole acoustic chains: music played in a room and recorded by a device.

Place in the pipeline: training and benchmark distortions; never run at
serve time. The encoder's training views and the benchmark's "through the
air" queries are drawn here: ``random_chain`` describes one complete path
from the music file to a recorded query as a frozen ``AcousticChain`` (so a
benchmark can store, print and replay it), and ``apply_chain`` runs it.

Kinds of chain:

* ``"room"``: a loudspeaker (phone, laptop, Bluetooth or ceiling) in a room
  of any size, 0.5-8 m from a phone or laptop microphone, with 1-3 kinds of
  room noise (babble, traffic, HVAC, clatter) at 3-25 dB SNR each, the
  platform's AGC, sometimes an Opus voice-message codec, and a 44.1/48 kHz
  capture with clock drift.
* ``"phone"``: a phone held near a loudspeaker (0.3-1.5 m) in a small room:
  a strongly band-limited microphone (half of them voice-call narrowband),
  a strong AGC, up to 2 noises, often an AAC or Opus recording.
* ``"broadcast"``: no air at all: a broadcast loudness compressor and an
  MP3 or AAC stream (mostly 128 kbps, coded at 44.1 kHz).

Order of the stages in ``apply_chain``, in physical order: speaker -> room
-> room noise (it reaches the microphone through the same air, so it is
added *before* the microphone and the AGC, which then pump on music and
noise together) -> microphone -> AGC -> codec -> capture -> peak level.

Alignment: the output has the input's length and is time-aligned with it:
the room's direct-path delay (distance / speed of sound) is removed, and
so is the codec delay, so an offset in the recording is the same offset in
the music. What remains is physical and small: the group delay of the
causal speaker and microphone filters (well under 1 ms in their pass band)
and the capture clock drift (±200 ppm: at most 0.5 ms after 2.5 s).
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from scipy import signal as sps

from . import ambience, devices, rooms, transcode
from .checks import AugmentValueError, check_number, check_rate, check_rng, check_signal

log = logging.getLogger(__name__)

CHAIN_KINDS = ("room", "phone", "broadcast")
#: Peak level of the output, dB re full scale: a recording's level is arbitrary.
PEAK_DB_RANGE = (-20.0, -1.0)


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """One room noise: its kind (``ambience.AMBIENCE_KINDS``) and its SNR re the music at the mic, dB."""

    kind: str
    snr_db: float

    def __post_init__(self):
        if self.kind not in ambience.AMBIENCE_KINDS:
            raise AugmentValueError(f"noise kind must be one of {ambience.AMBIENCE_KINDS}, got {self.kind!r}")
        check_number(self.snr_db, "snr_db", -30.0, 100.0)


@dataclasses.dataclass(frozen=True)
class CodecSpec:
    """A codec round trip: ``transcode.CODECS`` name, bitrate in kbps, and the rate it is coded at (Hz)."""

    codec: str
    bitrate_kbps: int
    rate: int

    def __post_init__(self):
        if self.codec not in transcode.CODECS:
            raise AugmentValueError(f"codec must be one of {sorted(transcode.CODECS)}, got {self.codec!r}")
        if self.rate not in transcode.CODECS[self.codec].rates:
            rates = transcode.CODECS[self.codec].rates
            raise AugmentValueError(f"{self.codec} runs at {rates} Hz, not {self.rate!r}")


@dataclasses.dataclass(frozen=True)
class AcousticChain:
    """One drawn acoustic chain; stages that are None are skipped.

    kind: one of ``CHAIN_KINDS`` (a label: which stages are present is what counts).
    noise_room: the same room as ``room`` with the noise's source elsewhere;
        required when ``noises`` is not empty and ``room`` is given.
    peak_db: output peak level, dB re full scale (-60 to 0).
    """

    kind: str
    speaker: devices.SpeakerSpec | None = None
    room: rooms.RoomSpec | None = None
    noise_room: rooms.RoomSpec | None = None
    noises: tuple[NoiseSpec, ...] = ()
    mic: devices.MicSpec | None = None
    agc: devices.AgcSpec | None = None
    codec: CodecSpec | None = None
    capture: devices.CaptureSpec | None = None
    peak_db: float = -3.0

    def __post_init__(self):
        if self.kind not in CHAIN_KINDS:
            raise AugmentValueError(f"kind must be one of {CHAIN_KINDS}, got {self.kind!r}")
        for name, cls in (("speaker", devices.SpeakerSpec), ("room", rooms.RoomSpec), ("noise_room", rooms.RoomSpec),
                          ("mic", devices.MicSpec), ("agc", devices.AgcSpec), ("codec", CodecSpec),
                          ("capture", devices.CaptureSpec)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise AugmentValueError(f"{name} must be a {cls.__name__} or None, got {type(value).__name__}")
        object.__setattr__(self, "noises", tuple(self.noises))
        if not all(isinstance(n, NoiseSpec) for n in self.noises):
            raise AugmentValueError("noises must be NoiseSpec records")
        if self.noises and self.room is not None and self.noise_room is None:
            raise AugmentValueError("a chain with a room and noises needs noise_room (rooms.move_source)")
        check_number(self.peak_db, "peak_db", -60.0, 0.0)


def _noises(rng: np.random.Generator, count: int) -> tuple[NoiseSpec, ...]:
    kinds = rng.choice(len(ambience.AMBIENCE_KINDS), size=count, replace=False)
    return tuple(NoiseSpec(ambience.AMBIENCE_KINDS[int(k)], float(rng.uniform(3.0, 25.0))) for k in kinds)


def _codec(rng: np.random.Generator, allowed: tuple[str, ...], choices: dict) -> CodecSpec | None:
    """One of ``choices`` (codec -> (bitrates, rate)) that is ``allowed``, or None when none is."""
    usable = [c for c in choices if c in allowed]
    if not usable:
        return None
    codec = usable[int(rng.integers(len(usable)))]
    bitrates, rate = choices[codec]
    return CodecSpec(codec, int(rng.choice(bitrates)), rate)


def random_chain(rng: np.random.Generator, *, kind: str,
                 codecs: tuple[str, ...] = tuple(transcode.CODECS)) -> AcousticChain:
    """Draw one acoustic chain of ``kind`` ("room", "phone" or "broadcast"; see the module docstring).

    codecs: codec names that may be drawn (e.g. ``transcode.available_codecs()``
        on a machine without some encoders); a "room" or "phone" chain then
        gets no codec rather than another, and a "broadcast" chain needs mp3
        or aac among them.
    The draw does not depend on the machine: same generator state, same chain.
    """
    rng = check_rng(rng)
    if kind not in CHAIN_KINDS:
        raise AugmentValueError(f"kind must be one of {CHAIN_KINDS}, got {kind!r}")
    codecs = tuple(codecs)
    peak_db = float(rng.uniform(*PEAK_DB_RANGE))
    if kind == "broadcast":
        codec = _codec(rng, codecs, {"mp3": ((96, 128, 128, 160), 44100), "aac": ((96, 128, 128, 160), 44100)})
        if codec is None:
            raise AugmentValueError(f"a broadcast chain needs mp3 or aac among codecs, got {codecs}")
        return AcousticChain(kind, agc=devices.random_agc(rng, kind="broadcast"), codec=codec, peak_db=peak_db)
    speaker = devices.random_speaker(rng)
    if kind == "room":
        room = rooms.random_room(rng)
        noises = _noises(rng, int(rng.integers(1, 4)))
        mic = devices.random_mic(rng)
        voice = rng.random() < 0.25
        codec = _codec(rng, codecs, {"opus": ((24, 32, 48, 64), 48000)}) if voice else None
    else:
        room = rooms.random_room(rng, kind="small", distance_range=(0.3, 1.5))
        noises = _noises(rng, int(rng.integers(0, 3)))
        mic = devices.random_mic(rng, kind="narrowband" if rng.random() < 0.5 else "phone")
        record = rng.random() < 0.5
        codec = _codec(rng, codecs, {"aac": ((64, 96, 128), 48000), "opus": ((24, 32, 48), 48000)}) if record else None
    noise_room = rooms.move_source(room, rng) if noises else None
    agc = devices.random_agc(rng, kind="agc")
    if kind == "phone":
        agc = dataclasses.replace(agc, ratio=max(agc.ratio, 15.0), attack_s=min(agc.attack_s, 0.02))
    return AcousticChain(kind, speaker, room, noise_room, noises, mic, agc, codec, devices.random_capture(rng), peak_db)


def _through(x: np.ndarray, spec: rooms.RoomSpec, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` convolved with ``spec``'s impulse response, direct-path delay removed: (len(x),)."""
    ir = rooms.room_impulse_response(spec, sample_rate=sample_rate, rng=rng)
    delay = rooms.direct_delay_samples(spec, sample_rate=sample_rate)
    return sps.oaconvolve(x, ir[delay:])[:x.size].astype(np.float32)


def _add_noises(y: np.ndarray, chain: AcousticChain, sample_rate: int, rng: np.random.Generator,
                voice_bank) -> np.ndarray:
    """``y`` plus the chain's noises, each at its SNR re ``y``, reverberated together by ``noise_room``."""
    weights = [10 ** (-n.snr_db / 20.0) for n in chain.noises]
    noise = sum(w * ambience.ambience(n.kind, y.size, rng, sample_rate=sample_rate, bank=voice_bank)
                for w, n in zip(weights, chain.noises))
    if chain.noise_room is not None:
        noise = _through(noise.astype(np.float32), chain.noise_room, sample_rate, rng)
    # Unit-RMS noises at amplitude w have powers w**2 that add: keep that total after the room.
    combined_snr = -10.0 * math.log10(sum(w * w for w in weights))
    return ambience.mix_at_snr(y, noise.astype(np.float32), combined_snr)


def apply_chain(x, chain: AcousticChain, *, sample_rate: int, rng: np.random.Generator,
                voice_bank: ambience.VoiceBank | None = None) -> np.ndarray:
    """Run ``x`` through ``chain``.

    x: (n,) float32 music at ``sample_rate`` Hz (at least 8 kHz).
    rng: draws the room's reverberation noise, the room noises and the
        microphone's hiss; the same chain, input and generator state give
        the same output.
    voice_bank: talkers for babble at ``sample_rate`` (``ambience.
        cached_voice_bank``); None: ``ambience.default_voice_bank``.
    Returns (n,) float32, time-aligned with ``x`` (see the module
    docstring), peak at ``chain.peak_db`` dB re full scale; all zeros if
    the chain silenced it.
    Raises ``transcode.CodecUnavailable`` when the chain's codec cannot run here.
    Cost at 16 kHz on one CPU core (median, 2.5 s / 10 s of input): "room"
    ~20 / 65 ms and "phone" ~12 / 34 ms without a codec; a codec adds
    ~70-150 ms, mostly two ffmpeg start-ups, so "broadcast" is ~90-140 /
    ~230 ms.
    """
    x = check_signal(x)
    if not isinstance(chain, AcousticChain):
        raise AugmentValueError(f"chain must be an AcousticChain (random_chain), got {type(chain).__name__}")
    sample_rate = check_rate(sample_rate)
    rng = check_rng(rng)
    if x.size == 0:
        return x.copy()
    y = x
    if chain.speaker is not None:
        y = devices.loudspeaker(y, chain.speaker, sample_rate=sample_rate)
    if chain.room is not None:
        y = _through(y, chain.room, sample_rate, rng)
    if chain.noises:
        y = _add_noises(y, chain, sample_rate, rng, voice_bank)
    if chain.mic is not None:
        y = devices.microphone(y, chain.mic, sample_rate=sample_rate, rng=rng)
    if chain.agc is not None:
        y = devices.agc(y, chain.agc, sample_rate=sample_rate)
    if chain.codec is not None:
        c = chain.codec
        y = transcode.transcode(y, codec=c.codec, bitrate_kbps=c.bitrate_kbps, sample_rate=sample_rate, rate=c.rate)
    if chain.capture is not None:
        y = devices.capture(y, chain.capture, sample_rate=sample_rate)
    peak = float(np.max(np.abs(y)))
    if peak < 1e-12:
        return np.zeros(x.size, dtype=np.float32)
    return (y * np.float32(10 ** (chain.peak_db / 20.0) / peak)).astype(np.float32)
