"""A local server for load tests, and the CPU its threads, the load generator and the machine use.

Place in ``tools/bench``: under ``tools/loadtest.py``. ``ManagedServer``
starts ``server.py`` (of this checkout or another one, for an A/B) on a free
loopback port and stops it; ``CpuMeter`` reads, from /proc, the CPU time of
each server thread (grouped by the names the server gives them), of this
process (the load generator) and of the whole machine over one step of the
ramp, so a report can say whether the server, the generator or other work
took the cores. Machine facts, load and the sectioned ``docs/benchmarks.md``
are ``machine`` and ``doc``, shared with the other benchmarks.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .common import BenchError
from .machine import code_revision

ROOT = Path(__file__).resolve().parents[2]


def wait_until_healthy(proc: subprocess.Popen, base_url: str, timeout_s: float) -> None:
    """Return once the server at ``base_url`` answers ``/healthz`` with ok.

    Raises ``BenchError`` when the process ``proc`` exits first ("the server
    exited (status N)") or after ``timeout_s`` seconds; callers add its log.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited (status {proc.returncode})")
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as resp:
                if json.load(resp).get("ok"):
                    return
        except OSError:
            time.sleep(0.5)
    raise BenchError(f"the server did not answer within {timeout_s:.0f} s")


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


# --- a local server for load tests ------------------------------------------------


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
        try:
            wait_until_healthy(self.proc, self.base, 180)
        except BenchError as exc:
            tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
            raise SystemExit(f"error: {exc}: {tail}") from None
        return self

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
    rev = code_revision(code)
    text = f"server code: `{code}`" + (f", revision {rev}" if rev else " (not a git checkout)")
    if pid:
        try:
            tf = "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
            text += f"; TensorFlow {'loaded' if tf else 'not loaded'} in the server process"
        except OSError:
            pass
    return text
