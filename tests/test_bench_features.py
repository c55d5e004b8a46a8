"""Tests for ``tools/bench_features.py`` (CPU only, a few seconds).

The CuPy rows cannot be measured without a GPU, so their code path is driven
through a stand-in module: NumPy under another identity with the few CUDA
attributes the benchmark touches. It runs the ``xp`` branch of the feature
code (gathered frames, ``xp.fft``), the synchronisation and the copies.
"""
from __future__ import annotations

import json
import types

import bench_features as bf
import numpy as np
import pytest

from audiocopy.config import AudioParams, FeatureParams

FAST = ["--batches", "1,2", "--runs", "5", "--budget-s", "0.01"]


class _FakeCupy:
    """NumPy posing as CuPy: enough of ``cuda`` for synchronize() and device_name()."""

    __version__ = "fake"

    def __init__(self):
        self.synced = 0
        stream = types.SimpleNamespace(synchronize=self._sync)
        self.cuda = types.SimpleNamespace(
            get_current_stream=lambda: stream,
            Device=lambda: types.SimpleNamespace(id=0),
            runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"Fake GPU"}))

    def _sync(self):
        self.synced += 1

    def __getattr__(self, name):
        return getattr(np, name)


def test_synthetic_windows_are_seeded_and_shaped():
    audio = AudioParams()
    a = bf.synthetic_windows(3, audio=audio, seed=1)
    assert a.shape == (3, audio.window_samples) and a.dtype == np.float32
    np.testing.assert_array_equal(a, bf.synthetic_windows(3, audio=audio, seed=1))
    assert not np.array_equal(a, bf.synthetic_windows(3, audio=audio, seed=2))
    assert 0.05 < float(a.std()) < 1.0


def test_stream_frames_are_the_last_frames_of_each_window():
    params = FeatureParams()
    w = bf.synthetic_windows(2, audio=AudioParams(), seed=0)
    frames = bf.stream_frames(w, params=params, per_window=16)
    assert frames.shape == (32, params.n_fft) and frames.flags.c_contiguous
    last = (params.n_frames(w.shape[1]) - 1) * params.hop_length
    np.testing.assert_array_equal(frames[15], w[0, last:last + params.n_fft])
    np.testing.assert_array_equal(frames[16], w[1, last - 15 * params.hop_length:][:params.n_fft])
    with pytest.raises(ValueError):
        bf.stream_frames(w, params=params, per_window=0)


def test_without_gpu_writes_json_with_no_gpu_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bf, "gpu_module", lambda prefer="auto": (None, f"{bf.NO_GPU} (test)"))
    out = tmp_path / "f.json"
    assert bf.main(["--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())
    assert result["gpu"] is None and result["gpu_status"].startswith(bf.NO_GPU)
    assert len(result["rows"]) == len(bf.STEPS) * 2 * len(bf.VARIANTS)
    numpy_rows = [r for r in result["rows"] if r["variant"] == "numpy"]
    assert all(r["ms_per_batch"] > 0 and r["ms_per_window"] == pytest.approx(r["ms_per_batch"] / r["batch"])
               for r in numpy_rows)
    assert all(r["ms_per_batch"] is None for r in result["rows"] if r["variant"] != "numpy")
    assert "tools/bench_features.py --json data/bench/features_gpu.json --batches 1,2" in result["command"]
    assert bf.NO_GPU in capsys.readouterr().out

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other-begin -->\nkeep me\n<!-- other-end -->\n")
    assert bf.main(["--render", str(out), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "keep me" in text
    assert text.count("<!-- features-gpu-begin -->") == 1 and "<!-- features-gpu-end -->" in text
    assert "| log_spectrogram | CuPy, on device | 1 | no usable GPU |" in text
    assert "--render" in text
    # Rendering again replaces the section instead of appending a second one.
    assert bf.main(["--render", str(out), "--doc", str(doc)]) == 0
    assert doc.read_text().count("<!-- features-gpu-begin -->") == 1


def test_gpu_code_path_through_a_stand_in_module(tmp_path, monkeypatch):
    fake = _FakeCupy()
    monkeypatch.setattr(bf, "gpu_module", lambda prefer="auto": (fake, bf.xpmod.device_name(fake)))
    out = tmp_path / "f.json"
    # np.fft (double precision) stands in for cuFFT: its difference from SciPy's
    # float32 FFT bounds what two float32 implementations should differ by.
    assert bf.main(["--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())
    assert result["gpu"] == "gpu (cupy, Fake GPU)"
    gpu_rows = [r for r in result["rows"] if r["variant"] != "numpy"]
    assert len(gpu_rows) == len(bf.STEPS) * 2 * 2
    assert all(r["ms_per_batch"] > 0 and 0 <= r["max_abs_diff"] <= 1e-4 for r in gpu_rows)
    assert fake.synced > 0
    doc = tmp_path / "benchmarks.md"
    assert bf.main(["--render", str(out), "--doc", str(doc)]) == 0
    assert "within the 0.0001 tolerance" in doc.read_text()


def test_render_rejects_a_foreign_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert bf.main(["--render", str(bad), "--doc", str(tmp_path / "d.md")]) == 1
    assert not (tmp_path / "d.md").exists()
