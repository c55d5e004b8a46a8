"""Background noise of the rooms where people record music.

Place in the pipeline: training and benchmark distortions, the noise stage of
a ``chain.AcousticChain``; never run at serve time. White or pink noise
teaches a network little about a cafe: real room noise has structure that
looks like music to a spectrogram (harmonic voices, hum lines, transients),
and that is what the encoder must learn to ignore. Each generator returns
``n_samples`` of unit-RMS float32 noise at ``sample_rate`` with the spectral
and temporal character of one source; ``mix_at_snr`` sets its level.

* **Babble** (``babble``): several talkers at once. Each talker is a
  recording from a *voice bank* at a random offset and level. The bank is
  built once (``build_voice_bank``, cached on disk by ``cached_voice_bank``)
  from ``espeak-ng`` speaking pseudo-words in several languages and voices
  when it is installed, or else from a formant synthesiser: glottal pulses
  with a falling intonation, through three vowel formant resonators, with
  fricative bursts and syllable envelopes at 4-6 syllables per second.
  Either way espeak never runs per training sample.
* **Traffic** (``traffic``): heard through a window, traffic is a rumble
  (brown noise, mostly below 300 Hz) that swells slowly, plus passing cars:
  an engine tone whose pitch falls as the car goes by (Doppler shift) and
  tyre noise, both growing as 1 / distance at the closest approach.
* **HVAC** (``hvac``): air conditioning and lights: low-frequency airflow
  noise, mains hum at 50 or 60 Hz and its harmonics (transformers and
  ballasts), and the tone of a fan's blades with a slow wobble.
* **Cafe clatter** (``clatter``): sparse transients: cups and plates ring
  with a few inharmonic partials above 1.5 kHz; cutlery rattles in short
  clusters of clicks.

Signals are 1-D float32; rates in Hz, levels in dB.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import logging
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy import signal as sps

from .checks import AugmentError, AugmentValueError, check_count, check_number, check_rate, check_rng, check_signal

log = logging.getLogger(__name__)

AMBIENCE_KINDS = ("babble", "traffic", "hvac", "clatter")
#: espeak-ng voices for the bank: languages (their phonology shapes the
#: pseudo-words) and voice variants (male m1-m7, female f1-f5).
ESPEAK_LANGUAGES = ("en", "en-us", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
# Peterson and Barney's mean formants (F1, F2, F3) of adult male vowels, Hz.
_VOWELS = ((270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410),
           (730, 1090, 2440), (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240))
_SYLLABLES = ("ba", "ke", "li", "mo", "nu", "ra", "se", "ti", "do", "ga", "pe", "vi", "zo", "fa", "ku", "ma",
              "ne", "lo", "ri", "sa", "che", "sho", "tra", "ple", "kon", "mar", "del", "vis")
_SPEECH_SPEED = 2.5  # pseudo-words per second at espeak's default rate, for sizing the text


class AmbienceUnavailable(AugmentError):
    """A requested noise source needs a program that is not installed (espeak-ng)."""


@dataclasses.dataclass(frozen=True)
class VoiceBank:
    """Recordings of single talkers, each (m_i,) float32 with unit RMS over its speech.

    sample_rate: rate of every recording, Hz. engine: "espeak" or "formant".
    """

    sample_rate: int
    engine: str
    voices: tuple[np.ndarray, ...]

    def __post_init__(self):
        check_rate(self.sample_rate)
        if not self.voices:
            raise AugmentValueError("a VoiceBank needs at least one voice")
        voices = tuple(check_signal(v, "voice") for v in self.voices)
        if min(v.size for v in voices) < self.sample_rate // 2:
            raise AugmentValueError("every voice in a VoiceBank must be at least 0.5 s long")
        object.__setattr__(self, "voices", voices)


# --------------------------------------------------------------------------
# voice bank


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _speech_rms(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """``y`` scaled to unit RMS over its louder half of 10 ms blocks: speech level, pauses left out."""
    y = np.asarray(y, dtype=np.float64)
    block = max(1, sample_rate // 100)
    energy = np.mean(y[: y.size // block * block].reshape(-1, block) ** 2, axis=1)
    active = energy[energy >= np.median(energy)]
    level = math.sqrt(float(np.mean(active))) if active.size else 0.0
    return (y / level if level > 0 else y).astype(np.float32)


def _espeak_voice(rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    words = []
    for _ in range(int(seconds * _SPEECH_SPEED) + 4):
        words.append("".join(rng.choice(_SYLLABLES, int(rng.integers(1, 4)))))
        if rng.random() < 0.15:
            words[-1] += "." if rng.random() < 0.6 else ","
    voice = f"{rng.choice(ESPEAK_LANGUAGES)}+{rng.choice(ESPEAK_VARIANTS)}"
    cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(140, 200))), "-p", str(int(rng.integers(25, 75))),
           "--stdout", " ".join(words)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=60, check=True)
        audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        raise AmbienceUnavailable(f"espeak-ng could not render voice {voice}: {exc}") from exc
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    return np.asarray(soxr.resample(audio, rate, sample_rate, quality="HQ"), dtype=np.float32)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Klatt's two-pole formant resonator (unit gain at DC)."""
    r = math.exp(-math.pi * bandwidth / sample_rate)
    b1, b2 = 2.0 * r * math.cos(2.0 * math.pi * freq / sample_rate), -r * r
    return sps.lfilter([1.0 - b1 - b2], [1.0, -b1, -b2], x)


