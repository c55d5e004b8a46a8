"""Shared fixtures: seeded synthetic audio and a tiny trained catalogue.

The tiny catalogue (three pattern tracks against melody negatives) is built
once per test session with a few dozen windows per track and a few epochs:
enough for a model to separate patterns this different, small enough to
train in well under a minute on two CPU cores.
"""
from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile as sf
from milvus_server import milvus, milvus_root, milvus_server  # noqa: F401 - one Milvus server per run, shared
from synth import melody, pattern

CATALOG_KINDS = ("pulses", "chirps", "chord")
#: A test still running after this long (s) prints the asyncio tasks that have not ended: a hang
#: in an app's clean-up shows an idle event loop in a thread dump, and only the tasks say what it
#: waits for (pytest-timeout ends the run later, see setup.cfg).
HANG_REPORT_S = 600.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    timer = threading.Timer(HANG_REPORT_S, _report_pending_tasks, args=(item,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _report_pending_tasks(item) -> None:
    """Every asyncio task not done, with its stack (read from the timer's thread: a diagnosis only).

    Written past pytest's output capture, as pytest-timeout writes its own
    dump: a run that is then ended would lose captured output.
    """
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    tasks = [obj for obj in gc.get_objects() if isinstance(obj, asyncio.Task) and not obj.done()]
    print(f"\n{item.nodeid} has run {HANG_REPORT_S:.0f} s; {len(tasks)} asyncio task(s) not done:",
          file=sys.stderr)
    for task in tasks:
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()
    if capture is not None:
        capture.resume_global_capture()
FILE_RATE = 22050


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A folder with ``licensed/`` (3 pattern tracks) and ``wrong/`` (30 melodies, 12 s each).

    Thirty, not fewer: a fifth of the wrong tracks are the calibration
    negatives that set every threshold. With 8 (two calibration tracks) the
    embedding heads passed 16 of 60 unseen melodies as matches, with 30 one
    of 60: a threshold is only as good as the negatives it was set on.
    """
    root = tmp_path_factory.mktemp("corpus")
    (root / "licensed").mkdir()
    (root / "wrong").mkdir()
    for kind in CATALOG_KINDS:
        sf.write(root / "licensed" / f"{kind}.wav", pattern(kind, 12, FILE_RATE), FILE_RATE)
    for i in range(30):
        sf.write(root / "wrong" / f"melody{i}.wav", melody(100 + i, 12, FILE_RATE), FILE_RATE)
    sf.write(root / "unseen.wav", pattern("noise", 6, FILE_RATE, seed=5), FILE_RATE)
    return root


@pytest.fixture(scope="session")
def tiny_db(tiny_corpus, tmp_path_factory) -> Path:
    """A trained, calibrated cnnbin database of the three pattern tracks (default kind: embedding heads)."""
    from audiocopy.config import DatasetParams, TrainParams
    from audiocopy.training.enroll_cnnbin import enroll

    db = tmp_path_factory.mktemp("db") / "db"
    enroll(tiny_corpus / "licensed", db, negatives_dir=tiny_corpus / "wrong",
           dataset=DatasetParams(positives_per_track=60, windows_per_wrong=12, windows_per_calibration=24),
           train=TrainParams(epochs=6, patience=6), jobs=1, progress=False)
    return db


@pytest.fixture(scope="session")
def tiny_db_spectrogram(tiny_db, tmp_path_factory) -> Path:
    """The same catalogue with the seed's spectrogram CNNs (``--model spectrogram``), on tiny_db's dataset."""
    from audiocopy.config import CnnParams, TrainParams
    from audiocopy.training.enroll_cnnbin import train_catalog

    db = tmp_path_factory.mktemp("db_spectrogram") / "db"
    train_catalog(tiny_db / "dataset", db, cnn=CnnParams(kind="spectrogram"), train=TrainParams(epochs=6, patience=6),
                  progress=False)
    return db


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
