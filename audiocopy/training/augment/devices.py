"""Transducers and capture: loudspeaker, microphone, gain control, device clock.

Place in the pipeline: training and benchmark distortions, the device
stages of a ``chain.AcousticChain``; never run at serve time. A query
recorded in a room has been through a small loudspeaker, the air (see
``rooms``), a phone or laptop microphone, the platform's automatic gain
control and an audio interface with its own clock. Each stage here is a
small physical model of one of these:

* **Loudspeaker** (``loudspeaker``): a small driver in a small box cannot
  move enough air at low frequencies, so below its resonance the output
  falls at 12-24 dB per octave (a 2nd- to 4th-order high-pass at 150-500
  Hz); the cone breaks up and the box resonates (peaking bumps of a few dB
  at 0.5-5 kHz); the treble rolls off above 6-16 kHz. Pushed hard, the
  amplifier and the cone's suspension compress peaks (tanh soft clipping).
* **Microphone** (``microphone``): MEMS capsules of phones and laptops are
  band-limited by their acoustic port and by the voice processing behind
  them (about 100 Hz-7 kHz, narrower for a voice call), with a presence
  peak of a few dB around 2-5 kHz from the port's Helmholtz resonance, and
  they add their own hiss.
* **Automatic gain control** (``agc``): phones and browsers
  (getUserMedia's autoGainControl) steer the recording towards a target
  level: a level detector with a fast attack and a slow release (in dB, so
  both are the same number of dB per time constant at any level), a gain
  that compresses the distance to the target by ``ratio``, a cap on how
  much silence is boosted and a gate below which the gain is held.
  Broadcast loudness processors are the same machine used downward only.
* **Capture** (``capture``): the audio interface samples at 44.1 or 48 kHz
  with a crystal that is off by up to a few hundred ppm, and the app
  resamples to its own rate. The drift moves every frequency by the same
  ppm and slowly slides the timing.

Every filter is causal, as the hardware is: the output is not shifted in
time apart from the small group delay of the filters (well under 1 ms in
their pass band). Signals are 1-D float32, rates in Hz, levels in dB.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from scipy import signal as sps

from .checks import AugmentValueError, check_count, check_number, check_rate, check_rng, check_signal

log = logging.getLogger(__name__)

#: Ranges drawn by ``random_speaker``: high-pass cut-off (Hz) and order,
#: treble roll-off (Hz), number of resonant bumps.
SPEAKER_KINDS = {
    "phone": dict(highpass=(350.0, 500.0), order=(3, 4), lowpass=(7000.0, 11000.0), bumps=(1, 3)),
    "laptop": dict(highpass=(250.0, 450.0), order=(2, 4), lowpass=(8000.0, 14000.0), bumps=(1, 3)),
    "bluetooth": dict(highpass=(150.0, 300.0), order=(2, 4), lowpass=(10000.0, 16000.0), bumps=(1, 2)),
    "ceiling": dict(highpass=(150.0, 350.0), order=(2, 3), lowpass=(6000.0, 12000.0), bumps=(1, 3)),
}
#: Ranges drawn by ``random_mic``: band edges and presence-peak centre, Hz.
MIC_KINDS = {
    "phone": dict(highpass=(80.0, 200.0), lowpass=(5500.0, 7500.0), presence=(2000.0, 5000.0)),
    "laptop": dict(highpass=(100.0, 300.0), lowpass=(6000.0, 8000.0), presence=(1500.0, 4000.0)),
    "narrowband": dict(highpass=(200.0, 400.0), lowpass=(3200.0, 3800.0), presence=(1000.0, 2500.0)),
}
#: Block length of the AGC's level detector, s; WebRTC's AGC also works on short blocks.
AGC_FRAME_S = 0.005
#: A filter edge at or above this fraction of the sample rate is beyond what
#: the rate carries and is left out.
_EDGE_LIMIT = 0.45


def _peaking_sos(f0: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook peaking biquad as one (1, 6) SOS row."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * f0 / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    c = math.cos(w0)
    b = [1 + alpha * a, -2 * c, 1 - alpha * a]
    den = [1 + alpha / a, -2 * c, 1 - alpha / a]
    return np.array([b + den]) / den[0]


def _apply(sections: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    if not sections or x.size == 0:
        return x.copy()
    return sps.sosfilt(np.concatenate(sections), x).astype(np.float32)


def _spec(spec, cls):
    if not isinstance(spec, cls):
        raise AugmentValueError(f"spec must be a {cls.__name__}, got {type(spec).__name__}")
    return spec


# --------------------------------------------------------------------------
# loudspeaker


@dataclasses.dataclass(frozen=True)
class SpeakerSpec:
    """Frequency response and drive of a small loudspeaker.

    highpass_hz: bass cut-off (-3 dB), 20-2000 Hz. highpass_order: 1-8
        (6 dB per octave per order below the cut-off).
    lowpass_hz: treble roll-off (-3 dB, 2nd order); left out where it is
        above 0.45 x the sample rate.
    resonances: (centre Hz, gain dB, Q) peaking bumps; gains within ±20 dB.
    drive_db: soft-clipping drive, 0 (linear) to 24 dB.
    """

    highpass_hz: float
    highpass_order: int = 2
    lowpass_hz: float = 12000.0
    resonances: tuple[tuple[float, float, float], ...] = ()
    drive_db: float = 0.0

    def __post_init__(self):
        hp = check_number(self.highpass_hz, "highpass_hz", 20.0, 2000.0)
        check_count(self.highpass_order, "highpass_order", 1)
        if self.highpass_order > 8:
            raise AugmentValueError(f"highpass_order must be within 1-8, got {self.highpass_order}")
        check_number(self.lowpass_hz, "lowpass_hz", 2.0 * hp, 48000.0)
        bumps = tuple((check_number(f, "resonance centre", 20.0, 48000.0),
                       check_number(g, "resonance gain", -20.0, 20.0),
                       check_number(q, "resonance Q", 0.1, 20.0)) for f, g, q in self.resonances)
        object.__setattr__(self, "resonances", bumps)
        check_number(self.drive_db, "drive_db", 0.0, 24.0)


def random_speaker(rng: np.random.Generator, *, kind: str | None = None) -> SpeakerSpec:
    """A small loudspeaker of ``kind`` ("phone", "laptop", "bluetooth", "ceiling"; None: any).

    1-3 bumps at 0.5-5 kHz of +2 to +8 dB (Q 1-4); soft clipping (0-6 dB
    drive) on 30 % of them, a speaker played loud.
    """
    rng = check_rng(rng)
    if kind is None:
        kind = sorted(SPEAKER_KINDS)[int(rng.integers(len(SPEAKER_KINDS)))]
    if kind not in SPEAKER_KINDS:
        raise AugmentValueError(f"kind must be one of {sorted(SPEAKER_KINDS)} or None, got {kind!r}")
    k = SPEAKER_KINDS[kind]
    bumps = tuple((float(math.exp(rng.uniform(math.log(500.0), math.log(5000.0)))), float(rng.uniform(2.0, 8.0)),
                   float(rng.uniform(1.0, 4.0))) for _ in range(int(rng.integers(k["bumps"][0], k["bumps"][1] + 1))))
    drive = float(rng.uniform(0.0, 6.0)) if rng.random() < 0.3 else 0.0
    return SpeakerSpec(float(rng.uniform(*k["highpass"])), int(rng.integers(k["order"][0], k["order"][1] + 1)),
                       float(rng.uniform(*k["lowpass"])), bumps, drive)


def loudspeaker(x, spec: SpeakerSpec, *, sample_rate: int) -> np.ndarray:
    """Play ``x`` through the loudspeaker ``spec``.

    x: (n,) float32 at ``sample_rate`` Hz. Returns (n,) float32, filtered
    causally; with ``drive_db`` > 0, soft-clipped as tanh(g x / peak) scaled
    back to the input's peak, so a louder drive only changes the shape.
    """
    x = check_signal(x)
    spec = _spec(spec, SpeakerSpec)
    sample_rate = check_rate(sample_rate)
    limit = _EDGE_LIMIT * sample_rate
    if spec.highpass_hz >= limit:
        raise AugmentValueError(f"highpass_hz {spec.highpass_hz:g} is above what {sample_rate} Hz carries")
    sections = [sps.butter(spec.highpass_order, spec.highpass_hz, btype="highpass", fs=sample_rate, output="sos")]
    if spec.lowpass_hz < limit:
        sections.append(sps.butter(2, spec.lowpass_hz, btype="lowpass", fs=sample_rate, output="sos"))
    sections += [_peaking_sos(f, g, q, sample_rate) for f, g, q in spec.resonances if f < limit]
    y = _apply(sections, x)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if spec.drive_db > 0.0 and peak > 0.0:
        g = 10.0 ** (spec.drive_db / 20.0)
        y = (np.tanh(y * np.float32(g / peak)) * np.float32(peak / math.tanh(g))).astype(np.float32)
    return y


# --------------------------------------------------------------------------
# microphone


@dataclasses.dataclass(frozen=True)
class MicSpec:
    """Frequency response and self-noise of a small microphone.

    highpass_hz: low edge (-3 dB, 2nd order), 20-1000 Hz.
    lowpass_hz: high edge (-3 dB), above highpass_hz; left out where it is
        above 0.45 x the sample rate. lowpass_order: 2-10.
    presence_hz, presence_db, presence_q: the presence peak (gain within ±15 dB).
    snr_db: music-to-self-noise ratio at the capsule, dB (inf: no hiss).
    """

    highpass_hz: float
    lowpass_hz: float
    lowpass_order: int = 6
    presence_hz: float = 3000.0
    presence_db: float = 4.0
    presence_q: float = 1.2
    snr_db: float = math.inf

    def __post_init__(self):
        hp = check_number(self.highpass_hz, "highpass_hz", 20.0, 1000.0)
        check_number(self.lowpass_hz, "lowpass_hz", 2.0 * hp, 48000.0)
        check_count(self.lowpass_order, "lowpass_order", 2)
        if self.lowpass_order > 10:
            raise AugmentValueError(f"lowpass_order must be within 2-10, got {self.lowpass_order}")
        check_number(self.presence_hz, "presence_hz", 20.0, 48000.0)
        check_number(self.presence_db, "presence_db", -15.0, 15.0)
        check_number(self.presence_q, "presence_q", 0.1, 20.0)
        if not (isinstance(self.snr_db, (int, float)) and self.snr_db == math.inf):
            check_number(self.snr_db, "snr_db", -20.0, 200.0)


def random_mic(rng: np.random.Generator, *, kind: str | None = None) -> MicSpec:
    """A microphone of ``kind`` ("phone", "laptop", "narrowband"; None: phone or laptop).

    Low-pass order 4-8, presence peak +2 to +8 dB (Q 0.7-2), self-noise
    35-60 dB below the music.
    """
    rng = check_rng(rng)
    if kind is None:
        kind = ("phone", "laptop")[int(rng.integers(2))]
    if kind not in MIC_KINDS:
        raise AugmentValueError(f"kind must be one of {sorted(MIC_KINDS)} or None, got {kind!r}")
    k = MIC_KINDS[kind]
    return MicSpec(float(rng.uniform(*k["highpass"])), float(rng.uniform(*k["lowpass"])), int(rng.integers(4, 9)),
                   float(rng.uniform(*k["presence"])), float(rng.uniform(2.0, 8.0)), float(rng.uniform(0.7, 2.0)),
                   float(rng.uniform(35.0, 60.0)))


def microphone(x, spec: MicSpec, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Record ``x`` with the microphone ``spec``.

    x: (n,) float32 sound pressure at the capsule, at ``sample_rate`` Hz.
    rng: draws the self-noise (white, added before the filters, which
        shape it like the capsule's own hiss).
    Returns (n,) float32, filtered causally.
    """
    x = check_signal(x)
    spec = _spec(spec, MicSpec)
    sample_rate = check_rate(sample_rate)
    rng = check_rng(rng)
    limit = _EDGE_LIMIT * sample_rate
    if spec.highpass_hz >= limit:
        raise AugmentValueError(f"highpass_hz {spec.highpass_hz:g} is above what {sample_rate} Hz carries")
    if x.size and math.isfinite(spec.snr_db):
        power = float(np.mean(np.square(x, dtype=np.float64)))
        hiss = rng.standard_normal(x.size, dtype=np.float32) * np.float32(math.sqrt(power * 10 ** (-spec.snr_db / 10)))
        x = x + hiss
    sections = [sps.butter(2, spec.highpass_hz, btype="highpass", fs=sample_rate, output="sos")]
    if spec.lowpass_hz < limit:
        sections.append(sps.butter(spec.lowpass_order, spec.lowpass_hz, btype="lowpass", fs=sample_rate, output="sos"))
    if spec.presence_hz < limit:
        sections.append(_peaking_sos(spec.presence_hz, spec.presence_db, spec.presence_q, sample_rate))
    return _apply(sections, x)


