"""Low-bitrate MP3 through libsndfile, aligned with its input.

Place in the pipeline: training distortions (see the package docstring).
libsndfile (>= 1.1, with LAME) encodes and decodes in memory, so no
subprocess runs per window; the encoder's delay is measured once per rate
and removed, so the distorted window still lines up with its labels. At
16 kHz each kbit/s covers 8 kHz of bandwidth, so the damage worth learning
is at low rates (see ``config.AugmentParams.codec_kbps_range``). Other
codecs (AAC, Opus) go through ffmpeg in ``transcode``.
"""
from __future__ import annotations

import functools
import io
import logging
import math

import numpy as np

from .checks import AugmentError, AugmentValueError, CodecUnavailable, as_signal, fit_length, positive_int

log = logging.getLogger(__name__)

# Standard MPEG audio layer III bitrates (kbps) for each sample-rate family.
# LAME snaps any requested rate to the nearest one of these.
_MP3_MPEG1 = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


_MP3_MPEG2 = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


_MP3_MPEG25 = (8, 16, 24, 32, 40, 48, 56, 64)


_MP3_RATES = {
    32000: _MP3_MPEG1, 44100: _MP3_MPEG1, 48000: _MP3_MPEG1,
    16000: _MP3_MPEG2, 22050: _MP3_MPEG2, 24000: _MP3_MPEG2,
    8000: _MP3_MPEG25, 11025: _MP3_MPEG25, 12000: _MP3_MPEG25,
}


@functools.lru_cache(maxsize=1)
def mp3_available() -> bool:
    """True when the installed libsndfile can write MP3 (libsndfile >= 1.1 built with LAME)."""
    try:
        import soundfile as sf

        return "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")
    except Exception as exc:  # an unloadable libsndfile is the same answer
        log.debug("soundfile/libsndfile unavailable: %s", exc)
        return False


def mp3_bitrates(sample_rate: int) -> tuple[int, ...]:
    if sample_rate not in _MP3_RATES:
        raise AugmentValueError(f"MP3 cannot carry {sample_rate} Hz; resample to one of "
                                f"{sorted(_MP3_RATES)} first")
    return _MP3_RATES[sample_rate]


def _mp3_encode_decode(x: np.ndarray, sample_rate: int, bitrate_kbps: int) -> np.ndarray:
    import soundfile as sf

    rates = mp3_bitrates(sample_rate)
    lo, hi = (32, 320) if sample_rate >= 32000 else (8, 160) if sample_rate >= 16000 else (8, 64)
    # libsndfile maps compression_level c to int(hi - c * (hi - lo)) kbps
    # (truncating), and LAME snaps that to the nearest standard bitrate.
    # Aim half a kbps above the target so truncation lands on it. The
    # family's lowest rate is reached by asking for one above it, because
    # libsndfile refuses c == 1.
    want = max(bitrate_kbps, rates[0] + 1) + 0.5
    level = min(max((hi - want) / (hi - lo), 0.0), 1.0)
    buf = io.BytesIO()
    try:
        sf.write(buf, x, sample_rate, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=level, bitrate_mode="CONSTANT")
        buf.seek(0)
        y, rate = sf.read(buf, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AugmentError(f"MP3 round trip at {bitrate_kbps} kbps, {sample_rate} Hz failed: {exc}") from exc
    if rate != sample_rate:
        raise AugmentError(f"MP3 decoder returned {rate} Hz instead of {sample_rate} Hz")
    return y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]


@functools.lru_cache(maxsize=64)
def mp3_delay(sample_rate: int, bitrate_kbps: int) -> int:
    """Samples by which a decoded MP3 lags its input, for one encoder setting.

    When LAME has room for its gapless "LAME tag" (bitrates of about 40 kbps
    and up at 16 kHz), the decoder trims encoder delay and padding itself and
    this is 0; in the smallest frames the tag does not fit and the decoded
    stream starts late by the encoder plus decoder delay (1105 samples).
    Rather than hard-code LAME internals, measure it once per setting by
    cross-correlating a white-noise probe (whose autocorrelation is a single
    spike, so the lag is unambiguous, unlike on periodic music).
    """
    probe = np.random.default_rng(12345).uniform(-0.5, 0.5, sample_rate).astype(np.float32)
    y = _mp3_encode_decode(probe, sample_rate, bitrate_kbps)
    max_lag = min(y.size, 4 * 1152 + 1)
    size = 1 << int(math.ceil(math.log2(probe.size + y.size)))
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(probe, size)), size)
    lag = int(np.argmax(corr[:max_lag]))
    log.debug("MP3 %d Hz %d kbps: decoded %d of %d samples, delay %d", sample_rate, bitrate_kbps,
              y.size, probe.size, lag)
    return lag


def mp3_roundtrip(x, *, sample_rate: int, bitrate_kbps: int) -> np.ndarray:
    """Encode ``x`` to constant-bitrate MP3 in memory and decode it back.

    x: (n,) float32 at ``sample_rate`` Hz, which must be an MP3 rate (8000,
        11025, 12000, 16000, 22050, 24000, 32000, 44100 or 48000).
    bitrate_kbps: mono bitrate; LAME uses the nearest standard rate
        (at 16 kHz: 8-160 kbps; at 44.1/48 kHz: 32-320 kbps).
    Returns (n,) float32, time-aligned with ``x`` (encoder delay removed,
    see ``mp3_delay``).
    Raises ``CodecUnavailable`` when libsndfile cannot write MP3.

    Cost: LAME dominates, about 3.5 ms + 0.3 ms per 1000 samples
    (~15 ms for 2.5 s at 16 kHz).
    """
    x = as_signal(x)
    sample_rate = positive_int(sample_rate, "sample_rate")
    bitrate_kbps = positive_int(bitrate_kbps, "bitrate_kbps")
    rates = mp3_bitrates(sample_rate)
    if not rates[0] <= bitrate_kbps <= rates[-1]:
        raise AugmentValueError(f"bitrate_kbps must be within {rates[0]}-{rates[-1]} at "
                                f"{sample_rate} Hz, got {bitrate_kbps}")
    if not mp3_available():
        raise CodecUnavailable("this libsndfile cannot write MP3; install libsndfile >= 1.1 built "
                               "with LAME and mpg123 (e.g. soundfile >= 0.12 wheels)")
    if x.size == 0:
        return x.copy()
    # The encoder clips at full scale; scale down and back up so a hot mix
    # is distorted by the codec only.
    peak = float(np.max(np.abs(x)))
    scale = peak / 0.98 if peak > 0.98 else 1.0
    y = _mp3_encode_decode(x / np.float32(scale), sample_rate, bitrate_kbps)
    y = y[mp3_delay(sample_rate, bitrate_kbps):] * np.float32(scale)
    return fit_length(y.astype(np.float32, copy=False), x.size)
