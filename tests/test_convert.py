"""convert_folder: any audio in, mono 16-bit WAV at one rate out, failures reported."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocopy.errors import AudiocopyError, ConfigError
from audiocopy.training.convert import ConvertReport, convert_folder, output_path

SRC_RATE = 44100
RATE = 22050


def _tone(seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SRC_RATE))) / SRC_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A stereo 44.1 kHz WAV (tone left, silence right) and a stereo 44.1 kHz MP3."""
    folder = tmp_path / "src"
    folder.mkdir()
    left = _tone(1.5)
    sf.write(folder / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1), SRC_RATE, subtype="PCM_16")
    tone = _tone(2.0, freq=330.0)
    sf.write(folder / "song.mp3", np.stack([tone, tone], axis=1), SRC_RATE, format="MP3")
    return folder


def _convert(src: Path, dst: Path, **kw) -> ConvertReport:
    return convert_folder(src, dst, progress=False, **kw)


def test_converts_to_mono_at_the_target_rate(src, tmp_path):
    dst = tmp_path / "out"  # created by convert_folder
    report = _convert(src, dst)

    assert report.ok and report.failed == ()
    assert [p.name for p in report.converted] == ["song.mp3", "stereo.wav"]
    assert report.skipped == ()
    assert sorted(p.name for p in dst.iterdir()) == ["song.wav", "stereo.wav"]

    info = sf.info(dst / "stereo.wav")
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    data, _ = sf.read(dst / "stereo.wav", dtype="float32")
    assert data.shape == (int(1.5 * RATE),)  # resampling keeps the exact duration
    # downmix = mean of the channels: a 0.5 tone in one channel becomes 0.25
    assert _rms(data) == pytest.approx(0.25 / np.sqrt(2), rel=0.02)

    info = sf.info(dst / "song.wav")
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    # MP3 encoders pad the start and end by a few ms
    assert info.frames / RATE == pytest.approx(2.0, abs=0.1)
    data, _ = sf.read(dst / "song.wav", dtype="float32")
    assert _rms(data) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_second_run_skips_up_to_date_outputs(src, tmp_path):
    dst = tmp_path / "out"
    _convert(src, dst)
    before = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}

    again = _convert(src, dst)
    assert again.converted == ()
    assert [p.name for p in again.skipped] == ["song.mp3", "stereo.wav"]
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == before

    # a source modified after its conversion is converted again
    later = (dst / "stereo.wav").stat().st_mtime_ns + 10**9
    os.utime(src / "stereo.wav", ns=(later, later))
    third = _convert(src, dst)
    assert [p.name for p in third.converted] == ["stereo.wav"]
    assert [p.name for p in third.skipped] == ["song.mp3"]


def test_bad_files_are_reported_and_the_rest_is_converted(src, tmp_path, caplog):
    (src / "corrupt.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (src / "empty.wav").write_bytes(b"")
    dst = tmp_path / "out"

    with caplog.at_level(logging.WARNING, logger="audiocopy.training.convert"):
        report = _convert(src, dst)

    assert not report.ok
    assert [p.name for p in report.converted] == ["song.mp3", "stereo.wav"]
    assert {f.path.name for f in report.failed} == {"corrupt.mp3", "empty.wav"}
    assert all(f.message for f in report.failed)
    assert "empty" in next(f.message for f in report.failed if f.path.name == "empty.wav")
    assert sorted(p.name for p in dst.iterdir()) == ["song.wav", "stereo.wav"]  # no output, no .part left
    logged = caplog.text
    assert "corrupt.mp3" in logged and "empty.wav" in logged
    assert report.summary() == "2 converted, 0 up to date, 2 failed"

    # failures are retried on the next run (and fail again), the good files are skipped
    again = _convert(src, dst)
    assert {f.path.name for f in again.failed} == {"corrupt.mp3", "empty.wav"}
    assert len(again.skipped) == 2


def test_non_audio_files_and_subfolders_are_ignored(src, tmp_path):
    (src / "notes.txt").write_text("not music")
    (src / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (src / ".hidden.mp3").write_bytes(b"")
    sub = src / "more"
    sub.mkdir()
    sf.write(sub / "deep.wav", _tone(1.0), SRC_RATE)
    dst = tmp_path / "out"

    report = _convert(src, dst)

    assert report.ok
    assert [p.name for p in report.converted] == ["song.mp3", "stereo.wav"]
    assert sorted(p.name for p in dst.iterdir()) == ["song.wav", "stereo.wav"]


def test_same_stem_twice_is_a_failure_not_an_overwrite(src, tmp_path):
    sf.write(src / "song.flac", np.stack([_tone(1.0)] * 2, axis=1), SRC_RATE)
    dst = tmp_path / "out"

    report = _convert(src, dst)

    # sorted by name: song.flac claims song.wav first
    assert [p.name for p in report.converted] == ["song.flac", "stereo.wav"]
    assert [f.path.name for f in report.failed] == ["song.mp3"]
    assert "song.flac" in report.failed[0].message
    assert sf.info(dst / "song.wav").frames == RATE  # the 1 s flac, not the 2 s mp3


def test_other_sample_rate(src, tmp_path):
    dst = tmp_path / "out"
    _convert(src, dst, sample_rate=16000)
    info = sf.info(dst / "stereo.wav")
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 24000)


def test_progress_bar_goes_to_stderr_only(src, tmp_path, capsys):
    convert_folder(src, tmp_path / "out", progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "convert" in err


def test_refuses_bad_arguments(src, tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        _convert(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="another folder"):
        _convert(src, src)
    with pytest.raises(ConfigError, match="positive"):
        _convert(src, tmp_path / "out", sample_rate=0)
    assert issubclass(ConfigError, AudiocopyError)


def test_output_path():
    assert output_path("/music/My Song.mp3", "/wav") == Path("/wav/My Song.wav")