# --------------------------------------------------------------------------
# automatic gain control and compression


@dataclasses.dataclass(frozen=True)
class AgcSpec:
    """A level detector and gain computer: AGC (boosting and cutting) or downward compressor.

    target_db: level the gain steers towards, dB RMS re full scale (-60 to 0);
        for a compressor, its threshold.
    ratio: >= 1; the output's distance to the target is the input's divided
        by ``ratio`` (1: no gain change; 20: nearly a constant level).
    max_gain_db: most a quiet signal is boosted (0: a compressor that only
        cuts); max_cut_db: most a loud one is cut.
    makeup_db: fixed gain added after the gain computer.
    attack_s / release_s: time constants of the level detector when the
        level rises / falls (0.1 ms-10 s).
    gate_db: below this level (dB RMS) the gain is held instead of raised, so
        pauses and silence are not pumped up to the target.
    """

    target_db: float = -20.0
    ratio: float = 10.0
    max_gain_db: float = 20.0
    max_cut_db: float = 40.0
    makeup_db: float = 0.0
    attack_s: float = 0.02
    release_s: float = 0.5
    gate_db: float = -60.0

    def __post_init__(self):
        check_number(self.target_db, "target_db", -60.0, 0.0)
        check_number(self.ratio, "ratio", 1.0, 1e6)
        check_number(self.max_gain_db, "max_gain_db", 0.0, 60.0)
        check_number(self.max_cut_db, "max_cut_db", 0.0, 80.0)
        check_number(self.makeup_db, "makeup_db", -40.0, 40.0)
        check_number(self.attack_s, "attack_s", 1e-4, 10.0)
        check_number(self.release_s, "release_s", 1e-4, 10.0)
        check_number(self.gate_db, "gate_db", -120.0, 0.0)


