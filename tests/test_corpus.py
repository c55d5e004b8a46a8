"""Checks on the real dev corpus: ``AUDIOCOPY_CORPUS=DIR .venv/bin/python -m pytest -m corpus``.

DIR is the folder ``../shared/data/fetch-corpus`` wrote (freely licensed
tracks from Debian packages, with ``manifest-dev.tsv``). The default suite
runs on seeded synthetic audio only; these tests run the shipped pipeline,
as a user would through the CLI, on real music:

* the manifest and the folder agree, and every track decodes to enough
  audio at the internal rate;
* a catalogue of six real tracks from two packages, enrolled with
  ``audiocopy enroll`` (fingerprint engine, shipped encoder, calibrated on
  40 tracks of other packages), is named by
  ``audiocopy identify`` from 2.5 s fragments of each: clean, 5 % fast
  (pitch and tempo, by resampling), and as a 48 kHz file; fragments of six
  more tracks of other packages are named as nothing.

The tracks and offsets are picked by a hash of their names, so a run is
the same on every machine. Asking for these tests without the corpus is an
error, not a skip: the command was given to check the corpus.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocopy.config import AudioParams
from audiocopy.signal.audio import load_audio, load_audio_head, resample
from audiocopy.training.sources import stable_fraction

pytestmark = pytest.mark.corpus

AUDIO = AudioParams()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> Path:
    folder = os.environ.get("AUDIOCOPY_CORPUS")
    if not folder:
        pytest.fail("set AUDIOCOPY_CORPUS to the folder that ../shared/data/fetch-corpus wrote")
    path = Path(folder)
    if not (path / "manifest-dev.tsv").is_file():
        pytest.fail(f"{path} has no manifest-dev.tsv: not a corpus written by fetch-corpus")
    return path


def manifest(corpus: Path) -> list[dict]:
    with open(corpus / "manifest-dev.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_manifest_and_folder_agree_and_every_track_decodes(corpus):
    rows = manifest(corpus)
    files = sorted(p.name for p in corpus.iterdir() if p.suffix.lower() == ".wav")
    assert sorted(r["file"] for r in rows) == files
    assert len(files) >= 186 and len({r["package"] for r in rows}) >= 10
    for r in rows:
        head = load_audio_head(corpus / r["file"], params=AUDIO, max_seconds=5.0)
        samples = head.samples
        assert samples.dtype == np.float32 and np.all(np.isfinite(samples)), r["file"]
        assert samples.size == 5 * AUDIO.sample_rate, f"{r['file']}: shorter than 5 s"
        assert float(r["seconds"]) >= 10, r["file"]


def cli(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "audiocopy.cli", *args], cwd=cwd, env=env, capture_output=True,
                          check=False, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_enrolled_real_tracks_are_named_from_fragments(corpus, tmp_path):
    rows = manifest(corpus)
    packages = sorted({r["package"] for r in rows}, key=lambda p: stable_fraction("corpus-test:" + p))[:2]
    tracks = []
    for package in packages:
        mine = sorted((r["file"] for r in rows if r["package"] == package and float(r["seconds"]) >= 30),
                      key=lambda f: stable_fraction("corpus-test:" + f))
        tracks += mine[:3]
    assert len(tracks) == 6
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in tracks:
        shutil.copy(corpus / name, catalog / name)
    # Calibration negatives, as a user gives them: other packages' tracks (never the negatives queried below).
    others = sorted((r["file"] for r in rows if r["package"] not in packages and float(r["seconds"]) >= 30),
                    key=lambda f: stable_fraction("corpus-negative:" + f))
    negatives = tmp_path / "negatives"
    negatives.mkdir()
    for name in others[6:46]:
        shutil.copy(corpus / name, negatives / name)
    cli("enroll", "--db", str(tmp_path / "db"), "--negatives", str(negatives), str(catalog), cwd=tmp_path)

    queries, expected = [], {}
    n = int(2.5 * AUDIO.sample_rate)
    for name in tracks:
        signal = load_audio(corpus / name, params=AUDIO)
        start = int((0.2 + 0.5 * stable_fraction("offset:" + name)) * (signal.size - 2 * n))
        clean = signal[start:start + n]
        # 5 % fast: the same audio played faster, pitch and tempo together, as a resampling does.
        fast = resample(signal[start:start + int(n * 1.05) + 1], AUDIO.sample_rate, int(AUDIO.sample_rate / 1.05))
        for kind, audio, rate in (("clean", clean, AUDIO.sample_rate), ("fast", fast[:n], AUDIO.sample_rate),
                                  ("48k", resample(clean, AUDIO.sample_rate, 48000), 48000)):
            path = tmp_path / f"{Path(name).stem}__{kind}.wav"
            sf.write(path, audio, rate, subtype="FLOAT")
            queries.append(str(path))
            expected[str(path)] = Path(name).stem
    for name in others[:6]:
        signal = load_audio(corpus / name, params=AUDIO)
        start = int((0.2 + 0.5 * stable_fraction("offset:" + name)) * (signal.size - 2 * n))
        path = tmp_path / f"{Path(name).stem}__negative.wav"
        sf.write(path, signal[start:start + n], AUDIO.sample_rate, subtype="FLOAT")
        queries.append(str(path))
        expected[str(path)] = None
    answers = [json.loads(line) for line in cli("identify", "--db", str(tmp_path / "db"), "--json", *queries,
                                                cwd=tmp_path).splitlines() if line.startswith("{")]
    assert len(answers) == len(queries)
    wrong = [(Path(a["file"]).name, a["match"], a["score"]) for a in answers if a["match"] != expected[a["file"]]]
    assert not wrong
