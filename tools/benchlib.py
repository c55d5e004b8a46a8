"""Shared pieces of the benchmark scripts: machine facts, measured child
processes, CPU time per thread, a local server for load tests, and the
sectioned ``docs/benchmarks.md``.

Every benchmark (accuracy, dataset memory, server load, fingerprint scale)
owns one section of ``docs/benchmarks.md`` between ``<!-- NAME-begin -->``
and ``<!-- NAME-end -->`` markers and replaces only that section, so each
can be rerun on its own without losing the others' figures. Timings are
only comparable within one run on one machine, so every section records the
machine (``machine_info``) and how busy it was (``busy_cores``).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("bench")


def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file so a crash never leaves half a file (the package's atomic writer)."""
    from audiocopy.atomic_files import atomic_write_json

    atomic_write_json(Path(path), obj)


def read_json(path: Path, default=None):
    """The JSON content of ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


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


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


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
    """Run a child process; its wall time and peak memory.

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
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed with exit status {proc.returncode}")
    mib = 1024 * 1024
    return {
        "command": shlex.join(cmd),
        "wall_s": round(wall, 2),
        # Linux reports ru_maxrss in KiB.
        "peak_process_mib": round(max(usage.ru_maxrss * 1024, peak["largest"]) / mib, 1),
        "peak_tree_mib": round(peak["tree"] / mib, 1),
    }


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


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """CPU time (user + system, seconds) of every thread of process ``pid``, from /proc.

    Returns {tid: (thread name, seconds)}; the name is the kernel's (``comm``,
    15 characters), which a thread sets with ``prctl(PR_SET_NAME)``. Empty
    when the process is gone. Resolution: one clock tick (10 ms).
    """
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode("utf-8", "replace")
        fields = stat[stat.rfind(b")") + 2:].split()  # fields[0] is field 3 (state); utime, stime are 14, 15
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores of this machine have spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used over one interval by a server's threads, by this process and by the whole machine.

    server_pid: the process to watch (None: only this process and the
    machine). ``classify(tid, name)`` names the group a server thread belongs
    to (default: every thread in one group, "threads"). Call ``start`` and
    ``stop``; ``stop`` returns CPU *cores* (CPU seconds / wall seconds) per
    group, plus "server" (all its threads), "self" (this process: a load
    generator) and "other" (the rest of the machine: other work that
    competed for the cores), and "wall_s".
    """

    def __init__(self, server_pid: int | None, classify=None):
        self.pid = server_pid
        self.classify = classify or (lambda tid, name: "threads")

    def _sample(self):
        threads = thread_cpu_seconds(self.pid) if self.pid else {}
        t = os.times()
        return time.monotonic(), threads, t.user + t.system, machine_busy_seconds()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict:
        (w0, th0, self0, m0), (w1, th1, self1, m1) = self._start, self._sample()
        wall = max(w1 - w0, 1e-9)
        out: dict[str, float] = {}
        server = 0.0
        for tid, (name, seconds) in th1.items():
            used = seconds - th0.get(tid, (name, 0.0))[1]  # a thread started meanwhile counts from 0
            group = self.classify(tid, name)
            out[group] = out.get(group, 0.0) + used / wall
            server += used / wall
        out["server"] = server
        out["self"] = (self1 - self0) / wall
        if m0 is not None and m1 is not None:
            out["other"] = max(0.0, (m1 - m0) / wall - server - out["self"])
        out["wall_s"] = wall
        return {k: round(v, 3) for k, v in out.items()}


def machine_info() -> dict:
    """CPU model, cores, RAM and OS of this machine."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libc = " ".join(platform.libc_ver()).strip()
    return {"cpu": cpu, "cores": cores, "ram_gib": ram,
            "os": f"{platform.system()} {platform.machine()}{', ' + libc if libc else ''}",
            "python": platform.python_version()}




