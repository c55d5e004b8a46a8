"""Shared fixtures: seeded synthetic audio and a tiny trained catalogue.

The tiny catalogue (three pattern tracks against melody negatives) is built
once per test session with a few dozen windows per track and a few epochs:
enough for a model to separate patterns this different, small enough to
train in well under a minute on two CPU cores.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile as sf

from synth import melody, pattern

CATALOG_KINDS = ("pulses", "chirps", "chord")
FILE_RATE = 22050


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A folder with ``licensed/`` (3 pattern tracks) and ``wrong/`` (8 melodies, 12 s each)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "licensed").mkdir()
    (root / "wrong").mkdir()
    for kind in CATALOG_KINDS:
        sf.write(root / "licensed" / f"{kind}.wav", pattern(kind, 12, FILE_RATE), FILE_RATE)
    for i in range(8):
        sf.write(root / "wrong" / f"melody{i}.wav", melody(100 + i, 12, FILE_RATE), FILE_RATE)
    sf.write(root / "unseen.wav", pattern("noise", 6, FILE_RATE, seed=5), FILE_RATE)
    return root


@pytest.fixture(scope="session")
def tiny_db(tiny_corpus, tmp_path_factory) -> Path:
    """A trained, calibrated cnnbin database of the three pattern tracks."""
    from audiocopy.config import DatasetParams, TrainParams
    from audiocopy.training.enroll import enroll

    db = tmp_path_factory.mktemp("db") / "db"
    enroll(tiny_corpus / "licensed", db, negatives_dir=tiny_corpus / "wrong",
           dataset=DatasetParams(positives_per_track=60, windows_per_wrong=12, windows_per_calibration=24),
           train=TrainParams(epochs=6, patience=6), jobs=1, progress=False)
    return db


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
