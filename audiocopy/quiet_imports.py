"""TensorFlow, imported once without its C++ start-up chatter on stderr.

Place in the pipeline: at the bottom, beside ``config`` and ``errors``; used
by the few places that need TensorFlow (training, and cnnbin's optional
spectrogram CNNs). Serving the default engine never calls it.

Why. TensorFlow's C++ runtime writes a handful of lines to file descriptor 2
as it loads ("oneDNN custom operations are on", CPU feature notes, an absl
warning), before and regardless of ``TF_CPP_MIN_LOG_LEVEL``. They would
clutter every ``audiocopy train`` or ``enroll`` run. So the first import runs
with descriptor 2 pointed at a temporary file; the known start-up lines are
dropped and anything else TensorFlow wrote is passed on to the log, so a
real problem is never hidden.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from types import ModuleType

log = logging.getLogger(__name__)

#: Lines TensorFlow prints at every start on a CPU: information, not problems.
START_UP_NOISE = re.compile(r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
                            r"cpu_feature_guard|This TensorFlow binary is optimized|To enable the following "
                            r"instructions|rebuild TensorFlow with the appropriate compiler flags")
_lock = threading.Lock()


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module (imported on the first call, quietly; see the module docstring)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow as tf
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", errors="replace").splitlines():
                if line.strip() and not START_UP_NOISE.search(line):
                    log.warning("tensorflow: %s", line)
        return tf


def keras() -> ModuleType:
    """The ``keras`` module, after a quiet ``tensorflow()``."""
    tensorflow()
    import keras as module

    return module
