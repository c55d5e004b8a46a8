"""One random draw of edits for a training window: the cnnbin dataset's recipe.

Place in the pipeline: between the clean corpus and ``training.dataset``. The
builder cuts an excerpt of a licensed (or "wrong") track, hands it to
``random_distortion`` and computes the features of the result. Each kind of
damage is drawn with its probability from ``config.AugmentParams``; at most
one resampling edit (speed, tempo or pitch) per window, so the amounts stay
within the ranges the benchmark asks about.
"""
from __future__ import annotations

import functools
import logging
import math

import numpy as np

from ...config import AugmentParams
from .checks import (
    MAX_SEMITONES,
    AugmentError,
    AugmentValueError,
    as_signal,
    positive_int,
    ratio_in_range,
    require_generator,
)
from .codec import mp3_bitrates, mp3_roundtrip
from .mixing import add_noise, mix_music, random_crop
from .phone import phone
from .reverb import reverb
from .timescale import pitch_shift, speed_change, time_stretch

log = logging.getLogger(__name__)

#: Output peak level of ``random_distortion``, in dB re full scale. The
#: features standardise every window, so this only teaches invariance to the
#: numeric scale and keeps every sample inside [-1, 1].
PEAK_DB_RANGE = (-20.0, -1.0)



# --------------------------------------------------------------------------
# argument checks


# --------------------------------------------------------------------------
# speed, tempo, pitch


# --------------------------------------------------------------------------
# cropping, mixing, noise


# --------------------------------------------------------------------------
# filters, phone


# --------------------------------------------------------------------------
# room


# --------------------------------------------------------------------------
# codec


# --------------------------------------------------------------------------
# the training chain


@functools.lru_cache(maxsize=16)
def checked_params(params: AugmentParams) -> AugmentParams:
    for name in ("p_speed", "p_pitch", "p_stretch", "p_noise", "p_music", "p_phone", "p_reverb", "p_codec"):
        p = getattr(params, name)
        if not 0.0 <= p <= 1.0:
            raise AugmentValueError(f"AugmentParams.{name} must be a probability in [0, 1], got {p!r}")
    for name in ("speed_range", "pitch_semitones", "stretch_range", "snr_db_range"):
        lo, hi = getattr(params, name)
        if not lo <= hi:
            raise AugmentValueError(f"AugmentParams.{name} must be (low, high) with low <= high, got {(lo, hi)}")
    for name in ("speed_range", "stretch_range"):
        for v in getattr(params, name):
            ratio_in_range(v, f"AugmentParams.{name}")
    for v in params.pitch_semitones:
        if abs(v) > MAX_SEMITONES:
            raise AugmentValueError(f"AugmentParams.pitch_semitones must be within ±{MAX_SEMITONES:g}")
    return params


@functools.lru_cache(maxsize=16)
def codec_bitrates(params: AugmentParams, sample_rate: int) -> tuple[int, ...]:
    """Standard MP3 bitrates at ``sample_rate`` inside the codec range."""
    lo, hi = params.codec_kbps_range
    rates = tuple(r for r in mp3_bitrates(sample_rate) if lo <= r <= hi)
    if not rates:
        raise AugmentValueError(f"no MP3 bitrate at {sample_rate} Hz lies within {lo}-{hi} kbps; "
                                f"choose from {mp3_bitrates(sample_rate)}")
    return rates


