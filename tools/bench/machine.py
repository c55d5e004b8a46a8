"""Machine facts, load, timing and measured child processes.

Place in ``tools/bench``: used by every benchmark that reports a time or a
memory figure. Timings are only comparable within one run on one machine,
and the development machine is a shared 2-core box, so every report records
the machine (``machine_info``) and how busy it was (``busy_cores``,
``load_note``) next to its figures.
"""
from __future__ import annotations

import logging
import os
import platform
import shlex
import statistics
import subprocess
import threading
import time
from pathlib import Path

from .common import BenchError

log = logging.getLogger(__name__)


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls, after ``warmup`` untimed calls.

    The warm-up calls trace/compile and fill caches, which a steady-state
    figure must not include.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def timed(fn, *, max_runs: int, budget_s: float) -> tuple[float, int]:
    """(median ms, runs): about ``budget_s`` seconds of calls, between 5 and ``max_runs`` of them."""
    probe = median_ms(fn, runs=1, warmup=3)
    runs = int(max(5, min(max_runs, budget_s * 1000 / max(probe, 1e-3))))
    return median_ms(fn, runs=runs, warmup=1), runs


def per_batch_ms(fn, batches=(1, 32), **fields) -> list[dict]:
    """Median ms of ``fn(batch)`` for each batch size (50 runs at 1, 15 otherwise), one row each with ``fields``."""
    rows = []
    for batch in batches:
        ms = median_ms(lambda: fn(batch), 50 if batch == 1 else 15)
        rows.append({**fields, "batch": batch, "ms_per_batch": round(ms, 3), "ms_per_window": round(ms / batch, 3)})
    return rows


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores busy with other work, from /proc/stat over ``seconds`` while this process sleeps.

    The load average would not do: it still counts this run's own training
    and identification from the minutes before.
    """
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return idle, sum(values[:8])

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    ncpu = os.cpu_count() or 1
    return round(ncpu * (1 - (idle1 - idle0) / (total1 - total0)), 2)


def load_note() -> dict:
    """The 1/5/15-minute load averages and the cores other processes keep busy now (for a report's machine line)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"loadavg": load, "busy_cores": busy_cores(), "cores": os.cpu_count()}


def _first(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """CPU model, cores, RAM (GiB) and OS of this machine."""
    mem = _first("/proc/meminfo", "MemTotal")
    ram = round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libc = " ".join(platform.libc_ver()).strip()
    return {"cpu": _first("/proc/cpuinfo", "model name") or "?", "cores": cores, "ram_gib": ram,
            "os": f"{platform.system()} {platform.machine()}{', ' + libc if libc else ''}",
            "python": platform.python_version()}


def code_revision(code: Path) -> str | None:
    """The checkout's short revision, with " with uncommitted changes" when tracked files differ; None outside git."""
    def git(*a):
        try:
            return subprocess.run(["git", "-C", str(code), *a], capture_output=True, text=True, timeout=10,
                                  check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    rev = git("rev-parse", "--short", "HEAD").strip()
    if not rev:
        return None
    return rev + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def _proc_children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree_rss_bytes(root: int) -> tuple[int, int]:
    """(sum, max) resident memory of a process and all its descendants, from /proc."""
    children = _proc_children_map()
    page = os.sysconf("SC_PAGE_SIZE")
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def run_measured(cmd: list[str], env: dict) -> dict:
    """Run a child process; its wall time (s) and peak memory (MiB).

    Two memory figures, because the dataset builder's worker processes are
    grandchildren: ``peak_process_mib`` is the exact high-water mark of the
    largest single process (from ``wait4``, which covers the child and every
    descendant it reaped), ``peak_tree_mib`` the largest sum over the whole
    process tree, sampled every 0.2 s from /proc (what the machine needs).
    """
    log.info("running %s", shlex.join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    peak = {"tree": 0, "largest": 0}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            total, largest = _tree_rss_bytes(proc.pid)
            peak["tree"] = max(peak["tree"], total)
            peak["largest"] = max(peak["largest"], largest)
            stop.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    finally:
        stop.set()
        watcher.join()
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed with exit status {returncode}")
    mib = 1024 * 1024
    return {"command": shlex.join(cmd), "wall_s": round(time.perf_counter() - t0, 2),
            # Linux reports ru_maxrss in KiB.
            "peak_process_mib": round(max(usage.ru_maxrss * 1024, peak["largest"]) / mib, 1),
            "peak_tree_mib": round(peak["tree"] / mib, 1)}
