"""The scale benchmark's Milvus part: the same catalogues in a Milvus Lite standalone server on loopback.

Place in ``tools/bench``: optional step of ``tools/bench_scale.py``
(``--milvus-tracks``). It starts Milvus Lite's ``milvus-server`` (the
``milvus`` extra) on a free loopback port with its data in a temporary
folder, as the tests' fixture does (``tests/milvus_server.py``; a tool
cannot import the tests, hence this small launcher of its own), and
always stops it and deletes the folder. Milvus Lite's embedded etcd always
takes port 2380, so the step refuses to start while another Milvus Lite
holds it, saying so, rather than fail half-way. Each call is bounded
(30 s; index building and loading 300 s); a size that fails or runs out of
time ends the step, and its row says why.

Per size: the engine's ``MilvusIndex`` (``IVF_PQ`` at every size, the
type ``auto`` picks past ``flat_max_vectors``; nlist capped at 1,024 as
Milvus trains one IVF per segment) filled track by track as enrolment
does; then the segments sealed and indexed (``rebuild``), timed; the
search of one query window's sub-windows (batch 1) timed; top-1 on the
clean query windows through the engine's vote; and the RSS of the server's
process tree (launcher and ``milvus`` binary). A size whose inserts would
outlast ``timeout_s`` stops there, and the row says so.
"""
from __future__ import annotations

import logging
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

import numpy as np

from .common import BenchError
from .machine import median_ms

log = logging.getLogger(__name__)

START_TIMEOUT_S = 240.0
ETCD_PORT = 2380


def port_taken(port: int) -> bool:
    """Something listens on loopback ``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_rss_mib(pid: int) -> float:
    """Resident memory (MiB) of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo += children(p)
    return total / 1024


