"""Tests for ``audiocopy.signal.audio``: decoding, downmix, resampling, raw PCM, WAV out.

Every signal is synthetic (tones with known frequency, amplitude and length),
so each check has an exact expected answer: the decoded length, the peak
frequency after resampling, the amplitude after a stereo downmix. Failure
cases check the *type* of the error (the specific ``AudiocopyError``
subclass) and that its message names the file at fault.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import peak_hz as _peak_hz
from synth import tone as _tone

from audiocopy.config import AudioParams
from audiocopy.errors import AudiocopyError, AudioTooShort, BadAudio, UnsupportedFormat
from audiocopy.signal.audio import load_audio, pcm_to_float, resample, write_wav

SR = AudioParams().sample_rate  # 16000: the internal rate everything decodes to


def tone(freq_hz: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return _tone(freq_hz, seconds, sr, amp)


def peak_hz(y: np.ndarray, sr: int = SR) -> float:
    return _peak_hz(y, sr)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def assert_names_file(exc: BaseException, path: Path) -> None:
    assert isinstance(exc, AudiocopyError)
    assert str(path) in str(exc), f"message does not name the file: {exc}"


# --------------------------------------------------------------------------- decoding

FORMATS = [("WAV", ".wav", 0.0), ("FLAC", ".flac", 0.0), ("OGG", ".ogg", 0.0), ("AIFF", ".aiff", 0.0),
           ("MP3", ".mp3", 0.1)]


@pytest.mark.parametrize("file_rate", [22050, 44100, 48000])
@pytest.mark.parametrize("fmt,ext,length_tol_s", FORMATS, ids=[f[0] for f in FORMATS])
def test_load_audio_decodes_to_mono_float32_at_16k(tmp_path, fmt, ext, length_tol_s, file_rate):
    seconds = 3.0
    path = tmp_path / f"tone{ext}"
    sf.write(path, tone(440.0, seconds, file_rate), file_rate, format=fmt)

    y = load_audio(path)

    assert y.dtype == np.float32 and y.ndim == 1
    if length_tol_s == 0:  # sample-exact containers: exactly seconds * 16000 samples
        assert y.size == round(seconds * SR) == 48000
    else:  # MP3 adds encoder delay and padding
        assert abs(y.size / SR - seconds) <= length_tol_s
    assert abs(peak_hz(y) - 440.0) < 1.0
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    # Amplitude survives decoding and resampling (0.5 peak -> rms 0.354).
    assert rms(y[SR // 2: -SR // 2]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_stereo_is_averaged(tmp_path):
    rate = 44100
    left, right = tone(440.0, 3.0, rate, amp=0.6), tone(440.0, 3.0, rate, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")

    y = load_audio(path)

    assert y.ndim == 1 and y.size == 48000
    # In-phase channels of amplitude 0.6 and 0.2 average to amplitude 0.4.
    assert rms(y[SR // 2: -SR // 2]) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    assert abs(peak_hz(y) - 440.0) < 1.0


def test_stereo_opposite_channels_cancel(tmp_path):
    """The downmix is a mean, not a pick of one channel: L = -R gives silence."""
    rate = 22050
    x = tone(330.0, 3.0, rate)
    path = tmp_path / "cancel.wav"
    sf.write(path, np.stack([x, -x], axis=1), rate, subtype="FLOAT")
    y = load_audio(path)
    assert np.abs(y).max() < 1e-6


def test_custom_params_sample_rate(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, tone(440.0, 3.0, 44100), 44100)
    y = load_audio(path, params=AudioParams(sample_rate=22050))
    assert y.size == 3 * 22050
    assert abs(peak_hz(y, 22050) - 440.0) < 1.0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_m4a_aac_decodes_through_pydub(tmp_path):
    path = tmp_path / "sine.m4a"
    ref = tmp_path / "sine_ref.wav"
    src = "sine=frequency=440:sample_rate=44100:duration=3"
    for out, codec in ((path, ["-c:a", "aac", "-b:a", "128k"]), (ref, [])):
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", src, "-ac", "2", *codec, str(out)],
                       check=True, timeout=60)

    y = load_audio(path)

    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size / SR - 3.0) <= 0.1
    assert abs(peak_hz(y) - 440.0) < 1.0
    # Same level as ffmpeg's own lossless rendering of the source (scaling of
    # pydub's integer samples into [-1, 1] is right).
    expected = rms(sf.read(ref, dtype="float32")[0][:, 0])
    assert rms(y[SR // 2: -SR // 2]) == pytest.approx(expected, rel=0.1)


@pytest.mark.filterwarnings("ignore:Couldn't find:RuntimeWarning")
def test_ffmpeg_missing_is_unsupported_format(tmp_path, monkeypatch):
    """Without ffmpeg on PATH, an M4A is refused with a message saying so."""
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 4000)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UnsupportedFormat) as info:
        load_audio(path)
    assert_names_file(info.value, path)
    assert "ffmpeg" in str(info.value)


# --------------------------------------------------------------------------- failures

def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert type(info.value) is BadAudio
    assert_names_file(info.value, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert type(info.value) is BadAudio
    assert_names_file(info.value, path)
    assert "empty" in str(info.value)


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".flac"])
def test_corrupt_bytes(tmp_path, ext):
    path = tmp_path / f"corrupt{ext}"
    # Text only (no 0xFF byte, so no accidental MPEG frame sync in the data).
    path.write_bytes(b"this is definitely not audio data\n" * 300)
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert not isinstance(info.value, AudioTooShort)
    assert info.value.source == str(path)
    assert_names_file(info.value, path)
    if shutil.which("ffmpeg"):  # without ffmpeg, see test_corrupt_file_without_ffmpeg_* below
        assert type(info.value) is BadAudio


@pytest.mark.filterwarnings("ignore:Couldn't find:RuntimeWarning")
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_corrupt_file_without_ffmpeg_is_bad_audio_not_missing_ffmpeg(tmp_path, monkeypatch, ext):
    path = tmp_path / f"corrupt{ext}"
    path.write_bytes(b"this is definitely not audio data\n" * 300)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no ffmpeg reachable
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert_names_file(info.value, path)
    assert type(info.value) is BadAudio, f"{type(info.value).__name__}: {info.value}"


def test_wav_header_with_random_payload_is_bad_audio(tmp_path):
    """A valid RIFF header followed by a mangled fmt chunk."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(440.0, 3.0, 22050), 22050, subtype="PCM_16")
    data = bytearray(good.read_bytes())
    data[12:36] = bytes(range(1, 25))  # overwrite the fmt chunk
    path = tmp_path / "mangled.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert_names_file(info.value, path)