def random_agc(rng: np.random.Generator, *, kind: str = "agc") -> AgcSpec:
    """``kind`` "agc": a phone/browser AGC (target -26 to -14 dB, ratio 4-30,
    boost up to 10-30 dB, attack 5-50 ms, release 0.2-1.5 s); "broadcast": a
    loudness compressor (threshold -24 to -16 dB, ratio 2-6, cut only,
    makeup 4-10 dB, attack 2-15 ms, release 50-400 ms)."""
    rng = check_rng(rng)
    if kind == "agc":
        return AgcSpec(rng.uniform(-26.0, -14.0), rng.uniform(4.0, 30.0), rng.uniform(10.0, 30.0), 40.0, 0.0,
                       rng.uniform(0.005, 0.05), rng.uniform(0.2, 1.5), rng.uniform(-65.0, -50.0))
    if kind == "broadcast":
        return AgcSpec(rng.uniform(-24.0, -16.0), rng.uniform(2.0, 6.0), 0.0, 40.0, rng.uniform(4.0, 10.0),
                       rng.uniform(0.002, 0.015), rng.uniform(0.05, 0.4), -120.0)
    raise AugmentValueError(f"kind must be 'agc' or 'broadcast', got {kind!r}")


def _follow(level_db: np.ndarray, attack: float, release: float) -> np.ndarray:
    """Detector state *before* each block: a one-pole follower of ``level_db``
    with coefficient ``attack`` while the level rises, ``release`` while it falls."""
    out = np.empty_like(level_db)
    state = float(level_db[0])  # settled on the first block, as for a window cut from a long recording
    for k, value in enumerate(level_db.tolist()):
        out[k] = state
        state += (attack if value > state else release) * (value - state)
    return out


