"""Training-time distortions: what a query may have suffered on its way to us.

Place in the pipeline: between the clean corpus and the dataset builder. The
builder cuts an excerpt of a licensed (or "wrong") track, hands it to
``random_distortion`` and feeds the result to ``features.log_spectrogram``.
Nothing at recognition time calls this module; it only teaches the engines
what must *not* change their answer.

What we simulate, and why each piece looks the way it does:

* **Speed** (``speed_change``): a record or tape played fast or slow moves
  pitch and tempo together. That is exactly a resampling, done with soxr
  (band-limited, so no aliasing invents spectral detail).
* **Tempo** (``time_stretch``): a DJ or a karaoke app changes tempo and
  keeps pitch. A phase vocoder with identity phase locking (Laroche and
  Dolson 1999) and phase reset at drum hits does this well enough for a
  spectrogram at 32 ms hops: partials keep their frequency, their phases
  stay coherent around each spectral peak, so the result does not "phase"
  the way a plain vocoder does, and hits are not smeared into noise. It is
  fully vectorised: one FFT per frame and one cumulative sum over time, no
  Python loop over frames.
* **Pitch** (``pitch_shift``): stretch by the pitch ratio, then resample
  back to the original length; tempo is unchanged.
* **Other music, noise, room, phone, codec** (``mix_music``, ``add_noise``,
  ``reverb``, ``phone``, ``mp3_roundtrip``): a fragment recorded in a bar or
  through a phone, or uploaded as a low-bitrate MP3. Each is a cheap model
  of the physics, not a faithful emulation: the network only needs to have
  seen the *kind* of damage.

Every function is pure: it takes a float32 mono array, returns a new one and
never touches its input. Randomness only comes from an explicit
``np.random.Generator`` argument, so a dataset shard rebuilt with the same
seed is bit-identical, and worker processes never share a global RNG.
Lengths are in samples, rates in Hz, levels in dB.

Bad arguments raise ``AugmentValueError`` (both an ``AudiocopyError`` and a
``ValueError``); a libsndfile without MP3 writing raises ``CodecUnavailable``
instead of quietly skipping the codec, because a dataset silently built
without codec damage would only show up as poor accuracy on MP3 queries.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as spfft
from scipy import signal as sps

from ...config import AugmentParams
from ...errors import AudiocopyError

log = logging.getLogger(__name__)

#: Speed and tempo ratios outside [1/8, 8] are meaningless for this project
#: and would make output lengths explode; they are refused.
MAX_RATIO = 8.0
#: Pitch shifts beyond two octaves are refused for the same reason.
MAX_SEMITONES = 24.0
#: Phase vocoder frame length in seconds (rounded to a power of two in
#: samples: 1024 at 16 kHz). 64 ms resolves partials a semitone apart above
#: ~500 Hz, while a transient is smeared over at most two 32 ms feature hops.
PV_FRAME_SECONDS = 0.064
#: Output peak level of ``random_distortion``, in dB re full scale. The
#: features standardise every window, so this only teaches invariance to the
#: numeric scale and keeps every sample inside [-1, 1].
PEAK_DB_RANGE = (-20.0, -1.0)
#: Phone simulation: ranges of the band edges (Hz) and of the room noise SNR (dB).
PHONE_LOW_HZ = (200.0, 450.0)
PHONE_HIGH_HZ = (2800.0, 3800.0)
PHONE_SNR_DB = (5.0, 20.0)
#: Reverb: RT60 range in seconds (small room to a large hall).
RT60_RANGE_S = (0.2, 1.0)

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
_TWO_PI = 2.0 * np.pi


class AugmentError(AudiocopyError):
    """A distortion could not be applied."""


class AugmentValueError(AugmentError, ValueError):
    """A distortion parameter is out of range or of the wrong kind.

    Also a ``ValueError``, so that callers who validate arguments generically
    catch it like any other bad value.
    """


class CodecUnavailable(AugmentError):
    """The installed libsndfile cannot encode MP3 (it needs >= 1.1 with LAME)."""


# --------------------------------------------------------------------------
# argument checks


def _signal(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise AugmentValueError(f"{name} must be a 1-D mono signal, got shape {x.shape}")
    return x


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise AugmentValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _finite(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise AugmentValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise AugmentValueError(f"{name} must be finite, got {value!r}")
    return value


def _ratio(value, name: str) -> float:
    value = _finite(value, name)
    if not (1.0 / MAX_RATIO <= value <= MAX_RATIO):
        raise AugmentValueError(f"{name} must be in [{1 / MAX_RATIO:g}, {MAX_RATIO:g}], got {value!r}")
    return value


def _generator(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the end so that ``len(x) == length``."""
    if x.size >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - x.size, dtype=x.dtype)])