def generic_corpus(argv: list[str]) -> list[str]:
    """A command line as a report shows it: the corpus folder is this machine's, so it reads CORPUS_DIR."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--corpus" and i + 1 < len(out):
            out[i + 1] = "CORPUS_DIR"
        elif arg.startswith("--corpus="):
            out[i] = "--corpus=CORPUS_DIR"
    return out


def section_markers(name: str) -> tuple[str, str]:
    """The begin/end comment markers of one section of the benchmarks doc."""
    return f"<!-- {name}-begin -->", f"<!-- {name}-end -->"


def update_section(doc: Path, name: str, body: str) -> None:
    """Replace section ``name`` of ``doc`` with ``body`` (markers added), keeping all other sections.

    A missing doc is created with a title; a missing section is appended.
    The file is replaced atomically.
    """
    begin_marker, end_marker = section_markers(name)
    section = f"{begin_marker}\n{body.strip()}\n{end_marker}\n"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n\n"
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin >= 0 and end > begin:
        text = text[:begin] + section.rstrip("\n") + text[end + len(end_marker):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)


def clone_db(src: Path, dst: Path, tracks: int) -> None:
    """A timing catalogue of ``tracks`` tracks: copies of the source's models under new ids.

    Latency depends on the number of track models, not on what they learned,
    so copies measure the cost of a 100-track catalogue without training one.
    Its matches are meaningless; never use it for accuracy.
    """
    from audiocopy.atomic_files import atomic_write_json
    from audiocopy.engines import catalog

    records = catalog.track_records(src)
    if not records:
        raise BenchError(f"{src} has no tracks to clone")
    if dst.exists():
        raise BenchError(f"{dst} exists; remove it first")
    (dst / catalog.TRACKS_DIR).mkdir(parents=True)
    shutil.copy(src / catalog.DB_FILE, dst / catalog.DB_FILE)
    for i in range(tracks):
        rec = {k: v for k, v in records[i % len(records)].items() if k != "_path"}
        track_id = f"clone-{i:04d}-{rec['track_id']}"
        base = catalog.track_filename(track_id)
        shutil.copy(src / catalog.TRACKS_DIR / rec["model_file"], dst / catalog.TRACKS_DIR / f"{base}.keras")
        atomic_write_json(dst / catalog.TRACKS_DIR / f"{base}.json",
                                  {**rec, "track_id": track_id, "model_file": f"{base}.keras"})
    log.info("wrote %s with %d tracks (timing only)", dst, tracks)


# --- a local server for load tests ------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedServer:
    """A server.py child on a free local port, stopped on exit."""

    def __init__(self, db: str, max_streams: int, extra: list[str], code: Path = ROOT):
        self.code = Path(code)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        state = Path(db) / "server-loadtest"
        self.cmd = [sys.executable, str(self.code / "server.py"), "--db", db, "--host", "127.0.0.1", "--port",
                    str(self.port), "--max-streams", str(max_streams), "--state-dir", str(state),
                    "--admin-token", "loadtest-not-a-secret-0000", *extra]
        self.log_path = state / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> "ManagedServer":
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(self.code), os.environ.get("PYTHONPATH")]))}
        # The server's log goes to a file: hundreds of streams log a play each,
        # and an unread pipe would fill up and stall the server mid-measurement.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
        deadline = time.monotonic() + 180
        import urllib.request

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
                raise SystemExit(f"error: the server exited: {tail}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    if json.load(resp).get("ok"):
                        return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit("error: the server did not start within 180 s")

    def rss_mb(self) -> float | None:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except (OSError, AttributeError):
            return None
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(m.group(1)) / 1024 if m else None

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def server_facts(pid: int | None, code: Path = ROOT) -> str:
    """Which code served: the checkout's revision, and whether TensorFlow was loaded in the server process."""
    def git(*a):
        try:
            return subprocess.run(["git", "-C", str(code), *a], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    rev = git("rev-parse", "--short", "HEAD").strip()
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no").strip() else ""
    text = f"server code: `{code}`" + (f", revision {rev}{dirty}" if rev else " (not a git checkout)")
    if pid:
        try:
            tf = "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
            text += f"; TensorFlow {'loaded' if tf else 'not loaded'} in the server process"
        except OSError:
            pass
    return text