def agc(x, spec: AgcSpec, *, sample_rate: int) -> np.ndarray:
    """Apply automatic gain control or compression ``spec`` to ``x``.

    x: (n,) float32 at ``sample_rate`` Hz. Returns (n,) float32.

    The level is measured on 5 ms blocks, averaged over the attack time
    (RMS) and followed in dB by the attack/release detector; the gain for
    block k comes from blocks before k only and is ramped linearly across
    block k, so the output is causal: a sample never depends on later ones
    (the first block's gain is the one exception, taken from that block
    itself, as from a long-settled AGC).
    Cost: ~3 ms per 10 s at 16 kHz (a Python loop over 5 ms blocks).
    """
    x = check_signal(x)
    spec = _spec(spec, AgcSpec)
    sample_rate = check_rate(sample_rate)
    if x.size == 0:
        return x.copy()
    block = max(1, int(round(AGC_FRAME_S * sample_rate)))
    n_blocks = -(-x.size // block)
    padded = np.zeros(n_blocks * block)
    padded[:x.size] = x
    power = np.mean(padded.reshape(n_blocks, block) ** 2, axis=1)
    if x.size % block:  # the last block is part padding: measure its samples only
        power[-1] = float(np.mean(x[(n_blocks - 1) * block:].astype(np.float64) ** 2))
    step = block / sample_rate
    attack, release = 1.0 - math.exp(-step / spec.attack_s), 1.0 - math.exp(-step / spec.release_s)
    # RMS over the attack time first: an asymmetric follower fed raw 5 ms levels rides their
    # random ups and would settle ~1 dB below the target on steady noise.
    power = sps.lfilter([attack], [1.0, attack - 1.0], power, zi=[(1.0 - attack) * power[0]])[0]
    detected = _follow(10.0 * np.log10(power + 1e-12), attack, release)
    gain_db = np.clip((spec.target_db - detected) * (1.0 - 1.0 / spec.ratio), -spec.max_cut_db, spec.max_gain_db)
    last_open = np.where(detected >= spec.gate_db, np.arange(n_blocks), -1)
    np.maximum.accumulate(last_open, out=last_open)
    gain_db = np.where(last_open >= 0, gain_db[np.maximum(last_open, 0)], 0.0) + spec.makeup_db
    # The gain computed before block k is reached at the end of block k.
    gain = np.interp(np.arange(x.size), (np.arange(n_blocks) + 1) * block, 10.0 ** (gain_db / 20.0))
    return (x * gain).astype(np.float32)


# --------------------------------------------------------------------------
# capture


@dataclasses.dataclass(frozen=True)
class CaptureSpec:
    """An audio interface: its nominal rate (8-192 kHz) and clock error (±1000 ppm)."""

    device_rate: int = 48000
    drift_ppm: float = 0.0

    def __post_init__(self):
        check_rate(self.device_rate, "device_rate")
        if self.device_rate > 192000:
            raise AugmentValueError(f"device_rate must be at most 192000 Hz, got {self.device_rate}")
        check_number(self.drift_ppm, "drift_ppm", -1000.0, 1000.0)


def random_capture(rng: np.random.Generator, *, max_drift_ppm: float = 200.0) -> CaptureSpec:
    """44.1 or 48 kHz with a clock error drawn uniformly within ±``max_drift_ppm``."""
    rng = check_rng(rng)
    max_drift_ppm = check_number(max_drift_ppm, "max_drift_ppm", 0.0, 1000.0)
    return CaptureSpec(int(rng.choice([44100, 48000])), float(rng.uniform(-max_drift_ppm, max_drift_ppm)))


def capture(x, spec: CaptureSpec, *, sample_rate: int) -> np.ndarray:
    """Record ``x`` through an audio interface ``spec`` and resample back to ``sample_rate``.

    x: (n,) float32 at ``sample_rate`` Hz. Returns (n,) float32 at
    ``sample_rate``: trimmed or zero-padded at the end to n samples.

    The interface's clock really runs at device_rate * (1 + drift_ppm
    1e-6) but its samples are labelled device_rate; resampling to the true
    rate and back from the nominal one reproduces that: a positive drift
    lowers every frequency by the factor 1 / (1 + drift) and makes the
    recording longer by the same factor. soxr (band-limited, "HQ") does both
    resamplings, as the app's own resampler would.
    """
    import soxr  # a dependency of the package; only resampling paths need it

    x = check_signal(x)
    spec = _spec(spec, CaptureSpec)
    sample_rate = check_rate(sample_rate)
    if x.size == 0:
        return x.copy()
    true_rate = spec.device_rate * (1.0 + spec.drift_ppm * 1e-6)
    y = soxr.resample(x, sample_rate, true_rate, quality="HQ")
    y = np.asarray(soxr.resample(y, spec.device_rate, sample_rate, quality="HQ"), dtype=np.float32)
    if y.size >= x.size:
        return y[:x.size]
    return np.concatenate([y, np.zeros(x.size - y.size, dtype=np.float32)])
