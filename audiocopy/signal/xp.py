"""Array-module choice: CuPy on a usable GPU, NumPy otherwise.

Place in the pipeline: beside ``audio``, below features. Feature code is
written once against an ``xp`` module argument (the NumPy API subset that
CuPy mirrors), so the same pure function runs on either device. Nothing here
is global: ``get_xp`` returns a module and callers pass it down.

"Usable" means CuPy imports, a CUDA device exists, and a tiny kernel really
runs: a wheel without a driver, or a driver without a device, must not turn
into a crash on the first window, so those cases fall back to NumPy and say
why in the log.
"""
from __future__ import annotations

import functools
import logging
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> ModuleType | None:
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            log.info("CuPy is installed but sees no CUDA device; using NumPy")
            return None
        float((cupy.arange(4, dtype=cupy.float32) ** 2).sum())
    except Exception as exc:  # driver/runtime problems surface as various types
        log.warning("CuPy is installed but unusable (%s); using NumPy", exc)
        return None
    return cupy


def get_xp(prefer: str = "auto") -> ModuleType:
    """The array module to compute with.

    prefer: "auto" (CuPy if usable, else NumPy), "numpy", or "cupy" (raise
        ``RuntimeError`` if CuPy is not usable: an explicit request must not
        silently degrade).
    """
    if prefer == "numpy":
        return np
    cupy = _probe_cupy()
    if prefer == "cupy" and cupy is None:
        raise RuntimeError("CuPy was requested but no usable CUDA GPU was found")
    return cupy if cupy is not None else np


def array_module(array: Any) -> ModuleType:
    """The module (NumPy or CuPy) that owns ``array``."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_numpy(array: Any) -> np.ndarray:
    """Copy a CuPy array to host memory; NumPy arrays pass through."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)


def device_name(xp: ModuleType) -> str:
    """Human-readable name of the device ``xp`` computes on (for logs/UI)."""
    if xp is np:
        return "cpu (numpy)"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"]
    return f"gpu (cupy, {name.decode() if isinstance(name, bytes) else name})"
