"""``tools/bench_cycles.py``: live streams replayed through the compute cycle, CPU per window by stage.

A small fingerprint database of synthetic melodies (seeded), three streams
of one of them at 48 kHz; the tool must answer every due window and report
a row per batch size. Bad arguments are usage errors, not tracebacks.
"""
from __future__ import annotations

from pathlib import Path

import bench_cycles
import pytest
import soundfile as sf
from synth import melody

from audiocopy.config import CalibrationParams
from audiocopy.training.enroll_fingerprint import enroll_fingerprint

RATE = 22050


@pytest.fixture(scope="module")
def fp_db(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cycles")
    for name, count, seed0 in (("catalog", 2, 10), ("negatives", 3, 100)):
        (root / name).mkdir()
        for i in range(count):
            sf.write(root / name / f"{name}{i}.wav", melody(seed0 + i, 10, RATE), RATE)
    db = root / "db"
    enroll_fingerprint(root / "catalog", db, negatives_dir=root / "negatives",
                       calibration=CalibrationParams(windows_per_track=8), progress=False)
    return db, root / "catalog" / "catalog0.wav"


def test_every_due_window_is_scored_and_reported_per_batch_size(fp_db, capsys):
    db, audio = fp_db
    assert bench_cycles.main(["--db", str(db), "--audio", str(audio), "--streams", "3", "--batch", "1,3",
                              "--seconds", "1"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if " | " in line][1:]
    assert [r[0] for r in rows] == ["1", "3"]
    for r in rows:
        # 1 s of three streams with a 0.5 s hop: six windows, each with a positive CPU cost
        assert int(r[1]) == 6
        assert all(float(x) > 0 for x in r[2:])


@pytest.mark.parametrize("args", [["--streams", "0"], ["--seconds", "0"], ["--batch", "0"], ["--batch", "a,2"]])
def test_bad_arguments_are_usage_errors(args, tmp_path):
    with pytest.raises(SystemExit) as exc:
        bench_cycles.main(["--db", str(tmp_path), "--audio", str(tmp_path / "x.wav"), *args])
    assert exc.value.code == 2