def _syllable(rng: np.random.Generator, f0: float, scale: float, sample_rate: int) -> np.ndarray:
    """One consonant-vowel syllable of 120-280 ms."""
    n = int(rng.uniform(0.12, 0.28) * sample_rate)
    f0_track = f0 * np.linspace(1.0 + rng.normal(0.0, 0.05), 1.0 + rng.normal(0.0, 0.05), n)
    phase = np.cumsum(f0_track * (1.0 + 0.01 * rng.standard_normal(n))) / sample_rate  # 1 % jitter
    pulses = np.diff(np.floor(phase), prepend=0.0)
    pole = math.exp(-2.0 * math.pi * 300.0 / sample_rate)
    source = sps.lfilter([1.0 - pole], [1.0, -pole], sps.lfilter([1.0 - pole], [1.0, -pole], pulses))
    voiced = np.diff(source, prepend=0.0)  # glottal -12 dB/octave plus lip radiation +6 dB/octave
    formants = np.asarray(_VOWELS[int(rng.integers(len(_VOWELS)))]) * scale * rng.uniform(0.92, 1.08, 3)
    for freq, bw in zip(formants, (rng.uniform(60, 90), rng.uniform(80, 120), rng.uniform(120, 180))):
        if freq < 0.45 * sample_rate:
            voiced = _resonator(voiced, freq, bw, sample_rate)
    ramp = np.minimum(1.0, np.minimum(np.arange(n) / (0.015 * sample_rate), (n - np.arange(n)) / (0.04 * sample_rate)))
    voiced *= ramp / (np.max(np.abs(voiced)) + 1e-12)
    if rng.random() < 0.6:  # a fricative or plosive onset
        m = int(rng.uniform(0.03, 0.09) * sample_rate)
        edge = min(rng.uniform(2000.0, 5000.0), 0.4 * sample_rate)
        burst = sps.sosfilt(sps.butter(2, edge, btype="highpass", fs=sample_rate, output="sos"), rng.standard_normal(m))
        burst *= np.hanning(m) * 10 ** (rng.uniform(-20.0, -8.0) / 20.0) / (np.max(np.abs(burst)) + 1e-12)
        voiced = np.concatenate([burst, voiced])
    return voiced