def _crop_at_most(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random excerpt of ``length`` samples, or all of ``x`` if it is not longer."""
    return random_crop(x, length, rng) if x.size > length else x


def resampling_choice(params: AugmentParams, u: float) -> str:
    """At most one of speed / pitch / stretch, each with its own probability.

    The unit interval is split into consecutive segments of length p_speed,
    p_pitch, p_stretch; the rest means none. When the three add up to more
    than 1 they are scaled down in proportion.
    """
    probs = np.array([params.p_speed, params.p_pitch, params.p_stretch])
    total = probs.sum()
    if total > 1.0:
        probs = probs / total
    edges = np.cumsum(probs)
    for name, edge in zip(("speed", "pitch", "stretch"), edges):
        if u < edge:
            return name
    return "none"


def draw_edit(params: AugmentParams, rng: np.random.Generator) -> tuple[str, float]:
    """At most one resampling edit: ("speed" | "stretch", ratio), ("pitch", semitones) or ("none", 1.0)."""
    kind = resampling_choice(params, float(rng.random()))
    if kind == "speed":
        return kind, float(rng.uniform(*params.speed_range))
    if kind == "pitch":
        return kind, float(rng.uniform(*params.pitch_semitones))
    if kind == "stretch":
        return kind, float(rng.uniform(*params.stretch_range))
    return kind, 1.0


def apply_edit(x: np.ndarray, kind: str, value: float, *, sample_rate: int) -> np.ndarray:
    """Apply an edit from ``draw_edit``; speed and stretch change the length by 1 / value."""
    if kind == "speed":
        return speed_change(x, value, sample_rate=sample_rate)
    if kind == "pitch":
        return pitch_shift(x, value, sample_rate=sample_rate)
    if kind == "stretch":
        return time_stretch(x, value, sample_rate=sample_rate)
    return x


def add_damage(x: np.ndarray, rng: np.random.Generator, *, params: AugmentParams, sample_rate: int,
               other_music: np.ndarray | None, codec_kbps: tuple[int, ...]) -> np.ndarray:
    """Interfering music, reverb, phone, MP3 and noise, each with its own probability.

    x: (n,) float32; other_music: another track's samples (None: no music
    is mixed); codec_kbps: the MP3 bitrates to draw from (``codec_bitrates``).
    """
    n = x.size
    if rng.random() < params.p_music and other_music is not None:
        other = as_signal(other_music, "other_music")
        if other.size:
            if other.size > n:
                other = random_crop(other, n, rng)
            x = mix_music(x, other, rng.uniform(*params.snr_db_range))
    if rng.random() < params.p_reverb:
        x = reverb(x, rng, sample_rate=sample_rate)
    if rng.random() < params.p_phone:
        x = phone(x, rng, sample_rate=sample_rate)
    if rng.random() < params.p_codec:
        x = mp3_roundtrip(x, sample_rate=sample_rate, bitrate_kbps=int(rng.choice(codec_kbps)))
    if rng.random() < params.p_noise:
        color = "pink" if rng.random() < 0.5 else "white"
        x = add_noise(x, rng.uniform(*params.snr_db_range), rng, color=color)
    return x


def random_distortion(
    source,
    rng: np.random.Generator,
    *,
    params: AugmentParams,
    sample_rate: int,
    length: int,
    other_music: np.ndarray | None = None,
) -> np.ndarray:
    """One random training view of an excerpt.

    source: (m,) float32 at ``sample_rate`` Hz, ideally ~1.3 * ``length``
        samples so that speeding up or compressing tempo still fills the
        window (a shorter source is zero-padded at a random place).
    rng: the only source of randomness; the same generator state gives the
        same output.
    params: distortion probabilities and ranges.
    length: output samples (e.g. ``AudioParams.window_samples``).
    other_music: (k,) float32 of another track, used for the ``p_music``
        interference; none is mixed when it is None.
    Returns (length,) float32, finite, peak within [-1, 1].

    Chain: at most one of speed / pitch / stretch, then a random crop to
    ``length``, then interfering music, reverb, phone, MP3 (a standard
    bitrate within ``params.codec_kbps_range``),
    additive white or pink noise, each with its own probability; finally a
    random peak level (``PEAK_DB_RANGE``).
    Average cost ~6-8 ms at 16 kHz for a 40000-sample window with the
    default ``AugmentParams`` (the MP3 round trip alone costs ~16 ms when
    drawn).
    """
    x = as_signal(source, "source")
    rng = require_generator(rng)
    params = checked_params(params)
    sample_rate = positive_int(sample_rate, "sample_rate")
    length = positive_int(length, "length")
    if not np.all(np.isfinite(x)):
        raise AugmentValueError("source contains NaN or infinite samples")
    # Checked up front: a sample rate MP3 cannot carry must fail on the first
    # call, not after thousands of windows when the codec coin first lands.
    codec_kbps = codec_bitrates(params, sample_rate) if params.p_codec > 0 else ()

    # Process only what the chosen distortion will map onto the window, plus a
    # margin that keeps the vocoder's edge frames and the final crop's choice
    # of offset inside real material.
    margin = max(length // 20, 256)
    kind, value = draw_edit(params, rng)
    if kind != "none":
        need = length + margin if kind == "pitch" else int(math.ceil(length * value)) + margin
        x = apply_edit(_crop_at_most(x, need, rng), kind, value, sample_rate=sample_rate)
    x = random_crop(x, length, rng)
    x = add_damage(x, rng, params=params, sample_rate=sample_rate, other_music=other_music, codec_kbps=codec_kbps)

    peak = float(np.max(np.abs(x)))
    level = 10.0 ** (rng.uniform(*PEAK_DB_RANGE) / 20.0)
    if not math.isfinite(peak):
        raise AugmentError("a distortion produced non-finite samples")  # a bug, not bad input
    if peak < 1e-9:
        return np.zeros(length, dtype=np.float32)
    return np.clip(x * np.float32(level / peak), -1.0, 1.0).astype(np.float32, copy=False)
