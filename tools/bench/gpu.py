"""The GPU side of the speed benchmarks: CuPy when usable, synchronisation, millisecond formatting.

Place in ``tools/bench``: used by ``tools/bench_features.py`` and
``tools/bench_heads.py``, which time the same work on NumPy and CuPy. On a
machine without a usable GPU the CuPy side says why; nothing fails.
"""
from __future__ import annotations

import importlib.util
import logging
from types import ModuleType

import numpy as np

log = logging.getLogger(__name__)

NO_GPU = "no usable GPU"


def gpu_module(prefer: str = "auto") -> tuple[ModuleType | None, str]:
    """(CuPy or None, what the GPU is or why there is none). prefer: "auto" or "numpy" (never a GPU)."""
    from audiocopy.signal import xp as xpmod

    if prefer == "numpy":
        return None, f"{NO_GPU} (--numpy-only)"
    if importlib.util.find_spec("cupy") is None:
        return None, f"{NO_GPU} (CuPy is not installed)"
    try:
        cupy = xpmod.get_xp("cupy")
    except RuntimeError as exc:
        return None, f"{NO_GPU} ({exc})"
    try:
        name = xpmod.device_name(cupy)
    except Exception as exc:  # a name is decoration: never a reason to fail
        log.warning("could not read the GPU's name: %s", exc)
        name = "gpu (cupy)"
    return cupy, name


def synchronize(xp: ModuleType) -> None:
    """Wait for the work queued on ``xp``'s current stream (no-op for NumPy)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def fmt_ms(ms: float) -> str:
    """Milliseconds with about three significant digits (0.00512, 0.785, 22.7, 229.0)."""
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:#.3g}"