def _formant_voice(rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    """Speech-like phrases of one synthetic talker: syllables with falling intonation, and pauses."""
    female = rng.random() < 0.5
    f0 = rng.uniform(165.0, 255.0) if female else rng.uniform(85.0, 155.0)
    scale = 1.17 if female else 1.0  # shorter vocal tract, higher formants
    parts, total = [], 0
    while total < seconds * sample_rate:
        count = int(rng.integers(3, 10))
        for k in range(count):
            parts.append(_syllable(rng, f0 * (1.0 - 0.15 * k / count), scale, sample_rate))  # declination
        parts.append(np.zeros(int(rng.uniform(0.15, 0.6) * sample_rate)))
        total = sum(p.size for p in parts)
    return np.concatenate(parts)[: int(seconds * sample_rate)]


def build_voice_bank(*, sample_rate: int, n_voices: int = 16, seconds: float = 8.0, seed: int = 0,
                     engine: str = "auto") -> VoiceBank:
    """Render ``n_voices`` single talkers of ``seconds`` each.

    engine: "espeak" (espeak-ng pseudo-speech, random language, voice,
        speed and pitch; ``AmbienceUnavailable`` when it is not installed),
        "formant" (the built-in synthesiser), or "auto" (espeak when
        installed). Costs about 2-3 ms per voice-second either way; build
        once and cache (``cached_voice_bank``).
    """
    sample_rate = check_rate(sample_rate)
    n_voices = check_count(n_voices, "n_voices", 1)
    seconds = check_number(seconds, "seconds", 0.5, 600.0)
    if engine == "auto":
        engine = "espeak" if espeak_available() else "formant"
    if engine == "espeak" and not espeak_available():
        raise AmbienceUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng); "
                                  "use engine='formant' or 'auto'")
    if engine not in ("espeak", "formant"):
        raise AugmentValueError(f"engine must be 'auto', 'espeak' or 'formant', got {engine!r}")
    rng = np.random.default_rng(seed)
    render = _espeak_voice if engine == "espeak" else _formant_voice
    voices = tuple(_speech_rms(render(rng, seconds, sample_rate), sample_rate) for _ in range(n_voices))
    log.info("built a %s voice bank: %d voices x %.1f s at %d Hz", engine, n_voices, seconds, sample_rate)
    return VoiceBank(sample_rate, engine, voices)


def save_voice_bank(bank: VoiceBank, path) -> None:
    """Write ``bank`` to ``path`` (.npz), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        voices = {f"voice{i}": v for i, v in enumerate(bank.voices)}
        np.savez(f, sample_rate=bank.sample_rate, engine=bank.engine, **voices)
    os.replace(tmp, path)


def load_voice_bank(path) -> VoiceBank:
    """Read a bank written by ``save_voice_bank``; ``AugmentError`` if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            count = sum(1 for k in z.files if k.startswith("voice"))
            return VoiceBank(int(z["sample_rate"]), str(z["engine"]), tuple(z[f"voice{i}"] for i in range(count)))
    except (OSError, KeyError, ValueError) as exc:
        raise AugmentError(f"{path}: not a readable voice bank ({exc}); delete it to rebuild") from exc


