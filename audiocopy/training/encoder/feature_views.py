"""Distortions in feature space: positives made on the fly, nearly for free.

Place in the pipeline: encoder training, beside the cached audio views. On
the log-frequency axis a pitch shift is a shift of the band axis, a tempo
change a resampling of the frame axis and a speed change both; noise and
other music add in the power domain at an exact SNR (frame energies are
cached); a phone is a band-pass response multiplied onto the bands plus pink
noise; a room is an exponential smear of band power over frames; a low-rate
codec is a low-pass.
"""
from __future__ import annotations

import math

import numpy as np

from ...config import AudioParams, AugmentParams, FeatureParams
from ...signal.features import track_band_db
from ..sources import stable_seed


def _db_to_power(x: np.ndarray) -> np.ndarray:
    return np.power(np.float32(10.0), np.asarray(x, dtype=np.float32) / np.float32(10.0))


def _interp_frames(levels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of (T, bands) rows at fractional ``positions`` (clipped)."""
    positions = np.clip(positions, 0, len(levels) - 1)
    i0 = np.floor(positions).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(levels) - 1)
    w = (positions - i0).astype(np.float32)[:, None]
    a, b = levels[i0].astype(np.float32), levels[i1].astype(np.float32)
    return a + w * (b - a)


def shift_bands(power: np.ndarray, shift: float) -> np.ndarray:
    """Move content up the band axis by ``shift`` bands (fractional), as a transposition does.

    Bands that the shift brings in from outside take each frame's minimum.
    """
    n = power.shape[-1]
    src = np.arange(n, dtype=np.float32) - np.float32(shift)
    i0 = np.floor(src).astype(np.int64)
    w = src - i0
    lo = np.clip(i0, 0, n - 1)
    hi = np.clip(i0 + 1, 0, n - 1)
    out = power[:, lo] * (1 - w) + power[:, hi] * w
    outside = (src < 0) | (src > n - 1)
    if outside.any():
        out[:, outside] = power.min(axis=1, keepdims=True)
    return out


class FeatureAugmenter:
    """Feature-space distortions of clean band levels (see the module docstring)."""

    def __init__(self, *, audio: AudioParams, features: FeatureParams, aug: AugmentParams, seed: int,
                 frames: int):
        from scipy import signal as sps

        from ...signal.features import band_centres_hz
        from .. import augment

        self.audio, self.features, self.aug, self.frames = audio, features, aug, frames
        rng = np.random.default_rng(stable_seed(seed, "noise-bank"))
        n = int(20 * audio.sample_rate)
        white = rng.standard_normal(n).astype(np.float32)
        pink = augment.pink_noise(n, rng)
        # (levels in dB, mean linear energy) of each noise colour.
        self.noise = []
        for x in (white, pink):
            levels, energy = track_band_db(x, audio=audio, features=features, with_energy=True)
            self.noise.append((_db_to_power(levels), float(_db_to_power(energy).mean())))
        # One talker at a time over the music (a presenter, an announcement):
        # the formant voices of ``augment.ambience``, one long recording.
        from ..augment.ambience import default_voice_bank

        speech = np.concatenate(default_voice_bank(audio.sample_rate).voices).astype(np.float32)
        levels, energy = track_band_db(speech, audio=audio, features=features, with_energy=True)
        self.speech = (_db_to_power(levels), _db_to_power(energy))
        centres = band_centres_hz(features)
        sr = audio.sample_rate
        # A bank of phone-like responses: band-pass with random edges, tilt, one resonance.
        self.eq = []
        for _ in range(64):
            lo, hi = rng.uniform(200, 450), min(rng.uniform(2800, 3800), 0.45 * sr)
            sos = sps.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
            _, h = sps.sosfreqz(sos, worN=centres, fs=sr)
            gain = np.abs(h) ** 2
            f0 = math.exp(rng.uniform(math.log(400), math.log(3000)))
            peak = 10 ** (rng.uniform(-6, 8) / 10 * np.exp(-0.5 * (np.log2(centres / f0) / 0.3) ** 2))
            self.eq.append((gain * peak).astype(np.float32))
        self.centres = centres

    def _room(self, power: np.ndarray, rng) -> np.ndarray:
        """A room's late reverberation: band power smeared over frames with a random RT60 and wet share."""
        from scipy.signal import lfilter

        rt60 = rng.uniform(0.2, 1.0)
        g = 10 ** (-6.0 * self.features.hop_length / self.audio.sample_rate / rt60)
        wet = rng.uniform(0.2, 0.7)
        tail = lfilter([1.0 - g], [1.0, -g], power, axis=0, zi=(g * power[:1]))[0]
        return (1 - wet) * power + wet * tail.astype(np.float32)

    def _music(self, power: np.ndarray, other: tuple[np.ndarray, np.ndarray], rng, sig_energy: float) -> np.ndarray:
        """Another track's frames added in the power domain at an SNR from ``music_snr_db_range``."""
        f = len(power)
        o_levels, o_energy = other
        s = int(rng.integers(0, max(1, len(o_levels) - f)))
        o = _db_to_power(o_levels[s:s + f])
        if len(o) != f:
            return power
        o_e = float(_db_to_power(o_energy[s:s + f]).mean())
        return power + o * np.float32(sig_energy / max(o_e, 1e-12)
                                      * 10 ** (-rng.uniform(*self.aug.music_snr_db_range) / 10))

    def _speech(self, rng, n_frames: int, sig_energy: float, snr_db: float) -> np.ndarray:
        """Band power of ``n_frames`` of speech at ``snr_db`` below the music (over its voiced frames)."""
        levels, energy = self.speech
        s = int(rng.integers(0, len(levels) - n_frames))
        talk = energy[s:s + n_frames]
        voiced = talk[talk > 0.1 * talk.max()] if talk.max() > 0 else talk
        speech_energy = max(float(voiced.mean()), 1e-12)
        return levels[s:s + n_frames] * np.float32(sig_energy / speech_energy * 10 ** (-snr_db / 10))

    def _noise(self, rng, n_frames: int, color: int) -> tuple[np.ndarray, float]:
        levels, energy = self.noise[color]
        s = int(rng.integers(0, len(levels) - n_frames))
        return levels[s:s + n_frames], energy

    def positive(self, clean: np.ndarray, energy: np.ndarray, rng: np.random.Generator,
                 other: tuple[np.ndarray, np.ndarray] | None, *, centre: float | None = None) -> tuple[np.ndarray, float]:
        """A distorted sub-window from a clean track.

        clean: (T, bands) dB levels; energy: (T,) dB frame energies; other:
        (levels, energy) of another track for the music distortion; centre:
        the clean frame to show (None: drawn at random).
        Returns (levels (frames, bands) dB, centre) where ``centre`` is the
        clean frame (fractional) shown at the middle of the sub-window.
        """
        a, f = self.aug, self.frames
        u = rng.random()
        scale, shift = 1.0, 0.0
        bpo = self.features.bins_per_octave
        if u < a.p_speed:
            scale = rng.uniform(*a.speed_range)
            shift = bpo * math.log2(scale)
        elif u < a.p_speed + a.p_pitch:
            shift = rng.uniform(*a.pitch_semitones) * bpo / 12.0
        elif u < a.p_speed + a.p_pitch + a.p_stretch:
            scale = rng.uniform(*a.stretch_range)
        half = (f - 1) / 2 * scale
        if centre is None:
            centre = rng.uniform(half, len(clean) - 1 - half)
        else:
            centre = float(np.clip(centre, half, len(clean) - 1 - half))
        pos = centre + (np.arange(f) - (f - 1) / 2) * scale
        power = _db_to_power(_interp_frames(clean, pos))
        sig_energy = float(_db_to_power(energy[np.clip(np.round(pos).astype(int), 0, len(energy) - 1)]).mean())
        if shift:
            power = shift_bands(power, shift)
        if rng.random() < a.p_reverb:
            power = self._room(power, rng)
        if other is not None and rng.random() < a.p_music:
            power = self._music(power, other, rng, sig_energy)
        if rng.random() < a.p_speech:
            power = power + self._speech(rng, f, sig_energy, rng.uniform(*a.speech_snr_db_range))
        if rng.random() < a.p_phone:
            noise, n_e = self._noise(rng, f, 1)
            power = power + noise * np.float32(sig_energy / n_e * 10 ** (-rng.uniform(5, 20) / 10))
            power = power * self.eq[int(rng.integers(len(self.eq)))][None, :]
        if rng.random() < a.p_noise:
            color = int(rng.random() < 0.5)
            noise, n_e = self._noise(rng, f, color)
            power = power + noise * np.float32(sig_energy / n_e * 10 ** (-rng.uniform(*a.snr_db_range) / 10))
        if rng.random() < a.p_codec:
            cutoff = rng.uniform(3000, 7000)
            power = power * np.where(self.centres > cutoff, np.float32(10 ** -rng.uniform(2, 5)), 1).astype(np.float32)
        return 10.0 * np.log10(power + 1e-12), float(centre)
