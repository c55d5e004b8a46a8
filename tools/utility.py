#!/usr/bin/env python3
"""The seed's utility menu: the four data operations, over the library.

Our user's original tool offered four steps on the ``data/`` folder; this
menu keeps them, each a thin call into ``audiocopy`` (the same functions the
``audiocopy`` command uses, so there is no second pipeline):

1. convert mp3 -> wav mono      ``convert.convert_folder``   data/audio/mp3 -> data/audio/wav_licensed
2. create dataset               ``training.dataset.build_dataset`` (licensed part)  -> data/datasets
3. create wrong dataset         ``training.dataset.build_dataset`` (wrong part)     -> data/datasets
4. create models                ``training.enroll.train_catalog``  data/datasets -> data/model

Run it without arguments for the menu, or with the option number
(``tools/utility.py 4``) to run one step directly. Every step shows a
progress bar and resumes where an interrupted run stopped.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from audiocopy.errors import AudiocopyError  # noqa: E402

DATA = ROOT / "data"
MP3 = DATA / "audio" / "mp3"
LICENSED = DATA / "audio" / "wav_licensed"
WRONG = DATA / "audio" / "wav_wrong"
DATASETS = DATA / "datasets"
MODEL = DATA / "model"

MENU = """
audiocopy utility
  1. Convert mp3 to wav (mono)        {mp3} -> {lic}
  2. Create dataset (licensed tracks) {lic} -> {ds}
  3. Create wrong dataset (>= 100 tracks, 1000 recommended) {wrong} -> {ds}
  4. Create models (one CNN per licensed track) {ds} -> {model}
  0. Quit
"""


def _plan():
    from audiocopy.config import AudioParams, AugmentParams, DatasetParams, FeatureParams
    from audiocopy.training.dataset import BuildPlan

    return BuildPlan(AudioParams(), FeatureParams(), AugmentParams(), DatasetParams())


def convert() -> str:
    from audiocopy.training.convert import convert_folder

    report = convert_folder(MP3, LICENSED)
    return f"converted {len(report.converted)}, skipped {len(report.skipped)}, failed {len(report.failed)}"


def dataset(role: str) -> str:
    from audiocopy.training.dataset import build_dataset

    manifest = build_dataset(LICENSED, WRONG, DATASETS, _plan(), roles=(role,))
    state = "complete" if manifest["complete"] else "run the other dataset step to complete it"
    return f"{role} part built; dataset {state}; {len(manifest['failed'])} files failed"


def models() -> str:
    from audiocopy.training.enroll_cnnbin import train_catalog

    report = train_catalog(DATASETS, MODEL)
    return f"trained {len(report.trained)} models, {len(report.skipped)} already there"


ACTIONS = {"1": convert, "2": lambda: dataset("licensed"), "3": lambda: dataset("wrong"), "4": models}


def run(choice: str) -> int:
    try:
        print(ACTIONS[choice]())
        return 0
    except AudiocopyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv:
        if argv[0] not in ACTIONS:
            print(f"usage: {Path(__file__).name} [1|2|3|4]", file=sys.stderr)
            return 2
        return run(argv[0])
    while True:
        print(MENU.format(mp3=MP3.relative_to(ROOT), lic=LICENSED.relative_to(ROOT), wrong=WRONG.relative_to(ROOT),
                          ds=DATASETS.relative_to(ROOT), model=MODEL.relative_to(ROOT)))
        try:
            choice = input("choose 0-4: ").strip()
        except EOFError:
            return 0
        if choice == "0":
            return 0
        if choice in ACTIONS:
            run(choice)
        else:
            print("please type a number from 0 to 4")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
