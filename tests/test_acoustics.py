"""Tests for the acoustic-chain distortions in ``audiocopy.training.augment``:
rooms, devices, ambience, transcode and chain.

Every answer is known by construction: exponential decays of set RT60,
sines below and above a filter edge, level steps for the AGC, noise bursts
and clicks for alignment, harmonics for hum. Signals are a few seconds at
16 kHz, so the whole file runs in seconds on a CPU; codec tests skip with
the reason when ffmpeg or an encoder is missing.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import synth
from scipy import signal as sps

from audiocopy.errors import AudiocopyError
from audiocopy.training.augment import ambience as A
from audiocopy.training.augment import chain as C
from audiocopy.training.augment import devices as D
from audiocopy.training.augment import rooms as R
from audiocopy.training.augment import transcode as T

SR = 16000


def level_db(y) -> float:
    y = np.asarray(y, dtype=np.float64)
    return 10.0 * math.log10(float(np.mean(y * y)) + 1e-30)


def gain_db(process, freq_hz: float, sr: int = SR) -> float:
    """Output level minus input level of a 1 s sine, measured on its second half (transients gone)."""
    x = synth.tone(freq_hz, 1.0, sr, 0.5)
    return level_db(process(x)[sr // 2:]) - level_db(x[sr // 2:])


def noise_bursts(seed: int = 42, n: int = 40000) -> np.ndarray:
    """Five 25 ms white-noise bursts in silence: their cross-correlation has one sharp peak."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n, dtype=np.float32)
    for start in range(2000, n - 1000, 8000):
        x[start:start + 400] = rng.standard_normal(400) * 0.5
    return x


def modulated_noise(seed: int = 42, n: int = 40000) -> np.ndarray:
    """White noise whose level changes every 0.25 s: one sharp correlation peak, and work for the AGC.

    Longer than a few bursts on purpose: through a ringing speaker and a
    reverberant room, the random side lobes of a short probe's correlation
    grow large enough to pass for an arrival.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.repeat(rng.uniform(0.02, 0.2, -(-n // 4000)), 4000)[:n]
    return x.astype(np.float32)


def xcorr(x: np.ndarray, y: np.ndarray, max_lag: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(lags, |correlation|) of y against x; lag > 0 means y is late."""
    lags = np.arange(-max_lag, max_lag + 1)
    core = x[max_lag:-max_lag].astype(np.float64)
    corr = np.array([np.dot(core, y[max_lag + k: y.size - max_lag + k]) for k in lags])
    return lags, np.abs(corr)


def first_arrival_lag(x: np.ndarray, y: np.ndarray) -> int:
    """Earliest lag whose correlation reaches half the largest: the direct sound, even where a
    strong reflection (a mic near a wall) correlates more than the direct path does."""
    lags, corr = xcorr(x, y)
    return int(lags[np.argmax(corr >= 0.5 * corr.max())])


# ---------------------------------------------------------------- rooms


@pytest.mark.parametrize("rt60", [0.3, 0.8, 1.5])
def test_measure_rt60_on_a_known_exponential_decay(rt60):
    rng = np.random.default_rng(0)
    t = np.arange(int(2 * rt60 * SR)) / SR
    ir = (rng.standard_normal(t.size) * np.exp(-3 * math.log(10) * t / rt60)).astype(np.float32)
    assert R.measure_rt60(ir, sample_rate=SR) == pytest.approx(rt60, rel=0.05)
    assert R.measure_rt60(ir, sample_rate=SR, span_db=20) == pytest.approx(rt60, rel=0.05)
    assert R.measure_rt60(ir, sample_rate=SR, band_hz=1000) == pytest.approx(rt60, rel=0.1)


@pytest.mark.parametrize("size, rt60", [((4.0, 3.5, 2.7), 0.3), ((9.0, 7.0, 3.2), 0.7), ((25.0, 18.0, 9.0), 1.4)])
def test_room_has_the_requested_rt60(size, rt60):
    spec = R.RoomSpec(size, (1.0, 1.2, 1.5), (size[0] - 1.0, size[1] / 2, 1.2), rt60, absorption=0.3)
    ir = R.room_impulse_response(spec, sample_rate=SR, rng=np.random.default_rng(1))
    assert R.measure_rt60(ir, sample_rate=SR) == pytest.approx(rt60, rel=0.2)
    assert R.measure_rt60(ir, sample_rate=SR, band_hz=1000) == pytest.approx(rt60, rel=0.2)