def cached_voice_bank(cache_dir, *, sample_rate: int, n_voices: int = 16, seconds: float = 8.0, seed: int = 0,
                      engine: str = "auto") -> VoiceBank:
    """``build_voice_bank(...)``, stored in ``cache_dir`` and read from there next time.

    The file name holds every argument, so different banks never collide.
    """
    if engine == "auto":
        engine = "espeak" if espeak_available() else "formant"
    name = f"voices-{engine}-{int(sample_rate)}hz-{int(n_voices)}x{float(seconds):g}s-seed{int(seed)}.npz"
    path = Path(cache_dir) / name
    if path.exists():
        return load_voice_bank(path)
    bank = build_voice_bank(sample_rate=sample_rate, n_voices=n_voices, seconds=seconds, seed=seed, engine=engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_voice_bank(bank, path)
    return bank


@functools.lru_cache(maxsize=4)
def default_voice_bank(sample_rate: int) -> VoiceBank:
    """The bank ``babble`` uses when given none: 12 formant-synthesised voices of 6 s.

    Formant, not espeak, so that a seed gives the same babble on every
    machine; pass an espeak bank from ``cached_voice_bank`` for more
    realistic voices.
    """
    return build_voice_bank(sample_rate=sample_rate, n_voices=12, seconds=6.0, seed=0, engine="formant")


# --------------------------------------------------------------------------
# generators


def _prepare(n_samples, rng, sample_rate) -> tuple[int, np.random.Generator, int]:
    return check_count(n_samples, "n_samples", 1), check_rng(rng), check_rate(sample_rate)


def _normalised(y: np.ndarray) -> np.ndarray:
    rms = math.sqrt(float(np.mean(np.square(y, dtype=np.float64))))
    return (y / rms if rms > 0 else y).astype(np.float32)


def babble(n_samples: int, rng: np.random.Generator, *, sample_rate: int, bank: VoiceBank | None = None,
           talkers: int | None = None) -> np.ndarray:
    """Crowd babble: ``talkers`` voices (4-10 when None) from ``bank``, (n_samples,) float32, unit RMS.

    Each talker is a bank voice (drawn with replacement) from a random
    offset, looped, at a random level within 8 dB (nearer and farther
    tables). bank: at ``sample_rate``; ``default_voice_bank`` when None.
    """
    n, rng, sample_rate = _prepare(n_samples, rng, sample_rate)
    bank = default_voice_bank(sample_rate) if bank is None else bank
    if not isinstance(bank, VoiceBank) or bank.sample_rate != sample_rate:
        raise AugmentValueError(f"bank must be a VoiceBank at {sample_rate} Hz; build one at this rate")
    talkers = int(rng.integers(4, 11)) if talkers is None else check_count(talkers, "talkers", 1)
    out = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        voice = bank.voices[int(rng.integers(len(bank.voices)))]
        idx = (int(rng.integers(voice.size)) + np.arange(n)) % voice.size
        out += voice[idx] * 10 ** (rng.uniform(-8.0, 0.0) / 20.0)
    return _normalised(out)


def _swell(n: int, rng: np.random.Generator, sample_rate: int, spread_db: float, period_s: tuple) -> np.ndarray:
    """A slow random gain, (n,): knots every ``period_s`` s at N(0, spread_db) dB, interpolated linearly."""
    step = rng.uniform(*period_s) * sample_rate
    knots = np.arange(0.0, n + step, step)
    return 10 ** (np.interp(np.arange(n), knots, rng.normal(0.0, spread_db, knots.size)) / 20.0)


def _harmonics(phase: np.ndarray, amplitudes, offsets) -> np.ndarray:
    """sum_k a_k sin(k phase + o_k) for k = 1, 2, ..., as float32.

    The phase is wrapped to one turn and the sines taken in float32, which
    numpy computes ~15x faster than float64; 1e-6 rad is plenty for noise.
    """
    wrapped = np.mod(phase, 2.0 * np.pi).astype(np.float32)
    out = np.zeros(phase.size, dtype=np.float32)
    for k, (a, o) in enumerate(zip(amplitudes, offsets), start=1):
        out += np.float32(a) * np.sin(wrapped * np.float32(k) + np.float32(o))
    return out


def _car(rng: np.random.Generator, t: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """One passing car: (engine tone, gain), both (len(t),).

    Distance and Doppler factor vary slowly, so they are computed every
    32 samples and interpolated.
    """
    t0, d0, v = rng.uniform(-3.0, t[-1] + 3.0), rng.uniform(5.0, 30.0), rng.uniform(8.0, 20.0)
    coarse = t[::32]
    r = np.hypot(d0, v * (coarse - t0))
    gain = np.interp(t, coarse, 10 ** (rng.uniform(0.0, 12.0) / 20.0) * d0 / r)
    doppler = np.interp(t, coarse, 343.0 / (343.0 + v * v * (coarse - t0) / r))  # receding (t > t0): lower
    phase = (2.0 * np.pi / fs) * np.cumsum(rng.uniform(25.0, 60.0) * doppler)
    return gain * _harmonics(phase, 0.6 ** np.arange(4), np.zeros(4)), gain


def traffic(n_samples: int, rng: np.random.Generator, *, sample_rate: int) -> np.ndarray:
    """Road traffic heard indoors, (n_samples,) float32, unit RMS; most energy below 500 Hz.

    Rumble: brown noise band-passed to 25 Hz-(200-400 Hz), swelling by a
    few dB over seconds. Cars pass at 0.1-0.4 per second, 5-30 m away at
    8-20 m/s: an engine tone (25-60 Hz firing rate, 4 harmonics) Doppler-
    shifted by f c / (c + v_radial), and tyre noise low-passed at 250-500
    Hz, both scaled by closest distance / distance.
    """
    n, rng, fs = _prepare(n_samples, rng, sample_rate)
    brown = sps.lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))
    rumble = sps.sosfilt(sps.butter(2, [25.0, rng.uniform(200.0, 400.0)], btype="bandpass", fs=fs, output="sos"), brown)
    out = _normalised(rumble).astype(np.float64) * _swell(n, rng, fs, 3.0, (1.5, 4.0))
    t = np.arange(n) / fs
    tyre_gain = np.zeros(n)
    for _ in range(int(rng.poisson(rng.uniform(0.1, 0.4) * (n / fs + 6.0)))):
        engine, gain = _car(rng, t, fs)
        out += engine
        tyre_gain += gain
    tyre = sps.sosfilt(sps.butter(2, rng.uniform(250.0, 500.0), fs=fs, output="sos"), rng.standard_normal(n))
    return _normalised(out + tyre_gain * _normalised(tyre))