def _power(x: np.ndarray) -> float:
    # Squares summed in float64 (a float32 sum of 1e5 terms drifts ~1e-4
    # relative). Not np.dot: mixing float32 and float64 there leaves BLAS for
    # a generic loop that is ~40x slower.
    return float(np.square(x, dtype=np.float64).sum() / x.size) if x.size else 0.0


# --------------------------------------------------------------------------
# speed, tempo, pitch


def speed_change(x, factor: float, *, sample_rate: int) -> np.ndarray:
    """Play ``x`` faster or slower: pitch and tempo change together.

    x: (n,) float32 mono at ``sample_rate`` Hz.
    factor: speed ratio; 1.1 plays 10 % faster, so a 440 Hz tone becomes
        484 Hz and the output is shorter. Must lie in [1/8, 8].
    Returns (round(n / factor),) float32 at ``sample_rate``.

    A signal played ``factor`` times faster is the same samples clocked at
    ``sample_rate * factor``; resampling that back to ``sample_rate`` gives
    ``n / factor`` samples in which every frequency is multiplied by
    ``factor``.
    """
    x = _signal(x)
    factor = _ratio(factor, "factor")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    out_len = int(round(x.size / factor))
    if factor == 1.0 or x.size == 0:
        return _fit_length(x.copy(), out_len)
    import soxr  # a hard dependency, but only the augment and decode paths need it

    y = soxr.resample(x, sample_rate * factor, sample_rate, quality="HQ")
    # soxr rounds the output length its own way; callers rely on the documented one.
    return _fit_length(np.asarray(y, dtype=np.float32), out_len)


def _pv_sizes(sample_rate: int) -> tuple[int, int]:
    n_fft = 1 << max(6, int(round(math.log2(sample_rate * PV_FRAME_SECONDS))))
    return n_fft, n_fft // 4  # 75 % overlap: Hann^2 sums to a constant


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (n,) float32."""
    return (0.5 - 0.5 * np.cos(_TWO_PI * np.arange(n) / n)).astype(np.float32)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum (K, n_fft) frames placed ``hop`` apart: ((K - 1) * hop + n_fft,).

    n_fft is a multiple of hop, so each frame is R = n_fft / hop blocks and
    the whole overlap-add is R vectorised slice additions.
    """
    k, n = frames.shape
    r = n // hop
    blocks = frames.reshape(k, r, hop)
    out = np.zeros((k + r - 1, hop), dtype=np.float32)
    for j in range(r):
        out[j:j + k] += blocks[:, j]
    return out.ravel()


def _nearest_peak(mag: np.ndarray) -> np.ndarray:
    """For each (frame, bin) of mag (K, F), the bin index of the nearest
    spectral peak in that frame (the bin itself in a frame without peaks)."""
    k, f = mag.shape
    is_peak = np.zeros((k, f), dtype=bool)
    is_peak[:, 1:-1] = (mag[:, 1:-1] > mag[:, :-2]) & (mag[:, 1:-1] >= mag[:, 2:])
    itype = np.int16 if 2 * f < np.iinfo(np.int16).max else np.int32  # less memory traffic
    idx = np.arange(f, dtype=itype)
    # Sentinels a full spectrum away, so "no peak on this side" always loses.
    left = np.where(is_peak, idx, itype(-f))
    np.maximum.accumulate(left, axis=1, out=left)
    right = np.where(is_peak[:, ::-1], idx[::-1], itype(2 * f))  # built mirrored: contiguous scan
    np.minimum.accumulate(right, axis=1, out=right)
    right = right[:, ::-1]
    nearest = np.where(idx - left <= right - idx, left, right)
    return np.where((nearest < 0) | (nearest >= f), idx, nearest)