@pytest.mark.parametrize("seed", range(6))
def test_random_rooms_have_their_mid_band_rt60(seed):
    rng = np.random.default_rng(seed)
    spec = R.random_room(rng)
    assert 0.2 <= spec.rt60_s <= 1.5 and 0.1 <= spec.distance_m <= 8.0
    ir = R.room_impulse_response(spec, sample_rate=SR, rng=rng)
    mid = np.mean([R.measure_rt60(ir, sample_rate=SR, band_hz=f) for f in (500, 1000)])
    assert mid == pytest.approx(spec.rt60_s, rel=0.2)


def test_direct_path_is_unit_and_geometry_sets_the_direct_to_reverberant_ratio():
    """At the critical distance 0.057 sqrt(V / RT60) direct and reverberant energy are equal."""
    size, rt60 = (10.0, 8.0, 3.5), 0.8
    critical = 0.057 * math.sqrt(math.prod(size) / rt60)
    drr = {}
    for distance in (0.5, critical, 5.0):
        spec = R.RoomSpec(size, (2.0, 4.0, 1.5), (2.0 + distance, 4.0, 1.5), rt60, 0.3)
        ir = R.room_impulse_response(spec, sample_rate=SR, rng=np.random.default_rng(2))
        d = R.direct_delay_samples(spec, sample_rate=SR)
        assert d == round(distance / R.SPEED_OF_SOUND * SR)
        assert ir[d] == pytest.approx(1.0, abs=1e-3)
        assert np.max(np.abs(ir[:d])) < 0.05  # nothing arrives before the direct sound
        drr[distance] = 10 * math.log10(ir[d] ** 2 / np.sum(ir[d + 1:].astype(np.float64) ** 2))
    assert drr[critical] == pytest.approx(0.0, abs=2.0)
    assert drr[0.5] > drr[critical] + 4.0 > drr[5.0] + 8.0


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_room_impulse_response_is_seeded_and_fast():
    spec = R.RoomSpec((6.0, 5.0, 3.0), (1.0, 1.0, 1.5), (4.0, 3.0, 1.2), 1.0, 0.25)
    a = R.room_impulse_response(spec, sample_rate=SR, rng=np.random.default_rng(3))
    b = R.room_impulse_response(spec, sample_rate=SR, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    best = min(_seconds(lambda: R.room_impulse_response(spec, sample_rate=SR, rng=np.random.default_rng(0)))
               for _ in range(3))
    assert best < 0.05


def test_move_source_keeps_room_and_mic():
    spec = R.random_room(np.random.default_rng(4))
    other = R.move_source(spec, np.random.default_rng(5))
    assert (other.size_m, other.mic_m, other.rt60_s) == (spec.size_m, spec.mic_m, spec.rt60_s)
    assert other.distance_m >= 0.5 and other.source_m != spec.source_m


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize("kind", sorted(D.SPEAKER_KINDS))
def test_small_speakers_lose_the_bass(kind):
    for seed in range(3):
        spec = dataclasses.replace(D.random_speaker(np.random.default_rng(seed), kind=kind), drive_db=0.0)
        play = lambda x: D.loudspeaker(x, spec, sample_rate=SR)  # noqa: E731
        cut = spec.highpass_hz
        passband = math.sqrt(cut * min(spec.lowpass_hz, 6000.0))
        assert gain_db(play, passband) - gain_db(play, cut / 4) >= 20.0, spec


@pytest.mark.parametrize("kind", sorted(D.MIC_KINDS))
def test_microphones_are_band_limited(kind):
    sr = 48000  # room above the edge for a tone at twice it
    spec = dataclasses.replace(D.random_mic(np.random.default_rng(7), kind=kind), snr_db=math.inf)
    record = lambda x: D.microphone(x, spec, sample_rate=sr, rng=np.random.default_rng(0))  # noqa: E731
    inside = math.sqrt(spec.highpass_hz * spec.lowpass_hz)
    assert gain_db(record, inside, sr) - gain_db(record, 2 * spec.lowpass_hz, sr) >= 20.0
    assert gain_db(record, inside, sr) - gain_db(record, spec.highpass_hz / 4, sr) >= 20.0


def test_soft_clipping_keeps_the_peak_and_squashes_the_crest():
    x = synth.tone(1000.0, 0.5, SR, 0.5)
    clean = D.loudspeaker(x, D.SpeakerSpec(100.0, 2, 7000.0), sample_rate=SR)
    driven = D.loudspeaker(x, D.SpeakerSpec(100.0, 2, 7000.0, drive_db=12.0), sample_rate=SR)
    assert np.max(np.abs(driven)) == pytest.approx(np.max(np.abs(clean)), rel=1e-4)
    assert level_db(driven) > level_db(clean) + 1.0  # same peak, fuller wave


def _step(quiet_db: float, loud_db: float, seconds: float = 2.0) -> np.ndarray:
    x = np.random.default_rng(8).standard_normal(int(2 * seconds * SR)).astype(np.float32)
    half = x.size // 2
    x[:half] *= 10 ** (quiet_db / 20)
    x[half:] *= 10 ** (loud_db / 20)
    return x


def test_agc_levels_a_jump_of_20_db():
    spec = D.AgcSpec(target_db=-20.0, ratio=20.0, attack_s=0.02, release_s=0.3)
    y = D.agc(_step(-35.0, -15.0), spec, sample_rate=SR)
    half = y.size // 2
    quiet = level_db(y[half // 2:half])
    assert level_db(y[half:half + 400]) > quiet + 10.0  # the jump gets through before the attack acts
    assert level_db(y[half + int(0.3 * SR):]) == pytest.approx(quiet, abs=2.0)  # and is levelled after


@pytest.mark.parametrize("input_db", [-40.0, -25.0, -8.0])
def test_agc_steady_signal_converges_to_the_target(input_db):
    x = _step(input_db, input_db)
    y = D.agc(x, D.AgcSpec(target_db=-18.0, ratio=50.0, max_gain_db=30.0), sample_rate=SR)
    assert level_db(y[SR:]) == pytest.approx(-18.0, abs=1.0)


def test_agc_is_causal_and_a_compressor_only_cuts():
    x = _step(-35.0, -10.0)
    spec = D.AgcSpec(target_db=-20.0, ratio=4.0, max_gain_db=0.0)
    y = D.agc(x, spec, sample_rate=SR)
    changed = x.copy()
    changed[30000:] *= 5.0
    np.testing.assert_array_equal(D.agc(changed, spec, sample_rate=SR)[:30000], y[:30000])
    half = x.size // 2
    np.testing.assert_allclose(y[:half - 1000], x[:half - 1000], rtol=1e-5)  # below threshold: untouched
    assert level_db(y[half + SR // 2:]) == pytest.approx(-20.0 + (-10.0 + 20.0) / 4.0, abs=1.0)


@pytest.mark.parametrize("device_rate", [44100, 48000])
@pytest.mark.parametrize("drift_ppm", [0.0, 200.0, -500.0])
def test_capture_keeps_length_and_frequency_up_to_the_drift(device_rate, drift_ppm):
    x = synth.tone(1000.0, 2.0, SR, 0.5)
    y = D.capture(x, D.CaptureSpec(device_rate, drift_ppm), sample_rate=SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert synth.peak_hz(y, SR) == pytest.approx(1000.0 / (1 + drift_ppm * 1e-6), abs=0.05)


def test_capture_without_drift_keeps_timing():
    x = np.zeros(SR, dtype=np.float32)
    x[8000] = 1.0
    y = D.capture(x, D.CaptureSpec(44100, 0.0), sample_rate=SR)
    assert int(np.argmax(np.abs(y))) == 8000


# ---------------------------------------------------------------- transcode


def _need(codec: str):
    if not T.codec_available(codec):
        pytest.skip(f"{codec}: ffmpeg or its {T.CODECS[codec].encoder} encoder is not installed")


@pytest.mark.parametrize("codec, kbps, rate", [("mp3", 64, None), ("mp3", 128, 44100), ("aac", 64, None),
                                               ("aac", 128, 44100), ("opus", 32, None)])
def test_transcode_output_is_aligned_with_its_input(codec, kbps, rate):
    _need(codec)
    x = noise_bursts()
    y = T.transcode(x, codec=codec, bitrate_kbps=kbps, sample_rate=SR, rate=rate)
    assert y.shape == x.shape and y.dtype == np.float32
    lags, corr = xcorr(x, y)
    assert abs(lags[np.argmax(corr)]) <= 2
    music = synth.melody(1, 2.0, SR)
    kept = T.transcode(music, codec=codec, bitrate_kbps=kbps, sample_rate=SR, rate=rate)
    assert np.corrcoef(music, kept)[0, 1] > 0.9  # lossy, but the same music at the same time


def test_transcode_refuses_bad_arguments_and_missing_ffmpeg(monkeypatch):
    x = np.zeros(1000, dtype=np.float32)
    with pytest.raises(R.AugmentValueError, match="codec must be one of"):
        T.transcode(x, codec="flac", bitrate_kbps=64, sample_rate=SR)
    if T.codec_available("mp3"):
        with pytest.raises(R.AugmentValueError, match="8-160 kbps"):
            T.transcode(x, codec="mp3", bitrate_kbps=320, sample_rate=SR)
    monkeypatch.setattr(T.shutil, "which", lambda name: None)
    with pytest.raises(T.CodecUnavailable, match="ffmpeg is not on PATH"):
        T.transcode(x, codec="mp3", bitrate_kbps=64, sample_rate=SR)


# ---------------------------------------------------------------- ambience


@pytest.mark.parametrize("kind", A.AMBIENCE_KINDS)
def test_ambience_generators_are_seeded_unit_rms_float32(kind):
    a = A.ambience(kind, 20000, np.random.default_rng(9), sample_rate=SR)
    b = A.ambience(kind, 20000, np.random.default_rng(9), sample_rate=SR)
    assert a.shape == (20000,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert level_db(a) == pytest.approx(0.0, abs=0.01)


def _band_share(y: np.ndarray, low: float, high: float, sr: int = SR) -> float:
    f, p = sps.welch(y, sr, nperseg=2048)
    return float(p[(f >= low) & (f < high)].sum() / p.sum())


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_hvac_hums_at_the_mains_harmonics(mains):
    for seed in range(3):
        y = A.hvac(5 * SR, np.random.default_rng(seed), sample_rate=SR, mains_hz=mains)
        f, p = sps.welch(y, SR, nperseg=SR)  # 1 Hz bins
        def prominence(hz):
            i = int(round(hz))
            return 10 * math.log10(p[i] / np.median(np.r_[p[i - 15:i - 3], p[i + 4:i + 16]]))
        assert prominence(mains) > 6.0 and prominence(2 * mains) > 6.0 and prominence(3 * mains) > 3.0
        assert prominence(1.5 * mains) < 3.0  # a line between harmonics would not be hum
        assert _band_share(y, 0.0, 500.0) > 0.9


def test_traffic_is_low_frequency_and_clatter_sparse_and_high():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        assert _band_share(A.traffic(3 * SR, rng, sample_rate=SR), 0.0, 500.0) > 0.75
        clatter = A.clatter(3 * SR, rng, sample_rate=SR)
        assert _band_share(clatter, 1000.0, SR / 2) > 0.9
        blocks = np.mean(clatter.reshape(-1, 160).astype(np.float64) ** 2, axis=1)  # 10 ms
        assert np.percentile(blocks, 75) < 0.05 * blocks.max()  # quiet most of the time


def test_babble_sounds_like_voices():
    y = A.babble(3 * SR, np.random.default_rng(10), sample_rate=SR)
    assert _band_share(y, 80.0, 4000.0) > 0.8
    f, p = sps.welch(y, SR, nperseg=2048)
    assert 80.0 <= f[np.argmax(p)] <= 1000.0  # the long-term spectrum of speech peaks in the voice band


def test_voice_bank_is_cached_on_disk(tmp_path):
    bank = A.cached_voice_bank(tmp_path, sample_rate=SR, n_voices=2, seconds=1.0, engine="formant")
    (path,) = tmp_path.glob("voices-formant-*.npz")
    again = A.cached_voice_bank(tmp_path, sample_rate=SR, n_voices=2, seconds=1.0, engine="formant")
    assert again.engine == "formant" and len(again.voices) == 2
    for a, b in zip(bank.voices, again.voices):
        np.testing.assert_array_equal(a, b)
    y = A.babble(SR, np.random.default_rng(0), sample_rate=SR, bank=again, talkers=3)
    assert y.shape == (SR,)
    with pytest.raises(R.AugmentValueError, match="at 8000 Hz"):
        A.babble(SR, np.random.default_rng(0), sample_rate=8000, bank=again)


def test_espeak_voice_bank():
    if not A.espeak_available():
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    bank = A.build_voice_bank(sample_rate=SR, n_voices=2, seconds=2.0, seed=1, engine="espeak")
    assert bank.engine == "espeak" and all(v.size >= SR for v in bank.voices)
    assert _band_share(A.babble(2 * SR, np.random.default_rng(0), sample_rate=SR, bank=bank), 80.0, 5000.0) > 0.8


def test_mix_at_snr_sets_the_snr():
    x = synth.melody(2, 1.0, SR)
    noise = A.hvac(x.size, np.random.default_rng(11), sample_rate=SR)
    for snr in (-5.0, 0.0, 20.0):
        y = A.mix_at_snr(x, noise, snr)
        assert level_db(x) - level_db(y - x) == pytest.approx(snr, abs=0.01)
    np.testing.assert_array_equal(A.mix_at_snr(np.zeros(10, np.float32), np.ones(10, np.float32), 0.0), 0.0)


# ---------------------------------------------------------------- chain


def _chain(kind: str, seed: int) -> C.AcousticChain:
    """A random chain; room and phone chains without a codec (one ffmpeg run each is slow; see the codec test)."""
    codecs = T.available_codecs() if kind == "broadcast" else ()
    if kind == "broadcast" and not {"mp3", "aac"} & set(codecs):
        pytest.skip("broadcast chains need ffmpeg with libmp3lame or aac")
    return C.random_chain(np.random.default_rng(seed), kind=kind, codecs=codecs)


@pytest.mark.parametrize("kind", C.CHAIN_KINDS)
def test_apply_chain_keeps_length_alignment_and_is_seeded(kind):
    x = modulated_noise()
    for seed in range(3 if kind != "broadcast" else 1):
        chain = _chain(kind, seed)
        y = C.apply_chain(x, chain, sample_rate=SR, rng=np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert 20 * math.log10(np.max(np.abs(y))) == pytest.approx(chain.peak_db, abs=1e-3)
        # Filter group delay and clock drift (up to 8 samples by the end) remain; a missed room delay is 20-500.
        assert abs(first_arrival_lag(x, y)) <= 16, chain
        np.testing.assert_array_equal(C.apply_chain(x, chain, sample_rate=SR, rng=np.random.default_rng(seed)), y)


def test_room_only_chain_puts_the_direct_sound_on_the_click():
    room = R.random_room(np.random.default_rng(12), kind="medium")
    chain = C.AcousticChain("room", room=room)
    x = np.zeros(SR, dtype=np.float32)
    x[4000] = 0.5
    y = C.apply_chain(x, chain, sample_rate=SR, rng=np.random.default_rng(0))
    assert np.max(np.abs(y[:3999])) < 0.05 * np.max(np.abs(y))
    assert abs(y[4000]) > 0.2 * np.max(np.abs(y))


def test_chain_with_codec_and_different_seeds():
    if not T.codec_available("opus"):
        pytest.skip("opus: ffmpeg or libopus is not installed")
    x = synth.melody(3, 2.5, SR)
    chain = dataclasses.replace(_chain("phone", 13), codec=C.CodecSpec("opus", 32, 48000))
    a = C.apply_chain(x, chain, sample_rate=SR, rng=np.random.default_rng(1))
    b = C.apply_chain(x, chain, sample_rate=SR, rng=np.random.default_rng(2))
    assert a.shape == x.shape and not np.array_equal(a, b)


def test_random_chain_is_machine_independent_and_kinds_differ():
    room = C.random_chain(np.random.default_rng(5), kind="room")
    assert room == C.random_chain(np.random.default_rng(5), kind="room", codecs=("opus",))
    broadcast = C.random_chain(np.random.default_rng(5), kind="broadcast")
    assert broadcast.room is None and broadcast.codec.codec in ("mp3", "aac") and broadcast.agc.max_gain_db == 0.0
    phone = C.random_chain(np.random.default_rng(5), kind="phone")
    assert phone.room.distance_m <= 1.5 and phone.mic.lowpass_hz <= 7500.0


# ---------------------------------------------------------------- invalid input


GOOD = np.zeros(1000, dtype=np.float32)
ROOM = ((5.0, 4.0, 3.0), (1.0, 1.0, 1.5), (4.0, 3.0, 1.2))


@pytest.mark.parametrize("call, message", [
    (lambda: R.RoomSpec(*ROOM, rt60_s=-0.5), "rt60_s"),
    (lambda: R.RoomSpec(ROOM[0], ROOM[1], (6.0, 3.0, 1.2), 0.5), "mic_m .* outside"),
    (lambda: R.RoomSpec(ROOM[0], ROOM[1], ROOM[1], 0.5), "0.1 m apart"),
    (lambda: R.RoomSpec(*ROOM, rt60_s=0.5, absorption=(0.2, 0.3)), "one per"),
    (lambda: R.RoomSpec(*ROOM, rt60_s=0.5, absorption=1.5), "absorption"),
    (lambda: R.random_room(np.random.default_rng(0), kind="cathedral"), "kind"),
    (lambda: R.measure_rt60(np.array([1.0, np.nan], np.float32), sample_rate=SR), "NaN"),
    (lambda: R.measure_rt60(np.ones(100, np.float32), sample_rate=SR), "only reaches"),
    (lambda: R.room_impulse_response(R.RoomSpec(*ROOM, 0.5), sample_rate=0, rng=np.random.default_rng(0)),
     "sample_rate"),
    (lambda: R.room_impulse_response(R.RoomSpec(*ROOM, 0.5), sample_rate=SR, rng=0), "Generator"),
    (lambda: D.loudspeaker(np.array([0.0, np.nan], np.float32), D.SpeakerSpec(200.0), sample_rate=SR), "NaN"),
    (lambda: D.loudspeaker((GOOD * 0).astype(np.int16), D.SpeakerSpec(200.0), sample_rate=SR), "dtype int16"),
    (lambda: D.microphone(np.zeros((2, 100), np.float32), D.MicSpec(100.0, 7000.0), sample_rate=SR,
                          rng=np.random.default_rng(0)), "1-D"),
    (lambda: D.agc(GOOD, D.AgcSpec(), sample_rate=0), "sample_rate"),
    (lambda: D.agc(GOOD, D.AgcSpec(ratio=0.5), sample_rate=SR), "ratio"),
    (lambda: D.SpeakerSpec(300.0, lowpass_hz=200.0), "lowpass_hz"),
    (lambda: D.SpeakerSpec(300.0, highpass_order=0), "highpass_order"),
    (lambda: D.CaptureSpec(48000, drift_ppm=5000.0), "drift_ppm"),
    (lambda: D.capture(GOOD, D.CaptureSpec(), sample_rate=16000.0), "integer"),
    (lambda: D.random_speaker(np.random.default_rng(0), kind="horn"), "kind"),
    (lambda: A.hvac(100, np.random.default_rng(0), sample_rate=SR, mains_hz=55), "50 or 60"),
    (lambda: A.ambience("rain", 100, np.random.default_rng(0), sample_rate=SR), "kind"),
    (lambda: A.traffic(0, np.random.default_rng(0), sample_rate=SR), "n_samples"),
    (lambda: A.mix_at_snr(GOOD, GOOD[:10], 0.0), "same length"),
    (lambda: A.build_voice_bank(sample_rate=SR, engine="festival"), "engine"),
    (lambda: A.VoiceBank(SR, "formant", ()), "at least one voice"),
    (lambda: C.random_chain(np.random.default_rng(0), kind="tv"), "kind"),
    (lambda: C.AcousticChain("tv"), "kind"),
    (lambda: C.random_chain(np.random.default_rng(0), kind="broadcast", codecs=("opus",)), "mp3 or aac"),
    (lambda: C.apply_chain(np.array([np.inf], np.float32), C.AcousticChain("room"), sample_rate=SR,
                           rng=np.random.default_rng(0)), "NaN or infinite"),
    (lambda: C.apply_chain(GOOD, "room", sample_rate=SR, rng=np.random.default_rng(0)), "AcousticChain"),
    (lambda: C.NoiseSpec("rain", 10.0), "noise kind"),
    (lambda: C.CodecSpec("opus", 32, 44100), "runs at"),
    (lambda: T.transcode(GOOD, codec="vorbis", bitrate_kbps=64, sample_rate=SR), "codec"),
])
def test_invalid_input_raises_a_clear_error(call, message):
    with pytest.raises(R.AugmentValueError, match=message) as info:
        call()
    assert isinstance(info.value, AudiocopyError) and isinstance(info.value, ValueError)