def hvac(n_samples: int, rng: np.random.Generator, *, sample_rate: int, mains_hz: float | None = None) -> np.ndarray:
    """Ventilation and electrical hum, (n_samples,) float32, unit RMS.

    Airflow: noise band-passed to 30 Hz-(150-400 Hz) plus a faint broadband
    hiss (-30 to -20 dB). Hum: the first 8 harmonics of the mains frequency
    (``mains_hz`` 50 or 60; drawn when None): the 2nd about as strong as the
    fundamental (transformer magnetostriction), the 3rd at half that (core
    saturation), the rest weaker; together -6 to +3 dB re the airflow. Fan: a blade-pass tone at 60-300 Hz with 2
    harmonics and a ±0.5 % wobble, -15 to -5 dB re the airflow.
    """
    n, rng, fs = _prepare(n_samples, rng, sample_rate)
    mains = float(rng.choice([50.0, 60.0])) if mains_hz is None else float(mains_hz)
    if mains not in (50.0, 60.0):
        raise AugmentValueError(f"mains_hz must be 50 or 60, got {mains_hz!r}")
    t = np.arange(n) / fs
    pinkish = sps.lfilter([1.0], [1.0, -0.9], rng.standard_normal(n))  # -6 dB/octave above ~250 Hz
    air = sps.sosfilt(sps.butter(2, [30.0, rng.uniform(150.0, 400.0)], btype="bandpass", fs=fs, output="sos"), pinkish)
    out = _normalised(air) + 10 ** (rng.uniform(-30.0, -20.0) / 20.0) * rng.standard_normal(n)
    amps = np.concatenate([[1.0, rng.uniform(0.7, 1.5), rng.uniform(0.4, 0.9)], rng.uniform(0.1, 0.4, 5)])
    amps = amps[: max(1, int(0.45 * fs / mains))]  # harmonics the rate carries
    hum = _harmonics(2.0 * np.pi * mains * t, amps, rng.uniform(0, 2 * np.pi, amps.size))
    out += _normalised(hum) * 10 ** (rng.uniform(-6.0, 3.0) / 20.0)
    blade = rng.uniform(60.0, 300.0) * (1.0 + 0.005 * np.sin(2.0 * np.pi * rng.uniform(0.05, 0.3) * t))
    fan = _harmonics((2.0 * np.pi / fs) * np.cumsum(blade), (1.0, 0.5, 0.25), rng.uniform(0, 2 * np.pi, 3))
    return _normalised(out + _normalised(fan) * 10 ** (rng.uniform(-15.0, -5.0) / 20.0))


def _clink(rng: np.random.Generator, fs: int) -> np.ndarray:
    """A cup or plate: 2-5 inharmonic partials at 1.5-9 kHz ringing for 15-120 ms, after a 2 ms tick."""
    decay = rng.uniform(0.015, 0.12)
    t = np.arange(int(5 * decay * fs)) / fs
    top = min(9000.0, 0.45 * fs)
    y = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t) * np.exp(-t / (decay * rng.uniform(0.5, 1.0)))
            for f in rng.uniform(1500.0, top, int(rng.integers(2, 6))))
    tick = int(0.002 * fs)
    y[:tick] += rng.standard_normal(tick) * np.hanning(tick)
    return y


