"""Lossy codecs a stream passes through: MP3, AAC and Opus round trips by ffmpeg.

Place in the pipeline: training and benchmark distortions, the codec stage of
a ``chain.AcousticChain``; never run at serve time. Music reaches a listener
as MP3 or AAC (downloads, radio streams), a recording app stores AAC, a
call or voice message carries Opus. Each codec throws away what its
psychoacoustic model says is masked, and at low rates it low-passes and
smears transients; a recogniser must see the same song through all of them.

How: ``transcode`` pipes float32 PCM into one ``ffmpeg`` process that
encodes and straight into a second that decodes, both running at once, so
nothing touches the disk and the cost is about one ffmpeg start-up (~0.1 s)
plus the codec's work. A codec delays its output: MP3 by the encoder's look-
ahead and the decoder's filter bank (no gapless "LAME tag" can be written
to a pipe), AAC by its 1024-sample priming (ADTS carries no edit list);
Ogg Opus records its pre-skip and ffmpeg honours it. Rather than hard-code
these, ``codec_delay`` measures the delay once per codec, bitrate and rate,
by cross-correlating a white-noise probe (its autocorrelation is a single
spike, so the lag is unambiguous), and caches it; ``transcode`` removes it
so that the output is aligned sample for sample with the input.

When ffmpeg or an encoder is missing, ``CodecUnavailable`` says which and how
to install it, instead of a dataset quietly built without codec damage.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import shutil
import subprocess
import threading

import numpy as np

from .checks import AugmentError, AugmentValueError, CodecUnavailable, check_count, check_rate, check_signal

log = logging.getLogger(__name__)

#: Seconds one ffmpeg round trip may take before it is killed.
TIMEOUT_S = 120.0
_FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error")
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)



class CodecFailed(AugmentError):
    """ffmpeg ran but could not encode or decode."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """How ffmpeg runs one codec: encoder, muxer and demuxer of its container, rates (Hz), bitrates (kbps)."""

    encoder: str
    muxer: str
    demuxer: str
    rates: tuple[int, ...]
    kbps: tuple[int, int]


CODECS = {
    "mp3": Codec("libmp3lame", "mp3", "mp3", _MP3_RATES, (8, 320)),
    "aac": Codec("aac", "adts", "aac", _MP3_RATES + (64000, 88200, 96000), (16, 320)),
    "opus": Codec("libopus", "ogg", "ogg", (8000, 12000, 16000, 24000, 48000), (6, 256)),
}


@functools.lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    """Names of the encoders the installed ffmpeg offers (empty without ffmpeg)."""
    if shutil.which("ffmpeg") is None:
        return frozenset()
    try:
        listing = subprocess.run([*_FFMPEG, "-encoders"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("ffmpeg -encoders failed: %s", exc)
        return frozenset()
    rows = (line.split() for line in listing.splitlines())
    return frozenset(row[1] for row in rows if len(row) > 1 and row[0][:1] == "A")  # " A....D libmp3lame ..."


def codec_available(codec: str) -> bool:
    """True when ``codec`` ("mp3", "aac", "opus") can be run here."""
    return codec in CODECS and CODECS[codec].encoder in _encoders()


def available_codecs() -> tuple[str, ...]:
    return tuple(c for c in CODECS if codec_available(c))


def _require(codec: str) -> Codec:
    if codec not in CODECS:
        raise AugmentValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    if shutil.which("ffmpeg") is None:
        raise CodecUnavailable("ffmpeg is not on PATH; install it (Debian: apt-get install ffmpeg)")
    if not codec_available(codec):
        raise CodecUnavailable(f"this ffmpeg has no {CODECS[codec].encoder} encoder for {codec}; install an "
                               f"ffmpeg built with it (Debian's ffmpeg package has libmp3lame, aac and libopus)")
    return CODECS[codec]


def codec_rate(codec: str, sample_rate: int) -> int:
    """The rate the encoder runs at: ``sample_rate`` if it takes it, else the next higher one it does."""
    rates = CODECS[codec].rates
    return next((r for r in rates if r >= sample_rate), rates[-1])


def _check_bitrate(codec: str, bitrate_kbps: int, rate: int) -> int:
    lo, hi = CODECS[codec].kbps
    if codec == "mp3":  # MPEG-2 and 2.5 (below 32 kHz) have smaller frames and lower ceilings
        hi = 320 if rate >= 32000 else 160 if rate >= 16000 else 64
    bitrate_kbps = check_count(bitrate_kbps, "bitrate_kbps", 1)
    if not lo <= bitrate_kbps <= hi:
        raise AugmentValueError(f"{codec} at {rate} Hz takes {lo}-{hi} kbps, got {bitrate_kbps}")
    return bitrate_kbps


def _round_trip(x: np.ndarray, codec: str, bitrate_kbps: int, sample_rate: int, rate: int) -> np.ndarray:
    """Encode ``x`` with ffmpeg and decode it back to ``sample_rate``; (m,) float32, m about len(x) + delay."""
    spec = CODECS[codec]
    encode = [*_FFMPEG, "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
              "-c:a", spec.encoder, "-b:a", f"{bitrate_kbps}k", "-ar", str(rate), "-f", spec.muxer, "pipe:1"]
    decode = [*_FFMPEG, "-f", spec.demuxer, "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(sample_rate),
              "pipe:1"]
    enc = subprocess.Popen(encode, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dec = subprocess.Popen(decode, stdin=enc.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    enc.stdout.close()  # the decoder owns it now; the encoder sees a broken pipe if the decoder dies
    enc_err = []

    def feed():  # in a thread: writing all input before reading any output would deadlock on full pipes
        try:
            enc.stdin.write(x.astype("<f4").tobytes())
            enc.stdin.close()
        except BrokenPipeError:
            pass
        enc_err.append(enc.stderr.read())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        out, dec_err = dec.communicate(timeout=TIMEOUT_S)
        feeder.join(TIMEOUT_S)
        enc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        enc.kill()
        dec.kill()
        raise CodecFailed(f"ffmpeg {codec} round trip took over {TIMEOUT_S:g} s") from exc
    if enc.returncode or dec.returncode:
        err = (b"".join(enc_err) + dec_err).decode(errors="replace").strip().splitlines()
        reason = err[-1] if err else "no message"
        raise CodecFailed(f"ffmpeg {codec} at {bitrate_kbps} kbps, {rate} Hz failed: {reason}")
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


@functools.lru_cache(maxsize=128)
def codec_delay(codec: str, bitrate_kbps: int, sample_rate: int, rate: int | None = None) -> int:
    """Samples (at ``sample_rate``) by which a decoded stream lags its input; may be negative.

    Measured once per argument set on 1 s of seeded white noise and cached
    for the life of the process.
    """
    spec = _require(codec)
    rate = codec_rate(codec, sample_rate) if rate is None else rate
    probe = np.random.default_rng(12345).uniform(-0.5, 0.5, sample_rate).astype(np.float32)
    y = _round_trip(probe, codec, bitrate_kbps, sample_rate, rate).astype(np.float64)
    max_lag = int(0.2 * sample_rate)  # far more than any codec's delay (MP3's is ~1100 samples at 44.1 kHz)
    size = 1 << int(math.ceil(math.log2(probe.size + y.size + max_lag)))
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(probe, size)), size)
    lags = np.r_[np.arange(0, max_lag), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(np.r_[corr[:max_lag], corr[-max_lag:]])])
    log.debug("%s (%s) %d kbps at %d Hz via %d Hz: delay %d samples", codec, spec.encoder, bitrate_kbps,
              sample_rate, rate, lag)
    return lag


def transcode(x, *, codec: str, bitrate_kbps: int, sample_rate: int, rate: int | None = None) -> np.ndarray:
    """Encode ``x`` with ``codec`` at ``bitrate_kbps`` and decode it back, in memory.

    x: (n,) float32 mono at ``sample_rate`` Hz.
    codec: "mp3" (libmp3lame, CBR), "aac" (ffmpeg's native AAC-LC) or
        "opus" (libopus, VBR around the rate, in Ogg).
    bitrate_kbps: mono bitrate; mp3 8-320 (at most 160 below 32 kHz, 64
        below 16 kHz), aac 16-320, opus 6-256.
    rate: the rate the codec runs at (a stream at 44.1 kHz is coded as
        such, not at our 16 kHz); None: ``codec_rate(codec, sample_rate)``.
        ffmpeg resamples to it and back.
    Returns (n,) float32, aligned with ``x`` (``codec_delay`` removed).
    Raises ``CodecUnavailable`` when ffmpeg or the encoder is missing and
    ``CodecFailed`` when ffmpeg fails.
    Cost: ~0.1 s per call (two ffmpeg processes start), more at high rates.
    """
    x = check_signal(x)
    sample_rate = check_rate(sample_rate)
    spec = _require(codec)
    rate = codec_rate(codec, sample_rate) if rate is None else check_rate(rate, "rate")
    if rate not in spec.rates:
        raise AugmentValueError(f"{codec} runs at {spec.rates} Hz, not {rate}")
    bitrate_kbps = _check_bitrate(codec, bitrate_kbps, rate)
    if x.size == 0:
        return x.copy()
    # Encoders clip at full scale: scale a hot signal down and back up so only the codec distorts it.
    peak = float(np.max(np.abs(x)))
    scale = peak / 0.9 if peak > 0.9 else 1.0
    y = _round_trip(x / np.float32(scale), codec, bitrate_kbps, sample_rate, rate) * np.float32(scale)
    delay = codec_delay(codec, bitrate_kbps, sample_rate, rate)
    y = y[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay, dtype=np.float32), y])
    if y.size >= x.size:
        return y[:x.size].copy()
    return np.concatenate([y, np.zeros(x.size - y.size, dtype=np.float32)])
