"""Shared pieces of the scaled-out tests (marker ``scaleout``; this module holds no tests).

The scaled-out set-up is N ``audiocopy serve`` processes (workers) sharing
one PostgreSQL store (``--store postgresql://...``), one Milvus index
(enrolled with ``--index milvus``) and one database folder. These tests run
it for real: PostgreSQL from ``postgres_server.py``, Milvus from
``milvus_server.py`` (both on loopback, started by their fixtures and always
stopped), the workers as subprocesses of the ``audiocopy`` command this
environment installed, each on its own free loopback port.

* ``write_catalogue``: seeded synthetic melodies with known answers
  (``synth.melody``; the fingerprint engine needs no training): catalogue
  tracks, calibration negatives, and unknown music for a radio programme.
* ``Worker``: one server process (its log in a file, shown when it fails),
  ``wait_healthy``, ``status`` (``/api/status``), ``kill`` (SIGKILL) and
  ``stop``; ``running_workers`` stops every one at the end of a test.
* ``plays_rows``: the plays table as the store holds it, read with psycopg.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
from synth import melody

ADMIN_TOKEN = "scaled-out-admin-token-0123456789"
FILE_RATE = 22050
HEALTHY_TIMEOUT_S = 120.0  # loading the encoder and the Milvus collection on a shared 2-core machine
STOP_TIMEOUT_S = 20.0
AUDIOCOPY = Path(sys.executable).with_name("audiocopy")  # the command this environment installed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_catalogue(root: Path, tracks: dict[str, tuple[int, float]], negatives: int = 5) -> tuple[Path, Path]:
    """``root/catalog/NAME.wav`` per ``tracks`` entry (melody seed, seconds), ``root/negatives/`` (10 s each).

    Returns (catalog folder, negatives folder); a track's id is its file name's stem.
    """
    catalog, negs = root / "catalog", root / "negatives"
    catalog.mkdir(parents=True)
    negs.mkdir()
    for name, (seed, seconds) in tracks.items():
        sf.write(catalog / f"{name}.wav", melody(seed, seconds, FILE_RATE), FILE_RATE)
    for i in range(negatives):
        sf.write(negs / f"negative{i}.wav", melody(100 + i, 10, FILE_RATE), FILE_RATE)
    return catalog, negs


def music(seed: int, seconds: float) -> np.ndarray:
    """Unknown music (a melody no catalogue or negative uses) at ``FILE_RATE``."""
    return melody(seed, seconds, FILE_RATE)


def clean_env() -> dict[str, str]:
    """This environment without any AUDIOCOPY_* setting (a developer's own must not leak into the workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOCOPY_")}
    env["PATH"] = f"{AUDIOCOPY.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def get_json(url: str, *, token: str | None = None, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict, *, token: str, timeout: float = 10.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Worker:
    """One ``audiocopy serve`` process on loopback, in its own process group.

    args: the options after ``serve`` (``--port`` is added); log: its
    stdout and stderr, shown by ``describe`` when a check fails.
    """

    def __init__(self, worker_id: str, args: list[str], log: Path):
        self.id, self.port, self.log = worker_id, free_port(), log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([str(AUDIOCOPY), "serve", "--port", str(self.port), *args],
                                         stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                         start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return f"worker {self.id} (pid {self.proc.pid}, exit {self.proc.poll()}); its log ends:\n{tail}"

    def wait_healthy(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited while starting: {self.describe()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no /healthz within {timeout_s:.0f} s: {self.describe()}")
            time.sleep(0.5)

    def status(self) -> dict:
        return get_json(f"{self.url}/api/status")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, its leases and open plays stay as they were."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after ``STOP_TIMEOUT_S``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started (ffmpeg children too)
        self.proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_workers():
    """A list to put ``Worker`` s in; every one is stopped when the block ends, whatever happened."""
    workers: list[Worker] = []
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()


def worker_ids(status: dict, *, alive: bool = True) -> set[str]:
    """The ids of the workers an ``/api/status`` answer lists (alive ones by default)."""
    return {w["id"] for w in status.get("workers", []) if w.get("alive") == alive}


def plays_rows(pg_url: str) -> list[dict]:
    """Every row of the store's plays table, oldest first, as dicts."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg_url, autocommit=True, connect_timeout=10, row_factory=dict_row) as con:
        return con.execute("SELECT id, key, track, source, status, start_s, end_s, started_at, ended_at, "
                           "updated_at, windows, monitor_id, worker_id FROM plays ORDER BY id").fetchall()


def poll(check, *, timeout_s: float, what: str, every_s: float = 0.25):
    """``check()`` until it returns something true; an AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)
