"""Tests for ``audiocopy.training.augment``: seeded synthetic signals with known answers.

Tones check frequency maps (speed, stretch, pitch, codec), click trains check
tempo, long noise checks spectral slopes and SNRs exactly, and a burst in
silence checks that reverb adds a tail. Everything runs at 16 kHz on a few
seconds of audio so the file stays fast.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import synth
from scipy import signal as sps

from audiocopy.config import AugmentParams
from audiocopy.errors import AudiocopyError
from audiocopy.training import augment as A
from audiocopy.training.augment import codec as codec_module

SR = 16000


def tone(freq_hz: float, seconds: float = 2.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    return synth.tone(freq_hz, seconds, sr, amp)


def peak_hz(y: np.ndarray, sr: int = SR) -> float:
    return synth.peak_hz(y, sr)


def rms_db(y: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    return 10 * math.log10(np.mean(y * y) + 1e-30)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return rms_db(clean) - rms_db(noisy.astype(np.float64) - clean)


def click_train(period: int, seconds: float = 3.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    x[period // 2::period] = 1.0
    return x


def clicks(y: np.ndarray) -> tuple[int, float]:
    """(number of clicks, mean spacing in samples) of a click train.

    The spacing is the slope of a line through the envelope peaks, so the
    vocoder's timing jitter of single clicks (up to one hop, 16 ms) averages
    out; the count catches clicks that were lost or doubled.
    """
    env = np.convolve(np.asarray(y, dtype=np.float64) ** 2, np.hanning(401), mode="same")
    peaks, _ = sps.find_peaks(env, distance=800, height=0.02 * env.max())
    assert peaks.size >= 8, "clicks were lost"
    return peaks.size, float(np.polyfit(np.arange(peaks.size), peaks, 1)[0])


# ---------------------------------------------------------------- speed / tempo / pitch


@pytest.mark.parametrize("factor", [1.1, 0.9])
def test_speed_change_moves_pitch_and_length_together(factor):
    x = tone(440.0)
    y = A.speed_change(x, factor, sample_rate=SR)
    assert y.dtype == np.float32
    assert y.size == round(x.size / factor)
    assert peak_hz(y) == pytest.approx(440.0 * factor, rel=0.002)


def test_speed_change_identity_is_a_copy():
    x = tone(440.0, 0.5)
    y = A.speed_change(x, 1.0, sample_rate=SR)
    np.testing.assert_array_equal(x, y)
    assert y is not x


@pytest.mark.parametrize("rate", [1.1, 0.9])
def test_time_stretch_keeps_pitch_and_changes_length(rate):
    x = tone(440.0)
    y = A.time_stretch(x, rate, sample_rate=SR)
    assert y.dtype == np.float32
    assert y.size == round(x.size / rate)
    assert peak_hz(y) == pytest.approx(440.0, rel=0.01)


def test_time_stretch_keeps_a_tone_clean_and_at_level():
    # Phase coherence: nearly all the energy of a stretched pure tone stays
    # within a few Hz of it, and its level is unchanged.
    x = tone(440.0, 3.0)
    y = A.time_stretch(x, 1.13, sample_rate=SR)
    mid = y[SR // 2: -SR // 2].astype(np.float64)
    spec = np.abs(np.fft.rfft(mid * np.hanning(mid.size))) ** 2
    freqs = np.fft.rfftfreq(mid.size, 1 / SR)
    near = spec[np.abs(freqs - 440.0) < 20.0].sum()
    assert near / spec.sum() > 0.99
    assert rms_db(mid) == pytest.approx(rms_db(x), abs=1.0)


def test_time_stretch_changes_the_rate_of_a_click_train():
    x = click_train(2000)  # 8 clicks per second
    faster = A.time_stretch(x, 1.25, sample_rate=SR)
    slower = A.time_stretch(x, 0.8, sample_rate=SR)
    assert clicks(x) == (24, pytest.approx(2000, rel=0.001))
    assert clicks(faster) == (24, pytest.approx(1600, rel=0.01))
    assert clicks(slower) == (24, pytest.approx(2500, rel=0.01))


def test_time_stretch_is_fast():
    x = np.random.default_rng(0).standard_normal(4 * SR).astype(np.float32)
    A.time_stretch(x, 1.1, sample_rate=SR)  # warm caches
    best = min(_timed(lambda: A.time_stretch(x, 1.1, sample_rate=SR)) for _ in range(5))
    assert best < 0.05, f"time_stretch of 4 s took {best * 1e3:.1f} ms"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.parametrize("semitones, expected_hz", [(1.0, 466.16), (-2.0, 392.00), (2.5, 507.75)])
def test_pitch_shift_moves_pitch_and_keeps_length(semitones, expected_hz):
    x = tone(440.0)
    y = A.pitch_shift(x, semitones, sample_rate=SR)
    assert y.dtype == np.float32
    assert y.size == x.size
    assert peak_hz(y) == pytest.approx(expected_hz, rel=0.01)


def test_pitch_shift_keeps_tempo():
    x = click_train(2000)
    y = A.pitch_shift(x, 2.0, sample_rate=SR)
    assert y.size == x.size
    assert clicks(y) == (24, pytest.approx(2000, rel=0.01))


# ---------------------------------------------------------------- crop, noise, mixing


def test_random_crop_is_an_excerpt_of_exact_length():
    x = np.arange(1000, dtype=np.float32)
    y = A.random_crop(x, 300, np.random.default_rng(1))
    assert y.shape == (300,) and y.dtype == np.float32
    np.testing.assert_array_equal(y, x[int(y[0]): int(y[0]) + 300])
    starts = {int(A.random_crop(x, 300, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(starts) > 10  # offsets really vary
    np.testing.assert_array_equal(A.random_crop(x, 300, np.random.default_rng(1)), y)


def test_random_crop_pads_a_short_signal():
    x = np.ones(100, dtype=np.float32)
    y = A.random_crop(x, 250, np.random.default_rng(3))
    assert y.shape == (250,)
    assert y.sum() == 100.0
    start = int(np.argmax(y))
    np.testing.assert_array_equal(y[start:start + 100], x)


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr", [-2.0, 10.0, 25.0])
def test_add_noise_hits_the_requested_snr(color, snr):
    x = tone(440.0, 1.0)
    y = A.add_noise(x, snr, np.random.default_rng(7), color=color)
    assert y.shape == x.shape and y.dtype == np.float32
    assert snr_db(x, y) == pytest.approx(snr, abs=0.5)


def test_add_noise_leaves_silence_alone_and_is_seeded():
    x = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(A.add_noise(x, 10.0, np.random.default_rng(0)), x)
    x = tone(440.0, 0.5)
    a = A.add_noise(x, 10.0, np.random.default_rng(5))
    b = A.add_noise(x, 10.0, np.random.default_rng(5))
    c = A.add_noise(x, 10.0, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _slope_db_per_octave(noise: np.ndarray) -> float:
    f, p = sps.welch(noise, fs=SR, nperseg=4096)
    band = (f >= 50) & (f <= 6000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0])


def test_pink_noise_falls_3_db_per_octave():
    noise = A.pink_noise(1 << 18, np.random.default_rng(11))
    assert noise.dtype == np.float32
    assert np.mean(noise.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-3)
    assert _slope_db_per_octave(noise) == pytest.approx(-3.01, abs=0.3)
    white = A.add_noise(np.full(1 << 18, 1e-3, np.float32), 0.0, np.random.default_rng(11))
    assert _slope_db_per_octave(white - 1e-3) == pytest.approx(0.0, abs=0.3)


def test_mix_music_hits_snr_and_tiles_short_other():
    x = tone(440.0, 1.0)
    other = tone(1000.0, 0.3, amp=0.1)
    y = A.mix_music(x, other, 6.0)
    assert y.shape == x.shape
    assert snr_db(x, y) == pytest.approx(6.0, abs=0.05)
    interference = y - x
    period = other.size
    np.testing.assert_allclose(interference[period:2 * period], interference[:period], atol=1e-5)


# ---------------------------------------------------------------- filters, phone, room


def test_bandpass_passes_the_band_and_stops_the_rest():
    def gain_db(freq):
        x = tone(freq, 1.0)
        y = A.bandpass(x, 300.0, 3400.0, sample_rate=SR)
        return rms_db(y[SR // 4: -SR // 4]) - rms_db(x[SR // 4: -SR // 4])

    assert gain_db(1000.0) == pytest.approx(0.0, abs=1.0)
    assert gain_db(100.0) < -20.0
    assert gain_db(6000.0) < -20.0


def test_bandpass_is_zero_phase():
    x = np.random.default_rng(2).standard_normal(SR).astype(np.float32)
    y = A.bandpass(x, 300.0, 3400.0, sample_rate=SR)
    xc = sps.fftconvolve(y, x[::-1], mode="full")
    assert int(np.argmax(xc)) - (x.size - 1) == 0


def test_phone_is_band_limited_and_seeded():
    x = (tone(100.0, 1.0) + tone(1000.0, 1.0) + tone(6000.0, 1.0)).astype(np.float32) / 3
    ys = [A.phone(x, np.random.default_rng(s), sample_rate=SR) for s in (0, 0, 1)]
    np.testing.assert_array_equal(ys[0], ys[1])
    assert not np.array_equal(ys[0], ys[2])
    for y in ys:
        assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
        assert np.max(np.abs(y)) <= np.max(np.abs(x)) + 1e-6
        f, p = sps.welch(y, fs=SR, nperseg=2048)
        level = {hz: 10 * np.log10(p[np.argmin(np.abs(f - hz))]) for hz in (100, 1000, 6000)}
        assert level[1000] - level[100] > 15.0
        assert level[1000] - level[6000] > 15.0


def test_reverb_adds_a_decaying_tail_after_a_burst():
    rng = np.random.default_rng(4)
    x = np.zeros(2 * SR, dtype=np.float32)
    x[:SR // 4] = rng.standard_normal(SR // 4).astype(np.float32) * 0.3
    burst = rms_db(x[:SR // 4])
    short = A.reverb(x, np.random.default_rng(1), sample_rate=SR, rt60_s=0.3, wet=0.5)
    long_ = A.reverb(x, np.random.default_rng(1), sample_rate=SR, rt60_s=1.0, wet=0.5)
    assert short.shape == x.shape and short.dtype == np.float32
    after = slice(SR // 4 + SR // 20, SR // 4 + 3 * SR // 10)  # 50-300 ms after the burst
    late = slice(SR // 4 + SR // 2, SR // 4 + 3 * SR // 4)  # 500-750 ms after
    assert rms_db(long_[after]) > burst - 25.0  # clearly audible tail where x is silent
    assert rms_db(long_[late]) > rms_db(short[late]) + 10.0  # longer RT60, longer tail
    assert rms_db(long_[late]) < rms_db(long_[after]) - 3.0  # and it decays


def test_room_impulse_response_has_unit_energy_and_rt60_length():
    ir = A.exponential_room_response(np.random.default_rng(0), sample_rate=SR, rt60_s=0.5)
    assert ir.shape == (SR // 2,)
    assert float(np.sum(ir.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)


# ---------------------------------------------------------------- codec

needs_mp3 = pytest.mark.skipif(not A.mp3_available(), reason="libsndfile cannot write MP3")


@needs_mp3
@pytest.mark.parametrize("kbps", [32, 64, 128])
def test_mp3_roundtrip_keeps_pitch_and_alignment(kbps):
    rng = np.random.default_rng(9)
    # A tone over amplitude-modulated noise: broadband, so a misalignment of
    # even one sample lowers the correlation, yet with a clear pitch.
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * np.arange(2 * SR) / SR)
    x = (tone(440.0, 2.0, 0.4) + 0.1 * env * rng.standard_normal(2 * SR)).astype(np.float32)
    y = A.mp3_roundtrip(x, sample_rate=SR, bitrate_kbps=kbps)
    assert y.shape == x.shape and y.dtype == np.float32
    assert peak_hz(y) == pytest.approx(440.0, rel=0.01)
    core = slice(2000, -2000)
    assert np.corrcoef(x[core], y[core])[0, 1] > 0.9
    xc = sps.fftconvolve(y[core], x[core][::-1], mode="full")
    assert abs(int(np.argmax(xc)) - (x[core].size - 1)) <= 1


@needs_mp3
def test_mp3_roundtrip_handles_hot_input():
    x = tone(440.0, 1.0, amp=1.5)
    y = A.mp3_roundtrip(x, sample_rate=SR, bitrate_kbps=64)
    assert np.max(np.abs(y)) == pytest.approx(1.5, rel=0.1)


def test_mp3_roundtrip_refuses_when_mp3_is_missing(monkeypatch):
    monkeypatch.setattr(codec_module, "mp3_available", lambda: False)
    with pytest.raises(A.CodecUnavailable, match="MP3"):
        A.mp3_roundtrip(tone(440.0, 0.5), sample_rate=SR, bitrate_kbps=64)
    assert issubclass(A.CodecUnavailable, AudiocopyError)


# ---------------------------------------------------------------- the training chain


def music_like(seconds: float, seed: int) -> np.ndarray:
    """Chords of decaying harmonic notes plus a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n, dtype=np.float64)
    t = np.arange(SR // 2) / SR
    for start in range(0, n - SR // 2, SR // 4):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        note = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * np.exp(-4 * t)
        out[start:start + t.size] += note
    out += 0.01 * rng.standard_normal(n)
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


LENGTH = 40000
SOURCE = music_like(3.25, 0)  # ~1.3x LENGTH
OTHER = music_like(4.0, 1)


def distort(seed, params=AugmentParams(), source=SOURCE, other=OTHER, length=LENGTH):
    return A.random_distortion(source, np.random.default_rng(seed), params=params,
                               sample_rate=SR, length=length, other_music=other)


def test_random_distortion_is_seeded_exact_and_bounded():
    outs = [distort(s) for s in range(12)]
    np.testing.assert_array_equal(distort(3), outs[3])
    for y in outs:
        assert y.shape == (LENGTH,) and y.dtype == np.float32
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) <= 1.0
    assert len({y.tobytes() for y in outs}) == len(outs)


def test_random_distortion_runs_every_stage():
    everything = AugmentParams(p_speed=0.0, p_pitch=1.0, p_stretch=0.0, p_noise=1.0, p_music=1.0,
                               p_phone=1.0, p_reverb=1.0, p_codec=1.0 if A.mp3_available() else 0.0)
    for seed in range(3):
        y = distort(seed, everything)
        assert y.shape == (LENGTH,) and np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


def test_random_distortion_without_distortions_is_a_scaled_excerpt():
    nothing = AugmentParams(p_speed=0, p_pitch=0, p_stretch=0, p_noise=0, p_music=0, p_phone=0,
                            p_reverb=0, p_codec=0)
    y = distort(0, nothing)
    xc = sps.fftconvolve(SOURCE, y[::-1], mode="valid")
    start = int(np.argmax(np.abs(xc)))
    excerpt = SOURCE[start:start + LENGTH]
    gain = np.dot(y, excerpt) / np.dot(excerpt, excerpt)
    np.testing.assert_allclose(y, gain * excerpt, atol=1e-6)
    peak_db = 20 * math.log10(np.max(np.abs(y)))
    assert A.PEAK_DB_RANGE[0] - 1e-6 <= peak_db <= A.PEAK_DB_RANGE[1] + 1e-6


@pytest.mark.parametrize("which, expected_hz", [("speed", 440.0 * 1.1), ("pitch", 440.0 * 2 ** (2 / 12)),
                                                ("stretch", 440.0)])
def test_random_distortion_applies_the_chosen_resampling(which, expected_hz):
    params = AugmentParams(speed_range=(1.1, 1.1), pitch_semitones=(2.0, 2.0), stretch_range=(1.1, 1.1),
                           p_speed=float(which == "speed"), p_pitch=float(which == "pitch"),
                           p_stretch=float(which == "stretch"), p_noise=0, p_music=0, p_phone=0,
                           p_reverb=0, p_codec=0)
    y = distort(0, params, source=tone(440.0, 3.25))
    assert peak_hz(y) == pytest.approx(expected_hz, rel=0.01)


def test_random_distortion_handles_short_and_silent_sources():
    y = distort(0, source=SOURCE[:1000], other=None)
    assert y.shape == (LENGTH,) and np.all(np.isfinite(y))
    z = distort(0, source=np.zeros(50000, np.float32))
    np.testing.assert_array_equal(z, np.zeros(LENGTH, np.float32))


def test_codec_bitrates_follow_the_configured_range():
    assert A.codec_bitrates(AugmentParams(codec_kbps_range=(32, 128)), SR) == (32, 40, 48, 56, 64, 80, 96, 112, 128)
    assert A.codec_bitrates(AugmentParams(codec_kbps_range=(16, 24)), SR) == (16, 24)
    with pytest.raises(A.AugmentValueError):
        A.codec_bitrates(AugmentParams(codec_kbps_range=(1, 7)), SR)


def test_resampling_distortions_are_exclusive_and_follow_probabilities():
    params = AugmentParams(p_speed=0.5, p_pitch=0.3, p_stretch=0.1)
    picks = [A.resampling_choice(params, u) for u in np.linspace(0, 1, 1000, endpoint=False)]
    assert picks.count("speed") == 500 and picks.count("pitch") == 300
    assert picks.count("stretch") == 100 and picks.count("none") == 100
    over = AugmentParams(p_speed=1.0, p_pitch=1.0, p_stretch=0.0)  # scaled to 0.5 / 0.5
    picks = [A.resampling_choice(over, u) for u in np.linspace(0, 1, 1000, endpoint=False)]
    assert picks.count("speed") == 500 and picks.count("pitch") == 500


# ---------------------------------------------------------------- bad arguments

X = tone(440.0, 0.5)
RNG = np.random.default_rng(0)


@pytest.mark.parametrize("call", [
    lambda: A.speed_change(X, 0.0, sample_rate=SR),
    lambda: A.speed_change(X, -1.1, sample_rate=SR),
    lambda: A.speed_change(X, float("nan"), sample_rate=SR),
    lambda: A.speed_change(X, 1.1, sample_rate=0),
    lambda: A.speed_change(np.zeros((10, 2), np.float32), 1.1, sample_rate=SR),
    lambda: A.time_stretch(X, 0.0, sample_rate=SR),
    lambda: A.time_stretch(X, float("inf"), sample_rate=SR),
    lambda: A.time_stretch(X, 100.0, sample_rate=SR),
    lambda: A.pitch_shift(X, 40.0, sample_rate=SR),
    lambda: A.pitch_shift(X, "up", sample_rate=SR),
    lambda: A.random_crop(X, 0, RNG),
    lambda: A.random_crop(X, -5, RNG),
    lambda: A.random_crop(X, 2.5, RNG),
    lambda: A.add_noise(X, 10.0, RNG, color="blue"),
    lambda: A.add_noise(X, float("nan"), RNG),
    lambda: A.mix_music(X, np.zeros(0, np.float32), 5.0),
    lambda: A.bandpass(X, 3400.0, 300.0, sample_rate=SR),
    lambda: A.bandpass(X, 0.0, 3400.0, sample_rate=SR),
    lambda: A.bandpass(X, 300.0, 8000.0, sample_rate=SR),
    lambda: A.bandpass(X, 300.0, 3400.0, sample_rate=SR, order=0),
    lambda: A.reverb(X, RNG, sample_rate=SR, wet=1.5),
    lambda: A.reverb(X, RNG, sample_rate=SR, rt60_s=-1.0),
    lambda: A.phone(X, RNG, sample_rate=4000),
    lambda: A.mp3_roundtrip(X, sample_rate=SR, bitrate_kbps=500),
    lambda: A.mp3_roundtrip(X, sample_rate=SR, bitrate_kbps=0),
    lambda: A.mp3_roundtrip(X, sample_rate=12345, bitrate_kbps=64),
    lambda: A.random_distortion(SOURCE, RNG, params=AugmentParams(), sample_rate=SR, length=0),
    lambda: A.random_distortion(SOURCE, RNG, params=AugmentParams(p_noise=1.5), sample_rate=SR, length=100),
    lambda: A.random_distortion(SOURCE, RNG, params=AugmentParams(speed_range=(1.2, 0.9)), sample_rate=SR,
                                length=100),
    lambda: A.random_distortion(SOURCE, RNG, params=AugmentParams(stretch_range=(0.0, 1.1)), sample_rate=SR,
                                length=100),
    lambda: A.random_distortion(np.array([0.0, np.nan], np.float32), RNG, params=AugmentParams(),
                                sample_rate=SR, length=100),
    lambda: A.random_distortion(SOURCE, RNG, params=AugmentParams(p_codec=0.1), sample_rate=40000, length=100),
])
def test_bad_arguments_raise_value_errors_of_the_package(call):
    with pytest.raises(A.AugmentValueError) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, AudiocopyError)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        A.random_crop(X, 10, 42)
    with pytest.raises(TypeError, match="Generator"):
        A.random_distortion(SOURCE, np.random.RandomState(0), params=AugmentParams(), sample_rate=SR,
                            length=100)


def test_functions_do_not_modify_their_input():
    x = music_like(1.0, 3)
    before = x.copy()
    rng = np.random.default_rng(0)
    A.speed_change(x, 1.1, sample_rate=SR)
    A.time_stretch(x, 0.9, sample_rate=SR)
    A.pitch_shift(x, 1.0, sample_rate=SR)
    A.add_noise(x, 5.0, rng, color="pink")
    A.phone(x, rng, sample_rate=SR)
    A.reverb(x, rng, sample_rate=SR)
    A.random_distortion(x, rng, params=dataclasses.replace(AugmentParams(), p_phone=1.0), sample_rate=SR,
                        length=8000)
    np.testing.assert_array_equal(x, before)
