"""This server as one of several workers on one store: heartbeat, monitor leases, takeover and the reaper.

Place in the pipeline: a background task of the app (``web.app`` starts it
after the monitors' manager and stops it first), over the shared store's
``workers`` and ``monitor_leases`` tables (``plays.leases``). It decides
which URL monitors this process runs; ``web.monitors`` runs them.

Every ``lease_renew_s`` seconds (one *tick*; the design of issue 15,
"Semantics", is binding):

1. **heartbeat**: this worker's row says it is alive now;
2. **renew** every lease it holds. A monitor whose lease did not come back
   was taken over: it stops at once. A monitor whose renewals keep failing
   (the store is unreachable) stops at its *local deadline*, the time its
   last successful renewal was sent plus ``ttl - renew``: before its lease
   in the store can expire, so before anyone else can claim it. Two
   workers never run one monitor, even for a moment, as long as their
   clocks agree (NTP);
3. **claim** monitors without a live lease, up to a fair share
   (``plays.leases.fair_share``: ceil(monitors / live workers)), so a
   second worker started beside a first takes half of the monitors that
   come free. On a claim, the dead holder's open plays of that monitor are
   loaded and handed to the new stream (``web.handover``), so a song that
   was playing when the worker died stays one play;
4. **reap**: open WebSocket plays of dead workers are closed as
   "recovered" (their clients went with the worker); inherited monitor
   plays nobody continued within ``adopt_window_s`` likewise.

A worker killed with ``kill -9`` stops renewing; its leases expire within
``lease_ttl_s`` and another worker claims them at its next tick: the
monitors move within ``lease_ttl_s + lease_renew_s`` (13 s by default).
A clean stop releases its leases and marks itself stopped, so they move at
the next tick of another worker.

Start-up (``start``), before any stream of this process writes: open plays
written by this worker id (its previous incarnation: one host cannot bind
one port twice) or by no worker id (an older release) are recovered, as a
single server always did. So is every worker row of this host whose
process is gone (its pid does not exist): it cannot be alive, so its
leases are dropped and its WebSocket plays recovered at once instead of
after the TTL. Workers on one host name are assumed to share one process
table (containers that share a host name must not share a store).

Every store call runs in the I/O executor, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ..config import ServerSettings
from ..plays.base import PlaysLogError, PlayStore
from ..plays.leases import Leases, fair_share
from ..plays.record import PlayRecord
from .handover import Handover
from .stopping import cancel_until_done, wake_or_timeout

log = logging.getLogger(__name__)


class MonitorRunner(Protocol):
    """What the lease loop needs of the monitors' manager (``web.monitors.MonitorManager``)."""

    def running(self) -> set[str]:
        """Ids of the monitors this process runs now."""

    def start_leased(self, monitor_id: str, record_map: Callable[[PlayRecord], PlayRecord]) -> Awaitable[bool]:
        """Start a monitor whose lease this worker has just taken; False when the store has no such monitor.

        record_map: every play record of its stream goes through it before
        it is written (``Handover.map``).
        """

    def stop_leased(self, monitor_id: str) -> Awaitable[None]:
        """Stop a monitor whose lease this worker lost or gave up (its definition stays in the store)."""

    def stream_seconds(self, monitor_id: str) -> float:
        """Seconds of audio the monitor's stream has run since this worker started it."""

    def sync(self, rows: list[tuple[str, str, str]], holders: dict[str, str], *, read_at: float) -> None:
        """The store's monitors (id, name, url) and who else holds their leases, for the pages; read_at:
        ``time.monotonic()`` when their reading began (a monitor added here since may be missing)."""


