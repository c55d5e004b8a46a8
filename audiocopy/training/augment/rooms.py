"""Room impulse responses: the air between a loudspeaker and a microphone.

Place in the pipeline: a training and benchmark distortion, one stage of an
``chain.AcousticChain`` (speaker -> room -> microphone -> capture). It turns
clean music into what a microphone across a room hears; nothing at serve
time runs it. This module also holds the argument checks and error classes
that the other acoustic modules (devices, ambience, transcode, chain) share.

The physics, and why this model is built the way it is:

* **Reverberation time.** Sound energy in a room decays exponentially once
  the source stops; RT60 is the time it takes to fall by 60 dB. Sabine's
  formula T = 0.161 V / (S a) (volume V in m^3, wall area S in m^2, mean
  absorption a) holds for nearly reflective rooms; Eyring's
  T = 0.161 V / (-S ln(1 - a)) also holds for absorbent ones, because it
  counts how much energy survives each reflection, (1 - a), and how often
  a ray reflects, c S / (4 V) times per second. We invert Eyring: given a
  target RT60 the walls get the absorption that produces it.
* **Frequency dependence.** Absorption is given per octave band (125 Hz to
  8 kHz). Its shape is kept, and its level is scaled so that the mid-band
  RT60 (the mean over the 500 Hz and 1 kHz octaves, as in ISO 3382) is the
  target: soft furnishings and air make treble die faster than bass.
* **Early reflections: image sources.** In a shoebox room with rigid, flat
  walls, each reflection path is equivalent to a straight line from a
  mirror image of the source (Allen and Berkley 1979). An image behind n
  walls at distance d arrives after d / c with amplitude (1 - a)^(n/2) / d.
  This gives the exact sparse pattern of the first echoes, which carries the
  room's size and the mic's position and which a noise model cannot fake.
* **Late tail: filtered noise.** The number of image arrivals grows as
  4 pi c^3 t^2 / V per second; after the *mixing time* (about sqrt(V) ms
  after the direct sound, Polack) echoes overlap so densely, with random
  phases, that the response is statistically indistinguishable from
  Gaussian noise whose power decays exponentially in each band. Computing
  thousands of further images would only reproduce that noise, so after the
  mixing time the response *is* band-split Gaussian noise, joined to the
  images by an equal-power cross-fade. Its power follows from the same
  image count: r^2 4 pi c / (V fs) per sample at t = 0 (r: source-mic
  distance, direct path normalised to 1), so the direct-to-reverberant
  ratio is set by geometry alone. It reproduces the textbook critical
  distance 0.057 sqrt(V / RT60), where direct and reverberant energy are
  equal: a phone 5 m from a shop speaker hears mostly the room.

Conventions shared with the other acoustic modules: signals are 1-D float32
arrays, rates are integers in Hz, lengths in samples, times in seconds,
distances in metres, levels in dB; randomness only comes from an explicit
``np.random.Generator``. Bad arguments raise ``AugmentValueError``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers

import numpy as np
from scipy import fft as spfft
from scipy import signal as sps

from .checks import AugmentValueError, check_number, check_rate, check_rng, check_signal

log = logging.getLogger(__name__)

#: Speed of sound in air at 20 degrees C, m/s.
SPEED_OF_SOUND = 343.0
#: Centres of the octave bands in which absorption and decay are given, Hz.
OCTAVE_BANDS_HZ = (125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
_MID_BANDS = (2, 3)  # 500 Hz and 1 kHz: where "the" RT60 of a room is quoted
#: Eyring's constant 24 ln(10) / c: RT60 = EYRING * V / (S * -ln(1 - a)).
EYRING = 24.0 * math.log(10.0) / SPEED_OF_SOUND
#: Sources and microphones keep this far from any wall, m.
WALL_MARGIN_M = 0.05
#: Rooms drawn by ``random_room``: (length, width, height) ranges in m,
#: mid-band RT60 range in s, and how often each kind is drawn.
ROOM_KINDS = {
    "small": dict(size=((3.0, 5.0), (2.5, 5.0), (2.4, 3.0)), rt60=(0.2, 0.6), weight=0.45),   # office, bedroom
    "medium": dict(size=((6.0, 15.0), (4.0, 12.0), (2.7, 4.5)), rt60=(0.4, 1.0), weight=0.4),  # shop, cafe
    "large": dict(size=((15.0, 30.0), (10.0, 25.0), (5.0, 12.0)), rt60=(0.8, 1.5), weight=0.15),  # hall
}
_LN1000 = 3.0 * math.log(10.0)  # 60 dB of amplitude is a factor 10**3


# --------------------------------------------------------------------------
# errors and argument checks shared by the acoustic modules



def _point(value, name: str) -> tuple[float, float, float]:
    try:
        p = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise AugmentValueError(f"{name} must be three numbers (x, y, z) in m, got {value!r}") from None
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise AugmentValueError(f"{name} must be three finite numbers (x, y, z) in m, got {value!r}")
    return p


# --------------------------------------------------------------------------
# the room


@dataclasses.dataclass(frozen=True)
class RoomSpec:
    """A shoebox room with one source and one microphone.

    size_m: (length, width, height), each 1-100 m.
    source_m, mic_m: (x, y, z) positions in m, from the corner at the
        origin; each at least ``WALL_MARGIN_M`` inside every wall, and at
        least 0.1 m apart.
    rt60_s: target mid-band reverberation time (500 Hz and 1 kHz octaves),
        0.05-10 s.
    absorption: wall absorption coefficients in (0, 1), one per octave band
        of ``OCTAVE_BANDS_HZ`` or one for all. Only their *shape* over
        frequency is kept: they are rescaled (in the Eyring exponent
        -ln(1 - a), so they stay in (0, 1)) to produce ``rt60_s``. A single
        value means the same RT60 in every band.
    The direct-to-reverberant ratio is not a parameter: it follows from the
    volume, the RT60 and the source-mic distance.
    """

    size_m: tuple[float, float, float]
    source_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]
    rt60_s: float
    absorption: float | tuple[float, ...] = 0.3

    def __post_init__(self):
        size = _point(self.size_m, "size_m")
        if not all(1.0 <= v <= 100.0 for v in size):
            raise AugmentValueError(f"size_m must be three lengths within [1, 100] m, got {size}")
        for name in ("source_m", "mic_m"):
            p = _point(getattr(self, name), name)
            if not all(WALL_MARGIN_M <= v <= side - WALL_MARGIN_M for v, side in zip(p, size)):
                raise AugmentValueError(
                    f"{name} {p} lies outside the {size[0]:g} x {size[1]:g} x {size[2]:g} m room; each "
                    f"coordinate must be within [{WALL_MARGIN_M:g}, side - {WALL_MARGIN_M:g}] m")
            object.__setattr__(self, name, p)
        object.__setattr__(self, "size_m", size)
        if math.dist(self.source_m, self.mic_m) < 0.1:
            raise AugmentValueError("source_m and mic_m must be at least 0.1 m apart")
        object.__setattr__(self, "rt60_s", check_number(self.rt60_s, "rt60_s", 0.05, 10.0))
        alpha = self.absorption
        alpha = (alpha,) if isinstance(alpha, numbers.Real) else tuple(alpha)
        if len(alpha) not in (1, len(OCTAVE_BANDS_HZ)):
            raise AugmentValueError(f"absorption must be one coefficient or {len(OCTAVE_BANDS_HZ)} (one per "
                                      f"octave band {OCTAVE_BANDS_HZ}), got {len(alpha)}")
        alpha = tuple(check_number(a, "absorption coefficient", 1e-4, 1.0 - 1e-4) for a in alpha)
        object.__setattr__(self, "absorption", alpha[0] if len(alpha) == 1 else alpha)

    @property
    def volume_m3(self) -> float:
        return math.prod(self.size_m)

    @property
    def surface_m2(self) -> float:
        lx, ly, lz = self.size_m
        return 2.0 * (lx * ly + lx * lz + ly * lz)

    @property
    def distance_m(self) -> float:
        """Source-to-microphone distance, m."""
        return math.dist(self.source_m, self.mic_m)

    def band_rt60(self) -> np.ndarray:
        """RT60 per octave band of ``OCTAVE_BANDS_HZ``, (7,) float64 s; its mid-band mean is ``rt60_s``."""
        exponent = -np.log1p(-np.broadcast_to(np.asarray(self.absorption, dtype=np.float64), (len(OCTAVE_BANDS_HZ),)))
        relative = 1.0 / exponent  # RT60 is inversely proportional to the Eyring exponent
        return self.rt60_s * relative / relative[list(_MID_BANDS)].mean()

    def band_absorption(self) -> np.ndarray:
        """Absorption per octave band that Eyring's formula needs for ``band_rt60``, (7,) in (0, 1)."""
        return -np.expm1(-EYRING * self.volume_m3 / (self.surface_m2 * self.band_rt60()))