def time_stretch(x, rate: float, *, sample_rate: int) -> np.ndarray:
    """Change tempo, keep pitch (phase vocoder with identity phase locking).

    x: (n,) float32 mono at ``sample_rate`` Hz.
    rate: tempo ratio; 1.1 plays 10 % faster (output shorter), pitch is
        unchanged. Must lie in [1/8, 8].
    Returns (round(n / rate),) float32.

    Method: STFT with a ~64 ms Hann window and 75 % overlap. Output frame k
    reads the input at fractional frame ``k * rate``: magnitudes are
    interpolated between the two neighbouring input frames, and each bin's
    phase advances by its measured instantaneous frequency (a cumulative sum
    over frames, so no Python loop). Identity phase locking then replaces
    every bin's phase by that of the nearest spectral peak plus the bin's
    original offset from it, which keeps the bins of one partial coherent
    and removes most of the plain vocoder's "phasiness"; at broadband onsets
    the phases are reset to the input's, which keeps drum hits from
    smearing and cancelling. On synthetic tonal music the log-spectrogram
    error against a truly re-played version is ~2x lower than a plain
    vocoder's. Cost: ~5-7 ms per 2.5 s at 16 kHz.
    """
    x = _signal(x)
    rate = _ratio(rate, "rate")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    out_len = int(round(x.size / rate))
    if rate == 1.0 or x.size == 0 or out_len == 0:
        return _fit_length(x.copy(), out_len)

    n_fft, hop = _pv_sizes(sample_rate)
    win = _hann(n_fft)
    front = n_fft // 2  # frame k is centred on sample k * hop of the signal
    n_out = -(-out_len // hop) + n_fft // hop  # enough frames to cover out_len fully
    steps = np.arange(n_out) * rate
    n_in = int(steps[-1]) + 2  # every step needs frames floor(step) and floor(step) + 1
    padded = np.zeros((n_in - 1) * hop + n_fft, dtype=np.float32)
    m = min(x.size, padded.size - front)
    padded[front:front + m] = x[:m]

    # scipy.fft keeps float32 as complex64 and is ~7x faster here than np.fft.
    spec = spfft.rfft(sliding_window_view(padded, n_fft)[::hop] * win, axis=1)
    mag = np.abs(spec)
    phase = np.angle(spec)

    i0 = steps.astype(np.int64)
    frac = (steps - i0).astype(np.float32)[:, None]
    m0 = mag[i0]
    out_mag = m0 + frac * (mag[i0 + 1] - m0)

    # Each bin's phase advances by its expected amount over one hop (2*pi*f/R
    # for bin f, with R = n_fft / hop) plus a deviation, wrapped to [-pi, pi],
    # that measures how far the partial sits from the bin centre. Output
    # frame k's phase is that of the last reset frame r <= k (frame 0, or a
    # transient, see below) advanced by (k - r) expected steps plus the
    # deviations in between. The expected part is taken modulo 2*pi exactly in
    # integers, so everything stays small enough for float32 (the summed
    # deviations reach a few hundred radians at most).
    r = n_fft // hop
    bins = np.arange(spec.shape[1])
    omega = ((_TWO_PI / r) * bins).astype(np.float32)
    in_phase = phase[i0]
    dev = phase[i0 + 1] - in_phase - omega
    dev -= np.float32(_TWO_PI) * np.round(dev * np.float32(1.0 / _TWO_PI))
    summed = np.empty(out_mag.shape, dtype=np.float32)
    summed[0] = 0.0
    np.cumsum(dev[:-1], axis=0, out=summed[1:])

    # Phase reset at transients: a vocoder smears a drum hit over a window
    # and, worse, its bins drift apart in phase so the hit may nearly cancel.
    # Where more than half of the bins at least double against the previous
    # input frame (a broadband onset, not a new note), the output takes the
    # input phases as they are, which rebuilds the hit coherently.
    audible = mag[1:] > np.float32(1e-3) * mag.max()
    onset = np.ones(mag.shape[0], dtype=bool)
    onset[1:] = ((mag[1:] > 2.0 * mag[:-1]) & audible).mean(axis=1) > 0.5
    onsets_so_far = np.cumsum(onset)
    k = np.arange(n_out)
    reset = np.ones(n_out, dtype=bool)
    reset[1:] = onsets_so_far[i0[1:]] > onsets_so_far[i0[:-1]]  # an onset was read since the last frame
    last = np.maximum.accumulate(np.where(reset, k, 0))
    # (k - last) expected steps of bin f are (k - last) * f / R turns, which
    # modulo one turn depends only on (k - last) mod R: a table of R rows.
    expected = ((np.arange(r)[:, None] * bins) % r).astype(np.float32) * np.float32(_TWO_PI / r)
    acc = summed - summed[last]
    acc += expected[(k - last) % r]
    acc += in_phase[last]

    # Identity phase locking: bin f takes the accumulated phase of its
    # nearest peak p plus its own analysis offset from that peak,
    # phase_in[f] - phase_in[p], so a partial's bins rotate together.
    peak = _nearest_peak(out_mag)
    locked = in_phase + np.take_along_axis(acc - in_phase, peak, axis=1)
    out = np.empty(out_mag.shape, dtype=np.complex64)  # float32 cos/sin: ~50x cheaper than complex exp
    out.real = out_mag * np.cos(locked)
    out.imag = out_mag * np.sin(locked)

    frames = spfft.irfft(out, n=n_fft, axis=1)
    frames *= win
    y = _overlap_add(frames, hop)
    wss = _overlap_add(np.broadcast_to(win * win, frames.shape), hop)
    y = y[front:front + out_len] / np.maximum(wss[front:front + out_len], 1e-3)
    return _fit_length(y.astype(np.float32, copy=False), out_len)


def pitch_shift(x, semitones: float, *, sample_rate: int) -> np.ndarray:
    """Change pitch by ``semitones``, keep tempo and length.

    x: (n,) float32 mono at ``sample_rate`` Hz.
    semitones: shift in equal-tempered semitones (+1 turns 440 Hz into
        466.2 Hz); |semitones| <= 24.
    Returns (n,) float32.

    A pitch ratio r = 2**(semitones/12) is a time stretch to r times the
    length followed by playing it r times faster: the stretch keeps the
    pitch, the speed change multiplies it by r and restores the length.
    """
    x = _signal(x)
    semitones = _finite(semitones, "semitones")
    if abs(semitones) > MAX_SEMITONES:
        raise AugmentValueError(f"semitones must be within ±{MAX_SEMITONES:g}, got {semitones!r}")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    if semitones == 0.0 or x.size == 0:
        return x.copy()
    ratio = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(x, 1.0 / ratio, sample_rate=sample_rate)
    return _fit_length(speed_change(stretched, ratio, sample_rate=sample_rate), x.size)


# --------------------------------------------------------------------------
# cropping, mixing, noise


def random_crop(x, length: int, rng: np.random.Generator) -> np.ndarray:
    """An excerpt of exactly ``length`` samples at a random offset.

    x: (n,) float32. length: output samples (> 0).
    Returns (length,) float32, a copy. When n < length the whole signal is
    placed at a random offset inside zeros, so short sources still teach the
    network about windows that start or end in silence.
    """
    x = _signal(x)
    length = _positive_int(length, "length")
    rng = _generator(rng)
    if x.size >= length:
        start = int(rng.integers(0, x.size - length + 1))
        return x[start:start + length].copy()
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - x.size + 1))
    out[start:start + x.size] = x
    return out


