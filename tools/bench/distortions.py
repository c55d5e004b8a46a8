"""NumPy pieces of the distortions, and the dispatch from a condition to the tool that makes it.

Place in ``tools/bench``: called by ``queries.make_query`` once per query
file, with the query's own seeded generator. Every effect with a standard
tool is made by that tool (``external``: sox for speed, tempo, pitch,
reverb and filters, ffmpeg/lame for MP3, espeak-ng for speech). Only noise
generation and mixing at an exact signal-to-noise ratio are done here: an
SNR is a ratio of mean powers, nothing a tool does better.

The legacy conditions are made exactly as the pre-restructure benchmark
made them (same order of random draws), so ``--legacy`` rebuilds its
query files bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .conditions import Condition
from .external import Tools, mp3_roundtrip, sox_effect

#: Audio before the fragment fed to a reverb, so the fragment starts with a
#: room already ringing, as a real recording would (seconds).
PREROLL_SECONDS = 0.5
#: Peak level handed to sox: it works in fixed point, so leave headroom that its effects never clip.
SOX_PEAK = 0.3
#: Peak level of a written query.
QUERY_PEAK = 0.9


def read_segment(wav: str, start_s: float, seconds: float) -> tuple[np.ndarray, int]:
    """(mono float32 excerpt, rate) of a WAV file from ``start_s`` for ``seconds``, read without decoding the rest."""
    import soundfile as sf

    info = sf.info(wav)
    start = int(round(start_s * info.samplerate))
    frames = int(round(seconds * info.samplerate))
    data, rate = sf.read(wav, start=start, frames=frames, dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def fit_length(signal: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Crop or zero-pad to exactly ``n`` samples; also returns how many were padded."""
    if signal.size >= n:
        return signal[:n], 0
    return np.concatenate([signal, np.zeros(n - signal.size, np.float32)]), n - signal.size


def peak_normalise(signal: np.ndarray, peak: float) -> np.ndarray:
    """Scale to the given peak. Features are level-invariant, so only headroom changes."""
    m = float(np.max(np.abs(signal))) if signal.size else 0.0
    return signal if m == 0 else (signal * (peak / m)).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that the mean power ratio signal/noise is ``snr_db`` (same lengths)."""
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_signal == 0 or p_noise == 0:
        return signal
    gain = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    return (signal + gain * noise).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (1: pink, -3 dB/octave; 2: brown, -6 dB/octave)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # no infinite DC gain
    return np.fft.irfft(spectrum / f ** (exponent / 2), n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum (-3 dB per octave)."""
    return coloured_noise(n, rng, 1.0)


@dataclass(frozen=True)
class Inputs:
    """What a distortion may need besides the fragment.

    other: the background music of the "music" condition (same rate), or
    None; speech: the speech pool (``room.SpeechPool``) of the speech and
    room conditions, or None; tmp_dir: scratch space for codecs.
    """

    other: np.ndarray | None
    speech: object | None
    tmp_dir: Path


def distort(cond: Condition, x: np.ndarray, rate: int, rng: np.random.Generator, tools: Tools,
            inputs: Inputs) -> tuple[np.ndarray, dict]:
    """The distorted fragment and the random parameters drawn for it.

    x: (n,) float32 at ``rate``, peak ``SOX_PEAK``, ``PREROLL_SECONDS`` longer
    at the front for conditions with ``cond.preroll`` (removed here), and
    ``cond.source_factor`` times the query length otherwise. rng: the query's
    own generator. Returns (y, params); y may be a few samples off the
    query length (the caller crops or pads).
    """
    from . import room

    if cond.kind == "clean":
        return x, {}
    if cond.kind == "noise":
        return mix_at_snr(x, rng.standard_normal(x.size).astype(np.float32), cond.value), {}
    if cond.kind == "music":
        return mix_at_snr(x, fit_length(inputs.other, x.size)[0], cond.value), {}
    if cond.kind == "speech":
        return room.speech_over(x, rate, rng, inputs.speech, cond.value)
    if cond.kind == "speed":  # resampling: pitch and tempo change together
        return sox_effect(tools, x, rate, ["speed", f"{cond.value:g}"]), {}
    if cond.kind == "tempo":  # time stretch, pitch kept (WSOLA)
        return sox_effect(tools, x, rate, ["tempo", f"{cond.value:g}"]), {}
    if cond.kind == "pitch":  # pitch shift, tempo kept; sox takes cents
        return sox_effect(tools, x, rate, ["pitch", f"{100 * cond.value:g}"]), {}
    if cond.kind == "mp3":
        return mp3_roundtrip(tools, x, rate, int(cond.value), inputs.tmp_dir), {}
    if cond.kind == "phone":
        return phone(x, rate, rng, tools, cond.value), {}
    if cond.kind == "room":
        return room.room_chain(x, rate, rng, tools, inputs.speech)
    raise ValueError(f"unknown condition kind {cond.kind!r}")


def phone(x: np.ndarray, rate: int, rng: np.random.Generator, tools: Tools, snr_db: float) -> np.ndarray:
    """A phone held up in a room (the pre-restructure chain, unchanged).

    The room's reverb, room noise at the microphone (pink, SNR measured
    there, before the line), then the telephone band 300-3400 Hz.
    """
    y = sox_effect(tools, x, rate, ["reverb", "50", "50", "60"])
    y = y[int(round(PREROLL_SECONDS * rate)):]
    y = mix_at_snr(y, pink_noise(y.size, rng), snr_db)
    return sox_effect(tools, peak_normalise(y, SOX_PEAK), rate, ["sinc", "300-3400"])
