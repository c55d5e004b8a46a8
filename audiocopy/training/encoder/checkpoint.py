"""Checkpoints of encoder training: weights, optimizer state and history, atomically.

Place in the pipeline: under the training loop. A checkpoint made with other
settings is refused (the run would silently mix two experiments).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...errors import DatasetError

CHECKPOINT = "checkpoint"


@dataclass
class TrainState:
    """What a checkpoint restores."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    best_top1: float = -1.0


def save_checkpoint(work: Path, model, optimizer, state: TrainState, meta: dict) -> None:
    arrays = {f"w{i:03d}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i:03d}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    with atomic_open(work / f"{CHECKPOINT}.npz") as fh:
        np.savez(fh, **arrays)
    atomic_write_json(work / f"{CHECKPOINT}.json", {**meta, "epoch": state.epoch, "step": state.step,
                                                          "seconds": state.seconds, "history": state.history,
                                                          "best_top1": state.best_top1})


def load_checkpoint(work: Path, model, optimizer, meta: dict) -> TrainState | None:
    path = work / f"{CHECKPOINT}.json"
    if not path.exists():
        return None
    saved = read_json(path, "training checkpoint")
    diffs = [k for k in meta if json.loads(json.dumps(meta[k])) != saved.get(k)]
    if diffs:
        raise DatasetError(f"{work} holds a checkpoint made with other settings ({', '.join(diffs)}); "
                           "delete it or use another --work")
    with np.load(work / f"{CHECKPOINT}.npz") as z:
        n_w = len([k for k in z.files if k.startswith("w")])
        model.set_weights([z[f"w{i:03d}"] for i in range(n_w)])
        opt = [z[f"o{i:03d}"] for i in range(len([k for k in z.files if k.startswith("o")]))]
    optimizer.build(model.trainable_variables)
    if len(opt) != len(optimizer.variables):
        raise DatasetError(f"{work}: the checkpoint's optimizer state does not fit this model")
    for var, value in zip(optimizer.variables, opt):
        var.assign(value)
    return TrainState(saved["epoch"], saved["step"], saved["seconds"], saved["history"], saved["best_top1"])