def _scaled_to_snr(x: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + g * other`` with g chosen so that power(x) / power(g * other) = snr_db."""
    px, po = _power(x), _power(other)
    if px == 0.0 or po == 0.0:
        return x.copy()  # nothing to be relative to, or nothing to add
    gain = math.sqrt(px / (po * 10.0 ** (snr_db / 10.0)))
    return (x + np.float32(gain) * other).astype(np.float32, copy=False)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float32 noise with power density ~ 1/f (-3 dB per octave), unit power.

    White Gaussian noise shaped in the frequency domain by 1/sqrt(f); the
    DC bin is zeroed. Room, traffic and crowd noise are much closer to this
    than to white noise, which over-weights the treble.
    """
    n = _positive_int(n, "n")
    rng = _generator(rng)
    spec = spfft.rfft(rng.standard_normal(n, dtype=np.float32))
    k = np.arange(spec.size, dtype=np.float32)
    k[0] = np.inf
    y = spfft.irfft(spec / np.sqrt(k), n=n).astype(np.float32, copy=False)
    p = _power(y)
    return y / np.float32(math.sqrt(p)) if p > 0 else y


def add_noise(x, snr_db: float, rng: np.random.Generator, *, color: str = "white") -> np.ndarray:
    """Add Gaussian noise at ``snr_db`` dB below the signal's mean power.

    x: (n,) float32. snr_db: signal-to-noise ratio in dB (may be negative).
    color: "white" (flat spectrum) or "pink" (-3 dB per octave).
    Returns (n,) float32. A silent input is returned unchanged, since an SNR
    relative to zero power asks for zero noise.
    """
    x = _signal(x)
    snr_db = _finite(snr_db, "snr_db")
    rng = _generator(rng)
    if color == "white":
        noise = rng.standard_normal(x.size, dtype=np.float32) if x.size else x
    elif color == "pink":
        noise = pink_noise(x.size, rng) if x.size else x
    else:
        raise AugmentValueError(f"color must be 'white' or 'pink', got {color!r}")
    return _scaled_to_snr(x, noise, snr_db)


def mix_music(x, other, snr_db: float) -> np.ndarray:
    """Mix another piece of music under ``x`` at ``snr_db`` dB.

    x: (n,) float32, the track that must still be recognised.
    other: (m,) float32, the interfering music; its first n samples are used,
        repeated end to end when m < n (crop it at random beforehand for
        variety).
    Returns (n,) float32. A silent ``other`` leaves ``x`` unchanged.
    """
    x = _signal(x)
    other = _signal(other, "other")
    snr_db = _finite(snr_db, "snr_db")
    if other.size == 0:
        raise AugmentValueError("other must contain at least one sample")
    return _scaled_to_snr(x, np.resize(other, x.size), snr_db)


# --------------------------------------------------------------------------
# filters, phone


def _check_band(low_hz: float, high_hz: float, sample_rate: int) -> tuple[float, float]:
    low_hz, high_hz = _finite(low_hz, "low_hz"), _finite(high_hz, "high_hz")
    if not 0.0 < low_hz < high_hz < sample_rate / 2.0:
        raise AugmentValueError(f"need 0 < low_hz < high_hz < Nyquist ({sample_rate / 2.0:g} Hz), "
                                f"got {low_hz:g} and {high_hz:g}")
    return low_hz, high_hz


def bandpass(x, low_hz: float, high_hz: float, *, sample_rate: int, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass.

    x: (n,) float32 at ``sample_rate`` Hz. low_hz, high_hz: -3 dB edges of
    one pass, 0 < low < high < sample_rate / 2. order: Butterworth order of
    the low-pass prototype (the filter is applied forward and backward, so
    the stop-band slope is 2 * order * 6 dB per octave and there is no
    phase shift: the output stays time-aligned with the input).
    Returns (n,) float32.
    """
    x = _signal(x)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    order = _positive_int(order, "order")
    low_hz, high_hz = _check_band(low_hz, high_hz, sample_rate)
    if x.size == 0:
        return x.copy()
    sos = sps.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    # sosfiltfilt pads with reflected signal; shorter inputs must skip the padding.
    padlen = min(3 * (2 * len(sos) + 1), x.size - 1)
    return sps.sosfiltfilt(sos, x, padlen=padlen).astype(np.float32)


def _peaking_sos(f0: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook peaking EQ biquad as one (1, 6) SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = _TWO_PI * f0 / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    c = math.cos(w0)
    b = [1 + alpha * a, -2 * c, 1 - alpha * a]
    den = [1 + alpha / a, -2 * c, 1 - alpha / a]
    return np.array([b + den]) / den[0]


def _high_shelf_sos(f0: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook high shelf (slope 1) biquad: a spectral tilt around f0."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = _TWO_PI * f0 / sample_rate
    c = math.cos(w0)
    beta = 2.0 * math.sqrt(a) * math.sin(w0) / 2.0 * math.sqrt(2.0)
    b = [a * ((a + 1) + (a - 1) * c + beta), -2 * a * ((a - 1) + (a + 1) * c),
         a * ((a + 1) + (a - 1) * c - beta)]
    den = [(a + 1) - (a - 1) * c + beta, 2 * ((a - 1) - (a + 1) * c), (a + 1) - (a - 1) * c - beta]
    return np.array([b + den]) / den[0]


def phone(x, rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Simulate music captured by a phone microphone in a noisy room.

    x: (n,) float32 at ``sample_rate`` Hz (at least 8 kHz).
    Returns (n,) float32 with the input's peak level.

    Chain, in physical order:
    1. pink room noise at 5-20 dB SNR (it reaches the microphone through the
       same air as the music, so it is filtered with it below);
    2. the voice band of a phone: a 4th-order Butterworth band-pass with
       random edges (low 200-450 Hz, high 2.8-3.8 kHz), a random treble
       tilt (high shelf at 1-2 kHz, ±6 dB) and one or two random resonances
       (peaking EQ, 400-3000 Hz, -6 to +8 dB), the uneven response of small
       capsules and cases; filtered causally, as a real microphone is;
    3. soft clipping (tanh, 0-12 dB drive): the automatic gain control and
       a cheap preamp overdriven by loud music.
    """
    x = _signal(x)
    rng = _generator(rng)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    if sample_rate < 8000:
        raise AugmentValueError(f"phone needs sample_rate >= 8000 Hz, got {sample_rate}")
    if x.size == 0:
        return x.copy()
    nyquist = sample_rate / 2.0
    low = rng.uniform(*PHONE_LOW_HZ)
    high = min(rng.uniform(*PHONE_HIGH_HZ), 0.9 * nyquist)
    sections = [sps.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos"),
                _high_shelf_sos(rng.uniform(1000.0, 2000.0), rng.uniform(-6.0, 6.0), sample_rate)]
    for _ in range(int(rng.integers(1, 3))):
        f0 = math.exp(rng.uniform(math.log(400.0), math.log(3000.0)))
        sections.append(_peaking_sos(f0, rng.uniform(-6.0, 8.0), rng.uniform(0.7, 3.0), sample_rate))
    snr_db = rng.uniform(*PHONE_SNR_DB)
    drive = 10.0 ** (rng.uniform(0.0, 12.0) / 20.0)

    y = add_noise(x, snr_db, rng, color="pink")
    y = sps.sosfilt(np.concatenate(sections), y).astype(np.float32)
    peak_in, peak = float(np.max(np.abs(x))), float(np.max(np.abs(y)))
    if peak == 0.0 or peak_in == 0.0:
        return np.zeros_like(x)
    y = np.tanh(np.float32(drive / peak) * y) * np.float32(peak_in / math.tanh(drive))
    return y.astype(np.float32, copy=False)


# --------------------------------------------------------------------------
# room


def room_impulse_response(rng: np.random.Generator, *, sample_rate: int, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response without the direct path, unit energy.

    Returns (round(rt60_s * sample_rate),) float32: 3-10 sparse early
    reflections in the first 2-50 ms, then a Gaussian-noise tail from a
    5-20 ms pre-delay whose amplitude falls 60 dB in ``rt60_s`` seconds.
    The tail's treble (above a random 1.5-4 kHz) decays 1.5-3x faster than
    its bass, the way walls and air absorb high frequencies first.
    """
    rng = _generator(rng)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    rt60_s = _finite(rt60_s, "rt60_s")
    if not 0.01 <= rt60_s <= 10.0:
        raise AugmentValueError(f"rt60_s must be within [0.01, 10] s, got {rt60_s!r}")
    n = max(2, int(round(rt60_s * sample_rate)))
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)
    decay = np.float32(3.0 * math.log(10.0))  # 60 dB in amplitude is a factor 10**3

    noise = rng.standard_normal(n, dtype=np.float32)
    # One-pole low-pass splits the tail into bass and treble with separate decays.
    cutoff = rng.uniform(1500.0, min(4000.0, 0.4 * sample_rate))
    pole = math.exp(-_TWO_PI * cutoff / sample_rate)
    bass = sps.lfilter([1.0 - pole], [1.0, -pole], noise).astype(np.float32)
    treble = noise - bass
    treble_rt60 = rt60_s / rng.uniform(1.5, 3.0)
    tail = bass * np.exp(-decay * t / np.float32(rt60_s)) + treble * np.exp(-decay * t / np.float32(treble_rt60))
    predelay = max(1, int(rng.uniform(0.005, 0.020) * sample_rate))
    tail[:predelay] *= np.linspace(0.0, 1.0, predelay, dtype=np.float32)  # build-up, not a step

    ir = tail
    n_early = int(rng.integers(3, 11))
    where = (rng.uniform(0.002, 0.050, n_early) * sample_rate).astype(np.int64)
    where = where[where < n]
    gains = rng.uniform(0.2, 0.7, where.size) * rng.choice([-1.0, 1.0], where.size)
    gains *= np.exp(-decay * where / (rt60_s * sample_rate))
    # Scaled to the tail's energy: together the reflections carry a third of
    # it or so, audible as distinct echoes but not dominating the decay.
    np.add.at(ir, where, (gains * math.sqrt(_power(tail) * n / 4.0)).astype(np.float32))
    energy = _power(ir) * ir.size
    return (ir / np.float32(math.sqrt(energy))).astype(np.float32)


def reverb(x, rng: np.random.Generator, *, sample_rate: int, rt60_s: float | None = None,
           wet: float | None = None) -> np.ndarray:
    """Convolve ``x`` with a synthetic room and mix it with the dry sound.

    x: (n,) float32 at ``sample_rate`` Hz.
    rt60_s: reverberation time in seconds; drawn from 0.2-1.0 s when None.
    wet: share of the reverberant sound in [0, 1]; drawn from 0.2-0.7 when
        None (the microphone is at some distance, neither at the speaker
        nor deep in the diffuse field).
    Returns (n,) float32: ``(1 - wet) * x + wet * (x * h)`` truncated to n
    samples, h being ``room_impulse_response`` (unit energy, so the wet part
    has about the input's power).
    """
    x = _signal(x)
    rng = _generator(rng)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    rt60 = rng.uniform(*RT60_RANGE_S) if rt60_s is None else _finite(rt60_s, "rt60_s")
    wet = rng.uniform(0.2, 0.7) if wet is None else _finite(wet, "wet")
    if not 0.0 <= wet <= 1.0:
        raise AugmentValueError(f"wet must be within [0, 1], got {wet!r}")
    ir = room_impulse_response(rng, sample_rate=sample_rate, rt60_s=rt60)
    if x.size == 0:
        return x.copy()
    tail = sps.fftconvolve(x, ir)[:x.size]
    return ((1.0 - wet) * x + wet * tail).astype(np.float32)


# --------------------------------------------------------------------------
# codec


@functools.lru_cache(maxsize=1)
def mp3_available() -> bool:
    """True when the installed libsndfile can write MP3 (libsndfile >= 1.1 built with LAME)."""
    try:
        import soundfile as sf

        return "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")
    except Exception as exc:  # an unloadable libsndfile is the same answer
        log.debug("soundfile/libsndfile unavailable: %s", exc)
        return False


def _mp3_bitrates(sample_rate: int) -> tuple[int, ...]:
    if sample_rate not in _MP3_RATES:
        raise AugmentValueError(f"MP3 cannot carry {sample_rate} Hz; resample to one of "
                                f"{sorted(_MP3_RATES)} first")
    return _MP3_RATES[sample_rate]


def _mp3_encode_decode(x: np.ndarray, sample_rate: int, bitrate_kbps: int) -> np.ndarray:
    import soundfile as sf

    rates = _mp3_bitrates(sample_rate)
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
    x = _signal(x)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    bitrate_kbps = _positive_int(bitrate_kbps, "bitrate_kbps")
    rates = _mp3_bitrates(sample_rate)
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
    return _fit_length(y.astype(np.float32, copy=False), x.size)


# --------------------------------------------------------------------------
# the training chain


@functools.lru_cache(maxsize=16)
def _checked(params: AugmentParams) -> AugmentParams:
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
            _ratio(v, f"AugmentParams.{name}")
    for v in params.pitch_semitones:
        if abs(v) > MAX_SEMITONES:
            raise AugmentValueError(f"AugmentParams.pitch_semitones must be within ±{MAX_SEMITONES:g}")
    return params


@functools.lru_cache(maxsize=16)
def _codec_bitrates(params: AugmentParams, sample_rate: int) -> tuple[int, ...]:
    """Standard MP3 bitrates at ``sample_rate`` inside the codec range."""
    lo, hi = params.codec_kbps_range
    rates = tuple(r for r in _mp3_bitrates(sample_rate) if lo <= r <= hi)
    if not rates:
        raise AugmentValueError(f"no MP3 bitrate at {sample_rate} Hz lies within {lo}-{hi} kbps; "
                                f"choose from {_mp3_bitrates(sample_rate)}")
    return rates


def _crop_at_most(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random excerpt of ``length`` samples, or all of ``x`` if it is not longer."""
    return random_crop(x, length, rng) if x.size > length else x


def _resampling_choice(params: AugmentParams, u: float) -> str:
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
    x = _signal(source, "source")
    rng = _generator(rng)
    params = _checked(params)
    sample_rate = _positive_int(sample_rate, "sample_rate")
    length = _positive_int(length, "length")
    if not np.all(np.isfinite(x)):
        raise AugmentValueError("source contains NaN or infinite samples")
    # Checked up front: a sample rate MP3 cannot carry must fail on the first
    # call, not after thousands of windows when the codec coin first lands.
    codec_kbps = _codec_bitrates(params, sample_rate) if params.p_codec > 0 else ()

    # Process only what the chosen distortion will map onto the window, plus a
    # margin that keeps the vocoder's edge frames and the final crop's choice
    # of offset inside real material.
    margin = max(length // 20, 256)
    kind = _resampling_choice(params, float(rng.random()))
    if kind == "speed":
        factor = rng.uniform(*params.speed_range)
        x = _crop_at_most(x, int(math.ceil(length * factor)) + margin, rng)
        x = speed_change(x, factor, sample_rate=sample_rate)
    elif kind == "pitch":
        semitones = rng.uniform(*params.pitch_semitones)
        x = _crop_at_most(x, length + margin, rng)
        x = pitch_shift(x, semitones, sample_rate=sample_rate)
    elif kind == "stretch":
        rate = rng.uniform(*params.stretch_range)
        x = _crop_at_most(x, int(math.ceil(length * rate)) + margin, rng)
        x = time_stretch(x, rate, sample_rate=sample_rate)
    x = random_crop(x, length, rng)

    if rng.random() < params.p_music and other_music is not None:
        other = _signal(other_music, "other_music")
        if other.size:
            if other.size > length:
                other = random_crop(other, length, rng)
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

    peak = float(np.max(np.abs(x)))
    level = 10.0 ** (rng.uniform(*PEAK_DB_RANGE) / 20.0)
    if not math.isfinite(peak):
        raise AugmentError("a distortion produced non-finite samples")  # a bug, not bad input
    if peak < 1e-9:
        return np.zeros(length, dtype=np.float32)
    return np.clip(x * np.float32(level / peak), -1.0, 1.0).astype(np.float32, copy=False)