def direct_delay_samples(spec: RoomSpec, *, sample_rate: int) -> int:
    """Sample index of the direct sound in ``room_impulse_response(spec, ...)``."""
    return int(round(spec.distance_m / SPEED_OF_SOUND * check_rate(sample_rate)))


def _place_mic(rng: np.random.Generator, size, source, distance: float):
    """A mic about ``distance`` from ``source``, held 0.7-1.8 m high and 0.2 m or more from the walls.

    Below a source too high for that distance (a ceiling speaker) the mic is
    held up as far as it goes; in a room too small for it the distance shrinks.
    """
    margin = 0.2
    lo_z, hi_z = 0.7, min(1.8, size[2] - margin)
    for attempt in range(200):
        d = distance * 0.9 ** (attempt // 20)
        z = rng.uniform(lo_z, hi_z)
        if abs(z - source[2]) >= d:
            z = min(max(source[2], lo_z), hi_z)
        d = max(d, 1.02 * abs(z - source[2]) + 0.01)
        rho = math.sqrt(d * d - (z - source[2]) ** 2)
        theta = rng.uniform(0.0, 2.0 * math.pi)
        x, y = source[0] + rho * math.cos(theta), source[1] + rho * math.sin(theta)
        if margin <= x <= size[0] - margin and margin <= y <= size[1] - margin:
            return (x, y, z)
    return tuple(rng.uniform(margin, s - margin) for s in size)  # unreachable for the rooms drawn here


def random_source(rng: np.random.Generator, size_m) -> tuple[float, float, float]:
    """A loudspeaker position: on a shelf or table (0.5-2.5 m), or, in taller rooms, under the
    ceiling (suspended at 6 m at most in a hall)."""
    lx, ly, lz = _point(size_m, "size_m")
    rng = check_rng(rng)
    margin = 0.3
    if lz > 2.6 and rng.random() < 0.3:
        z = min(lz - 0.2, 6.0)
    else:
        z = rng.uniform(0.5, min(2.5, lz - margin))
    return (rng.uniform(margin, lx - margin), rng.uniform(margin, ly - margin), z)


def move_source(spec: RoomSpec, rng: np.random.Generator, *, min_distance_m: float = 0.5) -> RoomSpec:
    """``spec`` with its source re-drawn by ``random_source``, at least ``min_distance_m`` from the mic.

    For a second sound source in the same room: a noise, a talker.
    """
    if not isinstance(spec, RoomSpec):
        raise AugmentValueError(f"spec must be a RoomSpec, got {type(spec).__name__}")
    min_distance_m = check_number(min_distance_m, "min_distance_m", 0.1, 100.0)
    best = spec.source_m
    for _ in range(100):
        source = random_source(rng, spec.size_m)
        if math.dist(source, spec.mic_m) >= min_distance_m:
            return dataclasses.replace(spec, source_m=source)
        best = max(best, source, key=lambda p: math.dist(p, spec.mic_m))
    return dataclasses.replace(spec, source_m=best)  # a room too small for the request: the farthest found


def random_room(rng: np.random.Generator, *, kind: str | None = None, rt60_range: tuple[float, float] | None = None,
                distance_range: tuple[float, float] = (0.5, 8.0)) -> RoomSpec:
    """Draw a realistic room, speaker and microphone.

    kind: "small" (office, bedroom: 3-5 m, RT60 0.2-0.6 s), "medium" (shop,
        cafe: 6-15 m, 0.4-1.0 s), "large" (hall: up to 30 m, 0.8-1.5 s), or
        None to draw one (45 / 40 / 15 %).
    rt60_range: (low, high) s, replaces the kind's RT60 range.
    distance_range: (low, high) source-mic distance in m, drawn log-uniform;
        shortened where the room is too small for it.
    Absorption follows a random power of frequency (exponent -0.1 to 0.5,
    with 5 % scatter per band), so most rooms keep their bass longer than
    their treble, as furnished rooms do.
    """
    rng = check_rng(rng)
    if kind is None:
        kinds = list(ROOM_KINDS)
        kind = kinds[int(rng.choice(len(kinds), p=[ROOM_KINDS[k]["weight"] for k in kinds]))]
    if kind not in ROOM_KINDS:
        raise AugmentValueError(f"kind must be one of {sorted(ROOM_KINDS)} or None, got {kind!r}")
    lo_t, hi_t = ROOM_KINDS[kind]["rt60"] if rt60_range is None else rt60_range
    lo_d, hi_d = distance_range
    lo_t, hi_t = check_number(lo_t, "rt60_range low", 0.05, 10.0), check_number(hi_t, "rt60_range high", 0.05, 10.0)
    lo_d, hi_d = check_number(lo_d, "distance_range low", 0.1, 100.0), check_number(hi_d, "distance_range high",
                                                                                     0.1, 100.0)
    if lo_t > hi_t or lo_d > hi_d:
        raise AugmentValueError("rt60_range and distance_range must be (low, high) with low <= high")
    size = tuple(float(rng.uniform(*r)) for r in ROOM_KINDS[kind]["size"])
    source = random_source(rng, size)
    distance = math.exp(rng.uniform(math.log(lo_d), math.log(hi_d)))
    mic = _place_mic(rng, size, source, distance)
    slope = rng.uniform(-0.1, 0.5)
    shape = 0.3 * (np.asarray(OCTAVE_BANDS_HZ) / 1000.0) ** slope * np.exp(rng.normal(0.0, 0.05, len(OCTAVE_BANDS_HZ)))
    absorption = tuple(float(a) for a in np.clip(shape, 0.02, 0.95))
    return RoomSpec(size, source, mic, float(rng.uniform(lo_t, hi_t)), absorption)


# --------------------------------------------------------------------------
# impulse response


def _images(spec: RoomSpec, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (k,) m and reflection counts (k,) of all image sources within ``max_distance`` of the mic.

    Along each axis the images sit at 2 l L + (1 - 2 u) s for integers l and
    u in {0, 1}, after |l - u| + |l| reflections; the 3-D images are all
    combinations, built by broadcasting instead of a loop over orders.
    """
    axes = []
    for side, s, m in zip(spec.size_m, spec.source_m, spec.mic_m):
        top = int(math.ceil(max_distance / (2.0 * side))) + 1
        l = np.repeat(np.arange(-top, top + 1), 2)
        u = np.tile([0, 1], 2 * top + 1)
        axes.append(((2.0 * l * side + (1 - 2 * u) * s - m), np.abs(l - u) + np.abs(l)))
    (dx, nx), (dy, ny), (dz, nz) = axes
    d2 = dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2
    order = nx[:, None, None] + ny[None, :, None] + nz[None, None, :]
    keep = d2 <= max_distance ** 2
    return np.sqrt(d2[keep]), order[keep]


def _band_weights(n_fft: int, sample_rate: int) -> np.ndarray:
    """(7, n_fft // 2 + 1) octave-band weights over frequency that sum to 1 in every bin.

    Band b is 1 within a quarter octave of its centre and hands over
    linearly (in octaves) to its neighbour over the half octave around
    their common edge; the lowest band also covers everything below 125 Hz
    and the highest everything above 8 kHz. Flat tops keep each band's
    decay its own: a bin that mixed two bands' decays would soon be ruled by
    the slower one and lengthen the measured RT60.
    """
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    octave = np.log2(np.maximum(f, 1e-3) / OCTAVE_BANDS_HZ[0])
    offset = np.abs(octave[None, :] - np.arange(len(OCTAVE_BANDS_HZ))[:, None])
    w = np.clip((0.75 - offset) / 0.5, 0.0, 1.0)
    w[0, octave < 0.0] = 1.0
    w[-1, octave > len(OCTAVE_BANDS_HZ) - 1.0] = 1.0
    return w


def room_impulse_response(spec: RoomSpec, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The impulse response from ``spec.source_m`` to ``spec.mic_m``.

    Returns (n,) float32 at ``sample_rate`` Hz, n = direct delay + the
    longest band RT60 (capped at 2 * ``rt60_s``), beginning at the emission:
    the direct sound is a unit impulse at ``direct_delay_samples(spec)``
    (convolving with it keeps the level of a close source), early
    reflections are image sources up to the mixing time, and the late tail
    is band-split Gaussian noise decaying at each band's RT60 (see the
    module docstring). rng draws the tail's noise.

    Cost: ~2-4 ms for RT60 1 s at 16 kHz, ~1 ms for 0.3 s.
    """
    if not isinstance(spec, RoomSpec):
        raise AugmentValueError(f"spec must be a RoomSpec, got {type(spec).__name__}")
    sample_rate = check_rate(sample_rate)
    rng = check_rng(rng)
    c, fs, r = SPEED_OF_SOUND, sample_rate, spec.distance_m
    band_t60 = spec.band_rt60()
    beta = np.sqrt(1.0 - spec.band_absorption())  # amplitude kept per reflection, per band
    t_direct = r / c
    t_mix = t_direct + max(0.005, 1e-3 * math.sqrt(spec.volume_m3))
    fade = min(0.5 * (t_mix - t_direct), 0.010)  # half-width of the image-to-noise cross-fade, s
    n = int(round(fs * (t_direct + min(band_t60.max(), 2.0 * spec.rt60_s)))) + 1
    n_fft = spfft.next_fast_len(n + int(0.064 * fs), real=True)  # room for the band filters' ringing

    dist, order = _images(spec, c * (t_mix + fade))
    where = np.rint(dist * (fs / c)).astype(np.int64)
    inside = where < n
    dist, order, where = dist[inside], order[inside], where[inside]
    ramp = np.clip((dist / c - (t_mix - fade)) / (2.0 * fade), 0.0, 1.0)
    image_gain = (r / dist) * np.cos(0.5 * np.pi * ramp)  # images fade out ...
    t = np.arange(n) / fs
    tail_in = np.sin(0.5 * np.pi * np.clip((t - (t_mix - fade)) / (2.0 * fade), 0.0, 1.0))  # ... as noise fades in
    noise = rng.standard_normal(n) * (r * math.sqrt(4.0 * math.pi * c / (spec.volume_m3 * fs))) * tail_in

    weights = _band_weights(n_fft, fs)
    spectrum = np.zeros(n_fft // 2 + 1, dtype=np.complex128)
    for b in range(len(OCTAVE_BANDS_HZ)):
        if not weights[b].any():
            continue  # a band above Nyquist
        band = np.bincount(where, weights=image_gain * beta[b] ** order, minlength=n)
        band += noise * np.exp(-_LN1000 * t / band_t60[b])
        spectrum += weights[b] * spfft.rfft(band, n_fft)
    ir = spfft.irfft(spectrum, n_fft)[:n]
    log.debug("room %s m, RT60 %.2f s, %.2f m: %d images, mixing time %.1f ms, %d samples",
              spec.size_m, spec.rt60_s, r, dist.size, 1e3 * t_mix, n)
    return ir.astype(np.float32)


# --------------------------------------------------------------------------
# measurement


def measure_rt60(ir, *, sample_rate: int, band_hz: float | None = None, span_db: float = 30.0) -> float:
    """RT60 of an impulse response by Schroeder backward integration, s.

    ir: (n,) float impulse response at ``sample_rate`` Hz; it is measured
        from its largest sample (the direct sound) on.
    band_hz: centre of an octave band to measure in (4th-order Butterworth
        band-pass, run backwards in time so that the filter's own ringing
        lands before the onset instead of lengthening the decay), or None
        for the broadband response.
    span_db: 30 for T30 (the energy decay curve is fitted between -5 and
        -35 dB), 20 for T20 (-5 to -25 dB); the fitted slope is extrapolated
        to 60 dB.
    Raises ``AugmentValueError`` when the decay does not reach -5 - span_db dB.
    """
    h = check_signal(ir, "ir").astype(np.float64)
    sample_rate = check_rate(sample_rate, minimum=1)
    span_db = check_number(span_db, "span_db", 10.0, 50.0)
    if band_hz is not None:
        band_hz = check_number(band_hz, "band_hz", 20.0, sample_rate / 2.0 / math.sqrt(2.0))
        edges = [band_hz / math.sqrt(2.0), min(band_hz * math.sqrt(2.0), 0.99 * sample_rate / 2.0)]
        sos = sps.butter(4, edges, btype="bandpass", fs=sample_rate, output="sos")
        h = sps.sosfilt(sos, h[::-1])[::-1]
    if not h.any():
        raise AugmentValueError("ir is silent; there is no decay to measure")
    h = h[int(np.argmax(np.abs(h))):]
    edc = np.cumsum((h * h)[::-1])[::-1]  # energy still to come after each sample
    with np.errstate(divide="ignore"):
        edc_db = 10.0 * np.log10(edc / edc[0])
    below_start, below_end = np.flatnonzero(edc_db <= -5.0), np.flatnonzero(edc_db <= -5.0 - span_db)
    if below_end.size == 0 or below_end[0] - below_start[0] < 2:
        raise AugmentValueError(f"the energy decay only reaches {edc_db[np.isfinite(edc_db)].min():.1f} dB; "
                                  f"T{span_db:g} needs {-5.0 - span_db:g} dB (use a longer ir or span_db=20)")
    i0, i1 = below_start[0], below_end[0]
    slope = np.polyfit(np.arange(i0, i1) / sample_rate, edc_db[i0:i1], 1)[0]  # dB per second
    return float(-60.0 / slope)
