"""The server process's threads as the operating system sees them: their names, and BLAS's thread pool.

Place in the pipeline: start-up plumbing of the server (``web.app`` calls
these when it creates its executors). Nothing here touches audio or models.

Names. Python's thread names stay inside Python; ``top -H``, ``py-spy``
and ``tools/loadtest.py`` read the kernel's, where every thread is called
"python". ``name_os_thread`` sets the kernel's name of the calling thread
("compute", "io"), so the CPU of the event loop, of the compute worker and
of the rest can be told apart from /proc.

BLAS. NumPy's OpenBLAS starts one thread per core and lets them spin
between calls. The encoder's matrix products in a server cycle are small
(a few hundred sub-windows), and the server's parallelism comes from
batching many streams into one call, not from splitting one product: on 2
cores, the spinning threads took the CPU that the event loop and the
compute worker need. Measured with the 100-track fingerprint catalogue on 2
shared cores: 7.3 ms of CPU per live window in batches of 8 with OpenBLAS's
default threads, 2.9 ms with one thread (3.2 and 2.8 ms in batches of 64),
and less wall time too. ``single_threaded_blas`` sets NumPy's and SciPy's
OpenBLAS to one thread at run time. faiss's own OpenMP BLAS is left alone:
its index decides its threads per search.
"""
from __future__ import annotations

import ctypes
import logging
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: Setter names of OpenBLAS builds (plain, 64-bit-integer, and the
#: scipy-openblas wheels NumPy and SciPy bundle).
_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_")
#: Only the BLAS copies bundled with NumPy and SciPy (see module docstring).
_OURS = re.compile(r"/(numpy|scipy)[^/]*\.libs/[^/]*openblas[^/]*\.so")


def init_compute_thread(name: str) -> None:
    """Set up one of the server's compute workers: its OS name, and its encoder passes in the thread itself.

    The workers already run in parallel, one batch of streams each
    (``web.batcher``), so the encoder must not split a batch over helper
    threads as well (``encoder.forward.embed_in_calling_thread``).
    """
    from ..encoder.forward import embed_in_calling_thread

    name_os_thread(name)
    embed_in_calling_thread()


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-visible name (Linux ``prctl``; elsewhere nothing happens).

    name: up to 15 characters. The process's main thread keeps its name, so
    ``ps`` still shows the server as the program it is; tools find the event
    loop there as the thread whose id is the process id.
    """
    if threading.current_thread() is threading.main_thread():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):  # not Linux, or no libc symbol: names are a convenience
        pass


def single_threaded_blas() -> list[str]:
    """Set NumPy's and SciPy's OpenBLAS to one thread; returns the libraries changed (none off Linux)."""
    import numpy  # noqa: F401 - loads NumPy's BLAS, so that it is in the map below

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps.splitlines() if _OURS.search(line)}
    changed = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, name) for name in _SETTERS if hasattr(lib, name)), None)
        if setter is not None:
            setter(ctypes.c_int(1))
            changed.append(Path(path).name)
    log.info("BLAS set to one thread in %s", ", ".join(changed) if changed else "no library (none found)")
    return changed