def test_truncated_wav_returns_available_samples_or_bad_audio(tmp_path):
    """The header claims 3 s but only ~1.5 s of data is present.

    libsndfile (1.2.x) reads the frames that are there and stops, so the
    result is the available prefix. Whatever the libsndfile version does, the
    outcome must be one of: a BadAudio naming the file, or exactly the
    samples present -- never another exception type.
    """
    rate = 22050
    x = tone(440.0, 3.0, rate)
    full = tmp_path / "full.wav"
    sf.write(full, x, rate, subtype="PCM_16")
    data = full.read_bytes()
    path = tmp_path / "truncated.wav"
    path.write_bytes(data[: 44 + 2 * int(1.5 * rate)])  # 44-byte header + 1.5 s of 16-bit frames

    try:
        y = load_audio(path, min_seconds=0)
    except BadAudio as exc:  # acceptable outcome, but it must be explicit
        assert_names_file(exc, path)
    else:
        assert abs(y.size / SR - 1.5) < 0.01
        reference = load_audio(full)
        # The first second is identical to the same span of the complete file.
        np.testing.assert_allclose(y[:SR], reference[:SR], atol=1e-3)

    # With the default minimum (one window), 1.5 s is refused cleanly.
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert_names_file(info.value, path)


def test_wav_header_without_data_is_bad_audio(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, tone(440.0, 3.0, 22050), 22050, subtype="PCM_16")
    path = tmp_path / "header_only.wav"
    path.write_bytes(full.read_bytes()[:44])
    with pytest.raises(BadAudio) as info:
        load_audio(path, min_seconds=0)
    assert type(info.value) is BadAudio
    assert_names_file(info.value, path)


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(440.0, 2.0, 22050), 22050)
    with pytest.raises(AudioTooShort) as info:
        load_audio(path)
    assert_names_file(info.value, path)
    assert "2.00" in str(info.value) and "2.50" in str(info.value)

    y = load_audio(path, min_seconds=0)
    assert y.size == 2 * SR


