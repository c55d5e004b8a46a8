"""Checkpoints of encoder training: weights, optimizer state and history, atomically.

Place in the pipeline: under the training loop. A checkpoint made with other
settings is refused (the run would silently mix two experiments), with one
exception that is asked for by name: a new *stage* (``next_stage``) goes on
from a checkpoint with other augmentation only, for example harder speech
after a first schedule, and the checkpoint keeps each earlier stage's
augmentation, so the exported record says how every epoch was trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...errors import ConfigError, DatasetError

CHECKPOINT = "checkpoint"


@dataclass
class TrainState:
    """What a checkpoint restores."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    best_top1: float = -1.0
    #: Earlier stages, oldest first: {"until_epoch", "augment", "best_top1"} (``load_checkpoint``).
    stages: list = field(default_factory=list)


def save_checkpoint(work: Path, model, optimizer, state: TrainState, meta: dict) -> None:
    arrays = {f"w{i:03d}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i:03d}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    with atomic_open(work / f"{CHECKPOINT}.npz") as fh:
        np.savez(fh, **arrays)
    atomic_write_json(work / f"{CHECKPOINT}.json", {**meta, "epoch": state.epoch, "step": state.step,
                                                          "seconds": state.seconds, "history": state.history,
                                                          "best_top1": state.best_top1, "stages": state.stages})


def load_checkpoint(work: Path, model, optimizer, meta: dict, *, next_stage: bool = False) -> TrainState | None:
    """The state saved in ``work`` (weights and optimizer restored into ``model``, ``optimizer``), or None.

    meta: this run's settings; a checkpoint made with others is refused
    (``DatasetError``). next_stage: go on from a checkpoint whose settings
    differ in ``augment`` only, as a new stage: the old augmentation and
    the best validation of its stage are appended to ``stages``, and the
    best is reset, because the validation views are drawn with the
    augmentation and a best measured on the old ones says nothing about the
    new. With the checkpoint's own augmentation, ``next_stage`` resumes the
    stage it is in (rerunning an interrupted stage's command goes on where
    it stopped). ``ConfigError`` when ``next_stage`` finds no checkpoint.
    """
    path = work / f"{CHECKPOINT}.json"
    if not path.exists():
        if next_stage:
            raise ConfigError(f"a new stage goes on from a checkpoint, and {work} holds none")
        return None
    saved = read_json(path, "training checkpoint")
    diffs = [k for k in meta if json.loads(json.dumps(meta[k])) != saved.get(k)]
    if next_stage and diffs == ["augment"]:
        stages = list(saved.get("stages") or [])
        stages.append({"until_epoch": saved["epoch"], "augment": saved["augment"], "best_top1": saved["best_top1"]})
        saved = {**saved, "stages": stages, "best_top1": -1.0}
    elif diffs:
        hint = (" (a new stage with other augmentation: --next-stage)" if diffs == ["augment"] else "")
        raise DatasetError(f"{work} holds a checkpoint made with other settings ({', '.join(diffs)}); "
                           f"delete it or use another --work{hint}")
    with np.load(work / f"{CHECKPOINT}.npz") as z:
        n_w = len([k for k in z.files if k.startswith("w")])
        model.set_weights([z[f"w{i:03d}"] for i in range(n_w)])
        opt = [z[f"o{i:03d}"] for i in range(len([k for k in z.files if k.startswith("o")]))]
    optimizer.build(model.trainable_variables)
    if len(opt) != len(optimizer.variables):
        raise DatasetError(f"{work}: the checkpoint's optimizer state does not fit this model")
    for var, value in zip(optimizer.variables, opt):
        var.assign(value)
    return TrainState(saved["epoch"], saved["step"], saved["seconds"], saved["history"], saved["best_top1"],
                      list(saved.get("stages") or []))
