"""The augment package's errors and argument checks.

Place in the pipeline: under every distortion module. Bad arguments raise
``AugmentValueError`` (both an ``AudiocopyError`` and a ``ValueError``) with
the name of the argument and what is expected; a missing codec raises
``CodecUnavailable``. Integer arrays are refused rather than converted where
a function needs float samples: int16 PCM taken as float would be 32768 times
too loud, a bug better caught here.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ...errors import AudiocopyError

#: Speed and tempo ratios outside [1/8, 8] are meaningless for this project
#: and would make output lengths explode; they are refused.
MAX_RATIO = 8.0


#: Pitch shifts beyond two octaves are refused for the same reason.
MAX_SEMITONES = 24.0


class AugmentError(AudiocopyError):
    """A distortion could not be applied."""


class AugmentValueError(AugmentError, ValueError):
    """A distortion parameter is out of range or of the wrong kind.

    Also a ``ValueError``, so that callers who validate arguments generically
    catch it like any other bad value.
    """


class CodecUnavailable(AugmentError):
    """A codec cannot be used here: libsndfile without MP3 writing (it needs >= 1.1
    with LAME), or ffmpeg or one of its encoders missing."""


def as_signal(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise AugmentValueError(f"{name} must be a 1-D mono signal, got shape {x.shape}")
    return x


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise AugmentValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def finite(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise AugmentValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise AugmentValueError(f"{name} must be finite, got {value!r}")
    return value


def ratio_in_range(value, name: str) -> float:
    value = finite(value, name)
    if not (1.0 / MAX_RATIO <= value <= MAX_RATIO):
        raise AugmentValueError(f"{name} must be in [{1 / MAX_RATIO:g}, {MAX_RATIO:g}], got {value!r}")
    return value


def require_generator(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the end so that ``len(x) == length``."""
    if x.size >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - x.size, dtype=x.dtype)])


def mean_power(x: np.ndarray) -> float:
    # Squares summed in float64 (a float32 sum of 1e5 terms drifts ~1e-4
    # relative). Not np.dot: mixing float32 and float64 there leaves BLAS for
    # a generic loop that is ~40x slower.
    return float(np.square(x, dtype=np.float64).sum() / x.size) if x.size else 0.0


def check_signal(x, name: str = "x") -> np.ndarray:
    """``x`` as a finite 1-D float32 array, or ``AugmentValueError``.

    Integer arrays are refused rather than converted: int16 PCM taken as
    float would be 32768 times too loud, a bug better caught here.
    """
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise AugmentValueError(f"{name} must hold floating-point samples (float32 in [-1, 1]), got dtype "
                                  f"{arr.dtype}; scale integer PCM first, e.g. x / 32768.0")
    if arr.ndim != 1:
        raise AugmentValueError(f"{name} must be a 1-D mono signal, got shape {arr.shape}; mix channels down first")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise AugmentValueError(f"{name} contains NaN or infinite samples")
    return arr


def check_rate(sample_rate, name: str = "sample_rate", minimum: int = 8000) -> int:
    """``sample_rate`` as an int of at least ``minimum`` Hz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise AugmentValueError(f"{name} must be an integer number of Hz, got {sample_rate!r}")
    if sample_rate < minimum:
        raise AugmentValueError(f"{name} must be at least {minimum} Hz, got {sample_rate}")
    return int(sample_rate)


def check_count(value, name: str, minimum: int = 0) -> int:
    """``value`` as an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AugmentValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(value, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """``value`` as a finite float within [lo, hi]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AugmentValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise AugmentValueError(f"{name} must be finite and within [{lo:g}, {hi:g}], got {value!r}")
    return v


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise AugmentValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                                  f"got {type(rng).__name__}")
    return rng