def test_exactly_one_window_is_accepted(tmp_path):
    path = tmp_path / "window.wav"
    sf.write(path, tone(440.0, 2.5, 22050), 22050)
    assert load_audio(path).size == AudioParams().window_samples


def test_min_seconds_explicit(tmp_path):
    path = tmp_path / "four.wav"
    sf.write(path, tone(440.0, 4.0, 16000), 16000)
    assert load_audio(path, min_seconds=3.9).size == 4 * SR
    with pytest.raises(AudioTooShort):
        load_audio(path, min_seconds=4.5)


@pytest.mark.parametrize("name", ["notes.txt", "noextension", "song.xyz"])
def test_unsupported_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"hello")
    with pytest.raises(UnsupportedFormat) as info:
        load_audio(path)
    assert_names_file(info.value, path)


def test_unsupported_extension_checked_before_existence(tmp_path):
    path = tmp_path / "missing.txt"
    with pytest.raises(UnsupportedFormat):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = tone(440.0, 3.0, 16000)
    x[1000] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(BadAudio) as info:
        load_audio(path)
    assert type(info.value) is BadAudio
    assert_names_file(info.value, path)


# --------------------------------------------------------------------------- raw PCM

def test_pcm_s16le_round_trip():
    ints = np.random.default_rng(0).integers(-32768, 32768, size=1000).astype("<i2")
    ints[:2] = (-32768, 32767)
    y = pcm_to_float(ints.tobytes(), "s16le")
    assert y.dtype == np.float32 and y.shape == (1000,)
    np.testing.assert_array_equal(y, ints.astype(np.float32) / 32768.0)
    assert y.min() == -1.0 and y.max() < 1.0


def test_pcm_f32le_round_trip():
    x = np.random.default_rng(1).uniform(-1, 1, 777).astype("<f4")
    y = pcm_to_float(x.tobytes(), "f32le")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


def test_pcm_f32le_non_finite_are_sanitised():
    x = np.array([0.5, np.nan, np.inf, -np.inf], dtype="<f4")
    y = pcm_to_float(x.tobytes(), "f32le")
    np.testing.assert_array_equal(y, [0.5, 0.0, 1.0, -1.0])


@pytest.mark.parametrize("fmt,dtype,scale", [("s16le", "<i2", 32768.0), ("f32le", "<f4", 1.0)])
def test_pcm_stereo_downmix(fmt, dtype, scale):
    rng = np.random.default_rng(2)
    if fmt == "s16le":
        frames = rng.integers(-20000, 20000, size=(500, 2)).astype(dtype)
    else:
        frames = rng.uniform(-1, 1, size=(500, 2)).astype(dtype)
    y = pcm_to_float(frames.tobytes(), fmt, channels=2)  # row-major = interleaved L R L R ...
    assert y.shape == (500,)
    expected = (frames[:, 0].astype(np.float64) + frames[:, 1]) / 2 / scale
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)