class WorkerLoop:
    """The lease loop of one worker (see the module docstring).

    settings: ``worker_name``, ``lease_ttl_s``, ``lease_renew_s``,
    ``adopt_window_s``, host and port. store: the shared plays store.
    executor: the I/O pool. runner: the monitors' manager (None: this
    worker runs no monitors, it only heartbeats and reaps).
    clock, monotonic: epoch and monotonic seconds (tests).
    """

    def __init__(self, settings: ServerSettings, store: PlayStore, executor: Executor,
                 runner: MonitorRunner | None = None, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.worker_id = settings.worker_name
        self.store = store
        self.leases = Leases(store, self.worker_id, ttl_s=settings.lease_ttl_s, clock=clock)
        self.runner = runner
        self._executor = executor
        self._monotonic = monotonic
        self._clock = clock
        self.host = socket.gethostname()
        self.address = f"{settings.host}:{settings.port}"
        #: monitor id -> monotonic time by which it must stop unless a renewal succeeds first.
        self.deadlines: dict[str, float] = {}
        self.handovers: dict[str, Handover] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self.ticks = 0
        self.last_error: str | None = None
        #: Called on the event loop with the plays this worker closed as recovered (the app's plays sink
        #: tells its listeners: a recovered play is announced to webhooks like any closed play).
        self.on_recovered: Callable[[list[PlayRecord]], None] | None = None

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- start and stop ------------------------------------------------------------

    async def start(self, *, ticking: bool = True) -> int:
        """Register, recover what this worker's previous run left open, reap dead local workers; start ticking.

        Returns the plays recovered (own and unowned open plays, and the
        WebSocket plays of local workers found dead). ticking: start the
        loop (tests drive ``tick`` themselves without it).
        """
        self.store.worker_id = self.worker_id  # every play this process writes names it
        recovered = await self._io(self._start_sync)
        self._announce(recovered)
        if ticking:
            self._task = asyncio.create_task(self.run(), name="worker-leases")
            self._watchdog = asyncio.create_task(self._watch(), name="worker-lease-deadlines")
        return len(recovered)

    def _announce(self, recovered: list[PlayRecord]) -> None:
        """Tell ``on_recovered`` (webhooks, metrics) of plays this worker closed as recovered (event loop)."""
        if recovered and self.on_recovered is not None:
            self.on_recovered(recovered)

    def _start_sync(self) -> list[PlayRecord]:
        recovered = self.store.recover_records([self.worker_id], unowned=True)
        gone = [w.id for w in self.leases.workers()
                if w.host == self.host and w.id != self.worker_id and w.stopped_at is None and not _pid_alive(w.pid)]
        if gone:
            log.warning("workers %s of this host are gone (no such process): their monitors move now", gone)
            self.leases.declare_dead(gone)
            recovered += self.store.recover_records(gone, unowned=False, kind="ws")
        self.leases.register(self.host, os.getpid(), self.address)
        return recovered

    def wake(self) -> None:
        """Tick now instead of at the next interval (a monitor was added or removed)."""
        self._wake.set()

    async def run(self) -> None:
        """Tick every ``lease_renew_s`` until cancelled; a failing store is logged and retried."""
        while True:
            self._wake.clear()
            try:
                await self.tick()
                self.last_error = None
            except PlaysLogError as exc:
                self.last_error = str(exc)
                log.error("worker %s: lease tick failed (%s); its monitors stop at their lease deadline",
                          self.worker_id, exc)
            await wake_or_timeout(self._wake, self.settings.lease_renew_s)  # keeps a stop's cancel (``web.stopping``)

    async def _watch(self) -> None:
        """Stop monitors at their local deadline even while a tick hangs on a slow store."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.lease_renew_s / 2))
            await self.stop_overdue()

    async def close(self, *, release: bool = True) -> None:
        """Stop ticking; with ``release`` (a clean stop) stop this worker's monitors, then give every lease
        back and mark this worker stopped. Without it (tests of a crash) the leases stay until they expire.
        """
        for task in (self._task, self._watchdog):
            if task is not None:
                await cancel_until_done(task)
        self._task = self._watchdog = None
        if release and self.runner is not None:
            # Its monitors stop before their leases go back: never two workers on one monitor.
            for mid in sorted(self.runner.running()):
                await self.runner.stop_leased(mid)
        if release:
            try:
                released = await self._io(self.leases.stop)
                log.info("worker %s stopped: %d monitor lease(s) released", self.worker_id, released)
            except PlaysLogError as exc:  # the leases expire by themselves within the TTL
                log.error("worker %s: could not release its leases (%s)", self.worker_id, exc)

    # --- one tick --------------------------------------------------------------------

    async def tick(self) -> None:
        """Heartbeat, renew, stop what was lost, claim a fair share, reap (module docstring)."""
        sent = self._monotonic()
        alive, renewed = await self._io(self._beat_sync)
        if not alive:  # our row was declared dead or deleted: register again
            await self._io(self.leases.register, self.host, os.getpid(), self.address)
        running = self.runner.running() if self.runner is not None else set()
        for mid in running | set(self.deadlines):
            if mid in renewed and mid in running:
                self.deadlines[mid] = sent + self.settings.lease_ttl_s - self.settings.lease_renew_s
            elif mid in renewed:  # stopped at its deadline while a tick hung: still ours, claimed again below
                self.deadlines.pop(mid, None)
                self.handovers.pop(mid, None)
            else:
                await self._stop(mid, "its lease was taken over")
        await self._claim()
        # Leases held but not run (a restart with the same id, beyond its fair share now) go back,
        # or renewing them would keep those monitors from running anywhere.
        for mid in sorted(renewed - set(self.deadlines)):
            await self._io(self.leases.release, mid)
        await self._reap()
        self.ticks += 1

    def _beat_sync(self) -> tuple[bool, set[str]]:
        return self.leases.heartbeat(), self.leases.renew()

    async def _stop(self, monitor_id: str, why: str) -> None:
        self.deadlines.pop(monitor_id, None)
        self.handovers.pop(monitor_id, None)
        if self.runner is not None and monitor_id in self.runner.running():
            log.warning("worker %s: monitor %s stops: %s", self.worker_id, monitor_id, why)
            await self.runner.stop_leased(monitor_id)

    async def stop_overdue(self) -> None:
        """Stop every monitor whose local lease deadline has passed without a successful renewal."""
        now = self._monotonic()
        for mid, deadline in list(self.deadlines.items()):
            if now >= deadline:
                await self._stop(mid, "its lease could not be renewed before it expires")

    async def _claim(self) -> None:
        if self.runner is None:
            return
        plan = await self._io(self._plan_sync)
        self.runner.sync(plan.rows, {m: w for m, w in plan.holders.items() if w != self.worker_id},
                         read_at=plan.read_at)
        for mid in plan.stop:
            await self._stop(mid, "it was removed")
            await self._io(self.leases.release, mid)
        for mid in plan.free:
            if len(self.deadlines) >= plan.share:
                break
            sent = self._monotonic()
            inherited = await self._io(self._claim_sync, mid)
            if inherited is None:
                continue
            handover = Handover(inherited, window_s=self.settings.adopt_window_s)
            self.deadlines[mid] = sent + self.settings.lease_ttl_s - self.settings.lease_renew_s
            self.handovers[mid] = handover
            if not await self.runner.start_leased(mid, handover.map):
                await self._stop(mid, "it is not in the store")
                await self._io(self.leases.release, mid)
                continue
            log.info("worker %s: took monitor %s (%d open play(s) of a dead worker to continue)", self.worker_id,
                     mid, len(inherited))

    def _plan_sync(self) -> _Plan:
        read_at = time.monotonic()  # the real clock, as ``Monitors.add`` keeps it (not the injectable one)
        rows = self.leases.monitors()
        holders = self.leases.holders()
        live = self.leases.live_workers()
        share = fair_share(len(rows), len(set(live) | {self.worker_id}))
        known = {mid for mid, _, _ in rows}
        stop = [mid for mid in self.deadlines if mid not in known]
        free = [mid for mid, _, _ in rows if mid not in self.deadlines and holders.get(mid) in (None, self.worker_id)]
        return _Plan(share=share, free=free, stop=stop, rows=rows, holders=holders, read_at=read_at)

    def _claim_sync(self, monitor_id: str) -> list[PlayRecord] | None:
        """Claim one monitor; its dead holders' open plays when we got it, None when another worker has it."""
        if not self.leases.claim(monitor_id):
            return None
        others = [w.id for w in self.leases.workers() if w.id != self.worker_id and not w.alive]
        return self.store.open_plays(monitor_id=monitor_id, worker_ids=others)

    async def _reap(self) -> None:
        expired: list[str] = []
        for mid, handover in list(self.handovers.items()):
            seconds = self.runner.stream_seconds(mid) if self.runner is not None else 0.0
            expired += handover.expire(stream_s=seconds, now=self._clock())
        self._announce(await self._io(self._reap_sync, expired))

    def _reap_sync(self, expired: list[str]) -> list[PlayRecord]:
        recovered = []
        if expired:
            recovered = self.store.recover_keys(expired)
            log.info("worker %s: %d inherited monitor play(s) nobody continued closed as recovered",
                     self.worker_id, len(recovered))
        dead = self.leases.dead_workers()
        if dead:
            recovered += self.store.recover_records(dead, unowned=False, kind="ws")
        self.leases.forget_missing()
        return recovered

    # --- status ----------------------------------------------------------------------

    def status_sync(self) -> list[dict]:
        """The workers as ``/api/status`` shows them (blocking: call it in the I/O executor)."""
        now = self._clock()
        held: dict[str, list[str]] = {}
        for mid, wid in sorted(self.leases.holders().items()):
            held.setdefault(wid, []).append(mid)
        return [{"id": w.id, "host": w.host, "pid": w.pid, "address": w.address, "alive": w.alive,
                 "heartbeat_age_s": round(now - w.heartbeat_at, 1), "monitors": held.get(w.id, [])}
                for w in self.leases.workers()]


@dataclass(frozen=True)
class _Plan:
    """What one tick's claim step found: the fair share, monitors free to claim, held ones since removed,
    every stored monitor (id, name, url), the live leases' holders, and when the reading began."""

    share: int
    free: list[str]
    stop: list[str]
    rows: list[tuple[str, str, str]]
    holders: dict[str, str]
    read_at: float


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: The app's lease loop (``web.app`` sets it; ``/api/status`` reads it).
WORKERS = web.AppKey("workers", WorkerLoop)