def _rattle(rng: np.random.Generator, fs: int) -> np.ndarray:
    """Cutlery: 2-5 short clicks within 30-200 ms."""
    length = int(rng.uniform(0.03, 0.2) * fs)
    y = np.zeros(length + int(0.03 * fs))
    for start in rng.integers(0, length, int(rng.integers(2, 6))):
        decay = rng.uniform(0.002, 0.01)
        t = np.arange(int(3 * decay * fs)) / fs
        f = rng.uniform(2500.0, min(9000.0, 0.45 * fs))
        click = (np.sin(2 * np.pi * f * t) + 0.5 * rng.standard_normal(t.size)) * np.exp(-t / decay)
        y[start:start + t.size] += click * rng.uniform(0.3, 1.0)
    return y


def clatter(n_samples: int, rng: np.random.Generator, *, sample_rate: int, rate_hz: float | None = None) -> np.ndarray:
    """Cafe clatter, (n_samples,) float32, unit RMS: sparse transients, mostly above 1 kHz.

    Events arrive as a Poisson process of ``rate_hz`` per second (0.5-3
    when None; at least one event), each a clink (60 %) or a rattle, at
    levels within 12 dB; everything is high-passed at 500 Hz, since cups
    and spoons have no low end.
    """
    n, rng, fs = _prepare(n_samples, rng, sample_rate)
    rate = rng.uniform(0.5, 3.0) if rate_hz is None else check_number(rate_hz, "rate_hz", 0.0, 100.0)
    out = np.zeros(n + fs // 2)
    for onset in np.sort(rng.integers(0, n, max(1, int(rng.poisson(rate * n / fs))))):
        event = _clink(rng, fs) if rng.random() < 0.6 else _rattle(rng, fs)
        event = event[: out.size - onset]
        level = 10 ** (rng.uniform(-12.0, 0.0) / 20.0) / (np.max(np.abs(event)) + 1e-12)
        out[onset:onset + event.size] += event * level
    out = sps.sosfilt(sps.butter(2, 500.0, btype="highpass", fs=fs, output="sos"), out[:n])
    return _normalised(out)


def ambience(kind: str, n_samples: int, rng: np.random.Generator, *, sample_rate: int,
             bank: VoiceBank | None = None) -> np.ndarray:
    """Noise of ``kind`` (one of ``AMBIENCE_KINDS``), (n_samples,) float32, unit RMS."""
    if kind == "babble":
        return babble(n_samples, rng, sample_rate=sample_rate, bank=bank)
    generators = {"traffic": traffic, "hvac": hvac, "clatter": clatter}
    if kind not in generators:
        raise AugmentValueError(f"kind must be one of {AMBIENCE_KINDS}, got {kind!r}")
    return generators[kind](n_samples, rng, sample_rate=sample_rate)


def mix_at_snr(x, noise, snr_db: float) -> np.ndarray:
    """``x + g * noise`` with g such that power(x) / power(g * noise) is ``snr_db`` dB.

    x, noise: (n,) float32 of the same length. snr_db: may be negative.
    Returns (n,) float32; ``x`` unchanged when either is silent (an SNR
    relative to zero power asks for no noise, and silent noise cannot be
    scaled up).
    """
    x, noise = check_signal(x), check_signal(noise, "noise")
    snr_db = check_number(snr_db, "snr_db", -60.0, 120.0)
    if noise.size != x.size:
        raise AugmentValueError(f"noise must have the same length as x ({x.size}), got {noise.size}")
    px = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    pn = float(np.mean(np.square(noise, dtype=np.float64))) if noise.size else 0.0
    if px == 0.0 or pn == 0.0:
        return x.copy()
    return (x + np.float32(math.sqrt(px / (pn * 10 ** (snr_db / 10)))) * noise).astype(np.float32)
