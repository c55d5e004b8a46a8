"""A real Milvus server for the tests marked ``milvus`` and ``scaleout`` (this module holds no tests).

``milvus`` (session): Milvus Lite's ``milvus-server`` (the ``milvus``
extra) on a free loopback port with its data in a temporary folder; the
fixture waits (bounded) until it answers, and always stops it and deletes
the folder. ``milvus_server`` (per test): its URI. ``milvus_root``
(session): the temporary folder, and the skip without the extra.

The fixtures are registered once, in ``conftest.py``, so every test module
of a run shares one server: Milvus Lite's embedded etcd always takes port
2380, so a second server on the same machine cannot start. Without the
``milvus`` extra the tests that need a server are skipped, saying so; a
server that does not start fails them.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT_S = 240.0  # a first start unpacks ~250 MB of binaries; CI machines are slow and shared
STOP_TIMEOUT_S = 30.0
MISSING = [m for m in ("pymilvus", "milvus") if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class MilvusServer:
    """One ``milvus-server`` (a Python launcher and its ``milvus`` child) in its own process group.

    The launcher resolves the ports (the next free one from each default;
    ours for the proxy), writes ``DATA/configs/milvus.yaml`` and starts the
    binary. It ignores SIGTERM's need to stop its child, so ``stop`` ends
    the binary first (SIGTERM, which also flushes etcd), then the launcher.
    """

    def __init__(self, data: Path):
        self.data, self.proc, self.uri = data, None, None
        self.exe = Path(sys.executable).with_name("milvus-server")
        if not self.exe.exists():
            self.exe = Path(shutil.which("milvus-server") or "milvus-server")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start and wait until the proxy answers; returns its URI."""
        with open(self.data.parent / f"{self.data.name}.log", "ab") as log:  # the child keeps its own copy
            # Components advertise loopback to each other; Milvus 2.3 has no bind-address setting, so its
            # ports listen on every interface of this machine while the tests run.
            self.proc = subprocess.Popen([str(self.exe), "--data", str(self.data), "--proxy-port", str(free_port()),
                                          *[a for role in ("proxy", "rootCoord", "queryCoord", "queryNode",
                                                           "indexCoord", "indexNode", "dataCoord", "dataNode")
                                            for a in ("--extra-config", f"{role}.ip=127.0.0.1")],
                                          # Force-quit 5 s after SIGTERM (default 1800 s) when segments are loaded.
                                          "--extra-config", "common.gracefulStopTimeout=5"],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.binary():  # the launcher writes the config before it starts the binary
            self._check(deadline, "start")
            time.sleep(0.2)
        self.uri = f"http://127.0.0.1:{self.proxy_port()}"
        from pymilvus import connections, utility

        while True:
            try:
                connections.connect("probe", uri=self.uri, timeout=2)
                utility.get_server_version(using="probe", timeout=2)
                return self.uri
            except Exception:  # noqa: BLE001 - not up yet; the deadline bounds the wait
                self._check(deadline, "answer")
                time.sleep(0.5)
            finally:
                connections.remove_connection("probe")

    def _check(self, deadline: float, what: str) -> None:
        code = self.proc.poll()
        if code is not None or time.monotonic() > deadline:
            tail = (self.data.parent / f"{self.data.name}.log").read_text(errors="replace")[-2000:]
            self.stop()
            pytest.fail(f"milvus-server did not {what} (exit status {code}); its log ends:\n{tail}")

    def binary(self) -> int | None:
        kids = _children(self.proc.pid) if self.proc else []
        return kids[0] if kids else None

    def proxy_port(self) -> int:
        """The port the launcher gave the proxy (ours, or the next free one if ours was taken meanwhile)."""
        text = (self.data / "configs" / "milvus.yaml").read_text()
        return int(re.search(r"^proxy:\n(?:(?:[ #].*)?\n)*?  port: (\d+)", text, re.MULTILINE).group(1))

    def freeze(self, on: bool) -> None:
        """Stop (SIGSTOP) or continue the binary: a server that accepts calls and never answers."""
        os.kill(self.binary(), signal.SIGSTOP if on else signal.SIGCONT)

    def stop(self) -> None:
        """Stop the binary gracefully, then the launcher; SIGKILL whatever of the group is left."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            child = _children(proc.pid)
            for pid in child:
                os.kill(pid, signal.SIGCONT)  # a frozen server cannot handle SIGTERM
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(_alive(pid) for pid in child) and time.monotonic() < deadline:
                time.sleep(0.2)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the launcher's handler reaps its child and exits
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test created, nothing else
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def milvus_root():
    """A temporary folder for servers' data, deleted at the end (it holds ~250 MB of binaries per server)."""
    if MISSING:
        pytest.skip(f"the milvus extra is not installed ({', '.join(MISSING)} missing): "
                    "bash tools/setup_env.sh test,milvus")
    root = Path(tempfile.mkdtemp(prefix="audiocopy-milvus-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus(milvus_root) -> MilvusServer:
    """The Milvus server of the session (``.uri``; the restart test may change its port)."""
    server = MilvusServer(milvus_root / "shared")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def milvus_server(milvus) -> str:
    """The URI of the session's server."""
    return milvus.uri