def test_pcm_empty_buffer():
    y = pcm_to_float(b"", "s16le")
    assert y.shape == (0,) and y.dtype == np.float32


@pytest.mark.parametrize("data,fmt,channels", [
    (b"\x00" * 1001, "s16le", 1),   # odd byte count
    (b"\x00" * 6, "s16le", 2),      # 3 samples: not whole stereo frames
    (b"\x00" * 6, "f32le", 1),      # not a multiple of 4
    (b"\x00" * 12, "f32le", 2),     # 3 floats: not whole stereo frames
])
def test_pcm_partial_frames_are_bad_audio(data, fmt, channels):
    with pytest.raises(BadAudio) as info:
        pcm_to_float(data, fmt, channels=channels)
    assert type(info.value) is BadAudio
    assert str(len(data)) in str(info.value)


@pytest.mark.parametrize("fmt", ["u8", "s24le", "S16LE", ""])
def test_pcm_unknown_format_is_bad_audio(fmt):
    with pytest.raises(BadAudio) as info:
        pcm_to_float(b"\x00" * 8, fmt)
    assert repr(fmt) in str(info.value)


# --------------------------------------------------------------------------- resample

@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (48000, 16000), (22050, 16000), (16000, 48000)])
def test_resample_length_and_frequency(rate_in, rate_out):
    x = tone(440.0, 2.0, rate_in) + tone(1000.0, 2.0, rate_in, amp=0.1)
    y = resample(x, rate_in, rate_out)
    assert y.dtype == np.float32
    assert y.size == round(x.size * rate_out / rate_in)
    assert abs(peak_hz(y, rate_out) - 440.0) < 0.5
    assert rms(y[rate_out // 4: -rate_out // 4]) == pytest.approx(rms(x[rate_in // 4: -rate_in // 4]), rel=0.01)


def test_resample_is_band_limited():
    """A 10 kHz tone is above the 8 kHz Nyquist of 16 kHz: it must vanish, not alias to 6 kHz."""
    x = tone(10000.0, 1.0, 44100)
    y = resample(x, 44100, 16000)
    assert rms(y[1000:-1000]) < 1e-3 * rms(x)


def test_resample_same_rate_and_empty():
    x = tone(440.0, 0.5, 16000)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    assert resample(np.zeros(0, np.float32), 44100, 16000).size == 0


# --------------------------------------------------------------------------- write_wav

def test_write_wav_is_16_bit_and_round_trips(tmp_path):
    path = tmp_path / "out.wav"
    x = tone(440.0, 1.0, 16000, amp=0.7)
    x[:3] = (1.7, -2.0, 0.25)  # out of range: clipped
    write_wav(path, x, 16000)

    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    y, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and y.shape == x.shape
    np.testing.assert_allclose(y[3:], x[3:], atol=1.0 / 32768 + 1e-7)
    assert y[0] == pytest.approx(32767 / 32768) and y[1] == -1.0
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # no .part left behind


def test_write_wav_replaces_existing_file(tmp_path):
    path = tmp_path / "out.wav"
    write_wav(path, np.zeros(100, np.float32), 16000)
    write_wav(path, np.full(50, 0.5, np.float32), 8000)
    y, rate = sf.read(path, dtype="float32")
    assert rate == 8000 and y.size == 50 and y[0] == pytest.approx(0.5, abs=1e-4)
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]


def test_write_wav_failure_keeps_old_file(tmp_path):
    path = tmp_path / "out.wav"
    write_wav(path, np.full(100, 0.25, np.float32), 16000)
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_wav(path, np.zeros(100, np.float32), 0)  # invalid rate: libsndfile refuses
    assert path.read_bytes() == before


def test_write_wav_failure_leaves_no_part_file(tmp_path):
    path = tmp_path / "out.wav"
    with pytest.raises(Exception):
        write_wav(path, np.zeros(100, np.float32), 0)
    assert os.listdir(tmp_path) == []