class LiteServer:
    """One ``milvus-server`` in its own process group, on loopback, data in a temporary folder."""

    def __init__(self):
        if port_taken(ETCD_PORT):
            raise BenchError(f"port {ETCD_PORT} is taken (another Milvus Lite's embedded etcd): Milvus Lite runs "
                             "one server per machine; stop it, then run the Milvus step again")
        exe = Path(sys.executable).with_name("milvus-server")
        if not exe.exists():
            raise BenchError("milvus-server not found: install the milvus extra (bash tools/setup_env.sh milvus)")
        self.root = Path(tempfile.mkdtemp(prefix="audiocopy-scale-milvus-"))
        args = [a for role in ("proxy", "rootCoord", "queryCoord", "queryNode", "indexCoord", "indexNode",
                               "dataCoord", "dataNode") for a in ("--extra-config", f"{role}.ip=127.0.0.1")]
        with open(self.root / "server.log", "ab") as out:
            self.proc = subprocess.Popen([str(exe), "--data", str(self.root / "data"), "--proxy-port",
                                          str(free_port()), *args, "--extra-config", "common.gracefulStopTimeout=5"],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.uri = None

    def start(self) -> str:
        """Wait (bounded) until the proxy answers; returns its URI."""
        from pymilvus import connections, utility

        deadline = time.monotonic() + START_TIMEOUT_S
        while not children(self.proc.pid):
            self._check(deadline)
            time.sleep(0.2)
        text = ""
        while "port:" not in text:
            self._check(deadline)
            time.sleep(0.2)
            cfg = self.root / "data" / "configs" / "milvus.yaml"
            text = cfg.read_text() if cfg.exists() else ""
        port = int(re.search(r"^proxy:\n(?:(?:[ #].*)?\n)*?  port: (\d+)", text, re.MULTILINE).group(1))
        self.uri = f"http://127.0.0.1:{port}"
        while True:
            try:
                connections.connect("probe", uri=self.uri, timeout=2)
                utility.get_server_version(using="probe", timeout=2)
                return self.uri
            except Exception:  # noqa: BLE001 - not up yet; the deadline bounds the wait
                self._check(deadline)
                time.sleep(0.5)
            finally:
                connections.remove_connection("probe")

    def _check(self, deadline: float) -> None:
        code = self.proc.poll()
        if code is not None or time.monotonic() > deadline:
            tail = (self.root / "server.log").read_text(errors="replace")[-1500:]
            self.stop()
            raise BenchError(f"milvus-server did not start (exit status {code}); its log ends:\n{tail}")

    def rss_mib(self) -> float:
        return tree_rss_mib(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM the binary, SIGINT the launcher, SIGKILL what is left of this group; delete the data."""
        try:
            for pid in children(self.proc.pid):
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this step created, nothing else
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=15)
            shutil.rmtree(self.root, ignore_errors=True)


# Long: one size end to end (insert, seal and index, search, top-1, server memory), each part timed.
def one_size(uri: str, server: LiteServer, cat: dict, qs: dict, size: int, *, seed: int, timeout_s: float) -> dict:
    """Fill a fresh collection with a ``size``-track catalogue and measure it (see the module docstring)."""
    from audiocopy.config import IndexParams
    from audiocopy.engines.fingerprint.index.open import create_index

    from .scale_index import score, top1_from, track_vectors

    base = cat["base"]
    hop, k = base.match.enrol_hop_frames, base.match.top_k
    params = IndexParams(backend="milvus", milvus_uri=uri, milvus_collection=f"scale_{size}", milvus_index="IVF_PQ",
                         milvus_timeout_s=30.0)
    index = create_index(base.encoder.dim, params)
    row = {"tracks": size, "rss_empty_mib": server.rss_mib()}
    t0, n = time.perf_counter(), 0
    for key in range(size):
        v = track_vectors(cat["real"], key, seed)
        index.add(key, v, np.arange(len(v), dtype=np.int64) * hop)
        n += len(v)
        spent = time.perf_counter() - t0
        if spent > timeout_s:
            row["stopped"] = (f"inserts stopped at {key + 1:,} tracks after {spent:.0f} s ({n / spent:,.0f} vectors/s:"
                              f" {size:,} tracks would take ~{spent * size / (key + 1) / 60:.0f} min)")
            break
    row.update(insert_s=time.perf_counter() - t0, vectors=n, vectors_per_s=n / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    index.rebuild()
    row.update(build_s=time.perf_counter() - t0, structure=index.structure)
    emb, starts = qs["emb"]["clean"], qs["starts"]
    one = emb[:len(starts)]
    row["search_ms"] = median_ms(lambda: index.search(one, k), 20)
    sims, tracks, positions = index.search(emb, k)
    from audiocopy.engines.fingerprint.index.base import POS_BITS

    ids = np.where(tracks < 0, -1, (tracks.astype(np.int64) << POS_BITS) | np.maximum(positions, 0))
    sources = cat["sources"]
    top1 = top1_from(sims, ids, starts, len(qs["track"]), base.match)
    row["top1_clean"] = score(top1, qs["track"], lambda key: sources[key] if key < len(sources) else None)[
        "top1_source"]
    row["server_rss_mib"] = server.rss_mib()
    index.clear()  # drop the collection: the next size starts from an empty server
    index.close()
    row["server_rss_after_drop_mib"] = server.rss_mib()
    log.info("Milvus %s", row)
    return row


def milvus_sizes(cat: dict, qs: dict, sizes: list[int], *, seed: int, timeout_s: float, on_row=None) -> dict:
    """Every size on one fresh server; returns {"rows", "note"} (a server that cannot start: no rows, and why).

    on_row(rows): called after each size (to save what was measured so far).
    """
    try:
        server = LiteServer()
    except BenchError as exc:
        return {"rows": [], "note": f"**Milvus**: not measured: {exc}"}
    rows = []
    try:
        uri = server.start()
        rss_idle = server.rss_mib()
        for size in sizes:
            try:
                rows.append(one_size(uri, server, cat, qs, size, seed=seed, timeout_s=timeout_s))
            except Exception as exc:  # noqa: BLE001 - a size that fails ends the step; its row says why
                log.warning("Milvus at %d tracks failed: %s", size, exc)
                rows.append({"tracks": size, "stopped": f"failed: {type(exc).__name__}: {str(exc)[:300]}",
                             "server_rss_mib": server.rss_mib()})
            if on_row:
                on_row(rows)
            if "stopped" in rows[-1]:
                break
    finally:
        server.stop()
    note = (f"**Milvus** (Milvus Lite standalone {milvus_version()}, one server on loopback on this same machine, "
            f"sharing its 2 cores with the client): the catalogues above, keys 0..N−1, into an `IVF_PQ` collection "
            f"through the engine's `MilvusIndex` (one upsert per track, as enrolment writes), then sealed and "
            f"indexed (`rebuild`). Server RSS (launcher + `milvus` binary) idle before the first size: "
            f"{rss_idle:.0f} MiB. Search: one window's {len(qs['starts'])} sub-window vectors per call (median of "
            f"20), top-{cat['base'].match.top_k}; top-1 on the clean query windows through the engine's vote.")
    return {"rows": rows, "note": note}


def milvus_version() -> str:
    try:
        from importlib.metadata import version

        return version("milvus")
    except Exception:  # noqa: BLE001 - only for the report's wording
        return "(version unknown)"
