"""Server workers and the monitor leases they hold, in the store that every worker shares.

Place in the pipeline: under ``web.workers`` (the loop that heartbeats,
renews, claims and reaps) and beside the other tables of the plays store
(schema version 3, ``plays.schema``): ``workers`` has one row per server
process, ``monitor_leases`` one row per monitor that some worker runs.

Why leases in the database. Several ``audiocopy serve`` processes, on one
machine or several, share one store; each URL monitor must run on exactly
one of them, and move to another when its worker dies. The database is the
one thing every worker already reaches, and one statement in it is atomic,
so no lock service is needed:

* **claim** is one ``INSERT ... ON CONFLICT (monitor_id) DO UPDATE ...
  WHERE <the lease is mine or has expired> RETURNING worker_id``. Of two
  workers claiming one monitor at once, the database runs one upsert after
  the other and the second finds a live lease that is not its own: its
  ``WHERE`` fails, it gets no row back, it does not run the monitor;
* **renew** is one ``UPDATE ... WHERE worker_id = me RETURNING monitor_id``:
  the monitors it returns are still this worker's, for another ``ttl_s``;
  one it does not return was taken over and must stop;
* a worker is **dead** when its heartbeat is older than ``ttl_s`` or its
  row says it stopped (a clean shutdown sets ``stopped_at`` and releases
  its leases at once, so its monitors move without waiting for the TTL).

Time. Every time compared here is epoch seconds (``time.time()``) from the
worker that runs the statement, passed in as a parameter, so SQLite and
PostgreSQL compare the same numbers. Workers on several machines must
therefore share a clock (NTP); a skew of a second shortens or lengthens a
lease by as much.

Every method runs blocking SQL (call it from an executor, never on the
event loop) and raises ``plays.base.PlaysLogError`` when the store fails.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import AudiocopyError
from .base import PlayStore


class LeaseError(AudiocopyError):
    """Lease timing that cannot work (a TTL that is not positive, a worker without an id)."""


@dataclass(frozen=True)
class WorkerRow:
    """One server process as the ``workers`` table knows it.

    heartbeat_at, started_at, stopped_at: epoch seconds (stopped_at None
    while it runs). alive: heartbeat within ``ttl_s`` and not stopped, as of
    the moment the row was read.
    """

    id: str
    host: str
    pid: int
    address: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    alive: bool


@dataclass(frozen=True)
class Lease:
    """Who runs a monitor, until when (epoch seconds)."""

    monitor_id: str
    worker_id: str
    acquired_at: float
    expires_at: float


class Leases:
    """The ``workers`` and ``monitor_leases`` tables as seen by one worker (see the module docstring).

    store: the shared plays store. worker_id: this process's id (unique per
    running worker; a restarted process with the same id is the same
    worker). ttl_s: how long a heartbeat or a lease lasts without renewal.
    clock: epoch seconds (tests pass a fake one).
    """

    def __init__(self, store: PlayStore, worker_id: str, *, ttl_s: float, clock: Callable[[], float] = time.time):
        if not worker_id:
            raise LeaseError("a worker needs a non-empty id")
        if not ttl_s > 0:
            raise LeaseError(f"the lease TTL must be positive, got {ttl_s}")
        self.store = store
        self.worker_id = worker_id
        self.ttl_s = float(ttl_s)
        self.clock = clock

    # --- this worker's row --------------------------------------------------------

    def register(self, host: str, pid: int, address: str) -> None:
        """Write this worker's row as just started (a restart with the same id replaces the old one)."""
        now = self.clock()
        p = self.store.param
        self.store.run(
            f"INSERT INTO workers (id, host, pid, address, started_at, heartbeat_at, stopped_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, NULL) ON CONFLICT (id) DO UPDATE SET host = excluded.host, "
            "pid = excluded.pid, address = excluded.address, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
            (self.worker_id, host, int(pid), address, now, now))

    def heartbeat(self) -> bool:
        """Mark this worker alive now; False when its row is gone or says it stopped (register again)."""
        p = self.store.param
        n = self.store.run(f"UPDATE workers SET heartbeat_at = {p} WHERE id = {p} AND stopped_at IS NULL",
                           (self.clock(), self.worker_id))
        return n > 0

    def stop(self) -> int:
        """Clean shutdown: release every lease of this worker and mark it stopped; returns leases released."""
        released = self.release_all()
        p = self.store.param
        self.store.run(f"UPDATE workers SET stopped_at = {p} WHERE id = {p}", (self.clock(), self.worker_id))
        return released

    # --- leases ----------------------------------------------------------------------

    def claim(self, monitor_id: str) -> bool:
        """Take the lease of ``monitor_id`` if it is free, expired or already ours; True when we hold it now.

        One statement (module docstring): of several workers claiming at
        once, exactly one gets it. Claiming a lease we hold renews it and
        keeps its ``acquired_at``.
        """
        now = self.clock()
        p = self.store.param
        row = self.store.run(
            f"INSERT INTO monitor_leases (monitor_id, worker_id, acquired_at, expires_at) VALUES ({p}, {p}, {p}, {p}) "
            "ON CONFLICT (monitor_id) DO UPDATE SET "
            "acquired_at = CASE WHEN monitor_leases.worker_id = excluded.worker_id "
            "THEN monitor_leases.acquired_at ELSE excluded.acquired_at END, "
            "worker_id = excluded.worker_id, expires_at = excluded.expires_at "
            f"WHERE monitor_leases.worker_id = excluded.worker_id OR monitor_leases.expires_at < {p} "
            "RETURNING worker_id",
            (monitor_id, self.worker_id, now, now + self.ttl_s, now), fetch="one")
        return row is not None and row[0] == self.worker_id

    def renew(self) -> set[str]:
        """Extend every lease this worker holds by ``ttl_s``; returns the monitors whose lease it still holds.

        A monitor this worker runs that is not in the answer was taken over
        (its lease expired and another worker claimed it): stop it.
        """
        now = self.clock()
        p = self.store.param
        rows = self.store.run(f"UPDATE monitor_leases SET expires_at = {p} WHERE worker_id = {p} RETURNING monitor_id",
                              (now + self.ttl_s, self.worker_id), fetch="all")
        return {r[0] for r in rows}

    def release(self, monitor_id: str) -> bool:
        """Give up the lease of ``monitor_id`` (only if it is ours); True when one was released."""
        p = self.store.param
        return self.store.run(f"DELETE FROM monitor_leases WHERE monitor_id = {p} AND worker_id = {p}",
                              (monitor_id, self.worker_id)) > 0

    def release_all(self) -> int:
        """Give up every lease of this worker; returns how many."""
        return int(self.store.run(f"DELETE FROM monitor_leases WHERE worker_id = {self.store.param}",
                                  (self.worker_id,)))

    def forget_missing(self) -> int:
        """Delete leases of monitors that no longer exist (removed on some worker); returns how many."""
        return int(self.store.run("DELETE FROM monitor_leases WHERE monitor_id NOT IN (SELECT id FROM monitors)"))

    def leases(self) -> list[Lease]:
        """Every lease row, live or expired, by monitor id."""
        rows = self.store.run("SELECT monitor_id, worker_id, acquired_at, expires_at FROM monitor_leases "
                              "ORDER BY monitor_id", fetch="all")
        return [Lease(m, w, float(a), float(e)) for m, w, a, e in rows]

    def holders(self) -> dict[str, str]:
        """monitor id -> worker id, for the leases that have not expired."""
        now = self.clock()
        return {lease.monitor_id: lease.worker_id for lease in self.leases() if lease.expires_at >= now}

    def monitors(self) -> list[tuple[str, str, str]]:
        """(id, name, url) of every monitor in the store, in one order for every worker (oldest first)."""
        rows = self.store.run("SELECT id, name, url FROM monitors ORDER BY created_at, id", fetch="all")
        return [(str(i), str(n), str(u)) for i, n, u in rows]

    # --- workers ---------------------------------------------------------------------

    def workers(self) -> list[WorkerRow]:
        """Every worker row, with ``alive`` as of now (id order)."""
        now = self.clock()
        rows = self.store.run("SELECT id, host, pid, address, started_at, heartbeat_at, stopped_at FROM workers "
                              "ORDER BY id", fetch="all")
        out = []
        for wid, host, pid, address, started, beat, stopped in rows:
            alive = stopped is None and now - float(beat) <= self.ttl_s
            out.append(WorkerRow(wid, host, int(pid), address, float(started), float(beat),
                                 None if stopped is None else float(stopped), alive))
        return out

    def live_workers(self) -> list[str]:
        """Ids of the workers alive now (this one included once it has registered)."""
        return [w.id for w in self.workers() if w.alive]

    def dead_workers(self) -> list[str]:
        """Ids of the workers that stopped or whose heartbeat is older than ``ttl_s``."""
        return [w.id for w in self.workers() if not w.alive]

    def declare_dead(self, worker_ids: Iterable[str]) -> int:
        """Mark workers known to be gone as stopped and drop their leases (their monitors move at once).

        For a worker this one can prove dead without waiting for its TTL (a
        process of this host whose pid no longer exists, ``web.workers``).
        Returns how many worker rows changed.
        """
        ids = [w for w in worker_ids if w != self.worker_id]
        if not ids:
            return 0
        p = self.store.param
        marks = ", ".join([p] * len(ids))
        self.store.run(f"DELETE FROM monitor_leases WHERE worker_id IN ({marks})", ids)
        return int(self.store.run(f"UPDATE workers SET stopped_at = {p} WHERE stopped_at IS NULL AND id IN ({marks})",
                                  [self.clock(), *ids]))


def fair_share(monitors: int, live_workers: int) -> int:
    """The most monitors one worker claims: ceil(monitors / live workers), so load spreads.

    live_workers counts this worker too (at least 1 is assumed).
    """
    if monitors < 0:
        raise LeaseError(f"monitor count cannot be negative, got {monitors}")
    return -(-monitors // max(1, live_workers))
