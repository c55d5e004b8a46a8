"""The lease loop (``web.workers.WorkerLoop``): which worker runs which monitor, takeover, reaper, status.

Two or three loops share one store (SQLite, and PostgreSQL under the
``postgres`` marker), each with a fake monitor runner that only records
what it was told to start and stop. A fake clock drives both the leases
(epoch) and the local deadlines (monotonic), and the tests call ``tick``
themselves, so each step has one known answer and nothing sleeps. The real
thing, two server processes and a SIGKILL, is in test_workers_takeover.py.
"""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401
from test_leases import Clock, add_monitors, backend, statuses, write_play  # noqa: F401
from test_web_fixtures import make_client, recognizer, settings  # noqa: F401

from audiocopy.config import ServerSettings
from audiocopy.plays.base import PlaysLogError
from audiocopy.web.workers import WorkerLoop

pytestmark = pytest.mark.asyncio


class FakeRunner:
    """A ``MonitorRunner`` that runs nothing: it remembers what is running and each monitor's record map."""

    def __init__(self):
        self.started: dict[str, object] = {}
        self.stopped: list[str] = []
        self.seconds: dict[str, float] = {}
        self.rows: list = []
        self.elsewhere: dict[str, str] = {}

    def running(self) -> set[str]:
        return set(self.started)

    async def start_leased(self, monitor_id, record_map) -> bool:
        if monitor_id not in {r[0] for r in self.rows} and self.rows:
            return False
        self.started[monitor_id] = record_map
        return True

    async def stop_leased(self, monitor_id) -> None:
        self.started.pop(monitor_id, None)
        self.stopped.append(monitor_id)

    def stream_seconds(self, monitor_id) -> float:
        return self.seconds.get(monitor_id, 0.0)

    def sync(self, rows, holders, *, read_at) -> None:
        self.rows, self.elsewhere = rows, holders


@pytest.fixture
def io():
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(backend):  # noqa: F811
    return backend.open()


def _loop(store, io, clock, wid: str, port: int, runner=None, **kw) -> WorkerLoop:
    chosen = ServerSettings(db=store.location, port=port, worker_id=wid, lease_ttl_s=10.0, lease_renew_s=3.0,
                            adopt_window_s=30.0, **kw)
    # Each worker has its own store object (its own process in real life), one database.
    own = type(store).__new__(type(store))
    own.__dict__.update(store.__dict__)
    return WorkerLoop(chosen, own, io, runner if runner is not None else FakeRunner(), clock=clock,
                      monotonic=clock)


async def test_one_worker_takes_every_monitor_two_workers_split_them(store, io, clock):
    add_monitors(store, "m1", "m2", "m3", "m4")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await b.start(ticking=False)  # both alive before anyone claims: share = ceil(4 / 2)
    await a.tick()
    await b.tick()
    assert a.runner.running() == {"m1", "m2"} and b.runner.running() == {"m3", "m4"}
    assert b.runner.elsewhere == {"m1": "A", "m2": "A"}
    solo = _loop(store, io, clock, "C", 8003)
    await solo.tick()  # nothing is free: a third worker runs nothing
    assert solo.runner.running() == set()


async def test_killed_worker_monitors_move_within_ttl_plus_one_tick(store, io, clock):
    add_monitors(store, "m1")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await a.tick()
    await b.start(ticking=False)
    assert a.runner.running() == {"m1"}
    killed_at = clock.t  # A renewed at this instant, then stops (SIGKILL): no more ticks of A
    took_at = None
    while took_at is None:
        clock.t += 3.0  # B's ticks, lease_renew_s apart
        await b.tick()
        if b.runner.running() == {"m1"}:
            took_at = clock.t
    assert 10.0 < took_at - killed_at <= 13.0  # after the lease expired, at most one tick later
    await a.tick()  # A was only frozen, not dead: its renewal comes back empty and it stops at once
    assert a.runner.running() == set() and a.runner.stopped == ["m1"]


async def test_a_worker_whose_store_fails_stops_its_monitors_before_the_lease_expires(store, io, clock):
    add_monitors(store, "m1")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await a.tick()
    renewed_at = clock.t

    def down(*args, **kwargs):
        raise PlaysLogError("store down")

    a.leases.renew = down
    clock.t += 3.0
    with pytest.raises(PlaysLogError):
        await a.tick()
    clock.t = renewed_at + 10.0 - 3.0 - 0.01
    await a.stop_overdue()
    assert a.runner.running() == {"m1"}  # until its local deadline (ttl - renew after the last renewal)...
    clock.t += 0.02
    await a.stop_overdue()
    assert a.runner.running() == set()  # ...then it stops, 3 s before anyone else may claim it
    clock.t = renewed_at + 10.0
    await b.start(ticking=False)
    await b.tick()
    assert b.runner.running() == set()  # the lease in the store has not expired yet
    clock.t += 0.01
    await b.tick()
    assert b.runner.running() == {"m1"}


async def test_clean_close_stops_then_releases_so_the_next_tick_elsewhere_takes_over(store, io, clock):
    add_monitors(store, "m1")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await a.tick()
    await b.start(ticking=False)
    await a.close()
    assert a.runner.stopped == ["m1"] and a.leases.dead_workers() == ["A"]
    await b.tick()  # no TTL to wait for
    assert b.runner.running() == {"m1"}


async def test_reaper_and_handover_of_a_dead_workers_plays(store, io, clock):
    add_monitors(store, "m1")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await a.tick()
    await b.start(ticking=False)
    write_play(store, "a-ws", "A")
    write_play(store, "a-monitor", "A", kind="monitor", monitor="m1")
    write_play(store, "b-ws", "B")
    await b.tick()
    assert statuses(store) == {"a-ws": "open", "a-monitor": "open", "b-ws": "open"}  # A is alive
    clock.t += 10.5
    await b.tick()  # A is dead: its WebSocket play is recovered, its monitor play handed to B's stream
    assert statuses(store) == {"a-ws": "recovered", "a-monitor": "open", "b-ws": "open"}
    handover = b.handovers["m1"]
    assert handover.waiting == 1 and b.runner.started["m1"] == handover.map
    b.runner.seconds["m1"] = 30.0  # B's stream ran the whole window without continuing it
    await b.tick()
    assert statuses(store)["a-monitor"] == "recovered" and handover.recovered_keys == ["a-monitor"]


async def test_restart_with_the_same_id_recovers_its_own_plays_and_takes_its_monitors_back(store, io, clock):
    add_monitors(store, "m1")
    a = _loop(store, io, clock, "A", 8001)
    await a.start(ticking=False)
    await a.tick()
    write_play(store, "mine", "A")
    write_play(store, "old-release", None)
    write_play(store, "other", "B")
    again = _loop(store, io, clock, "A", 8001)  # A killed and restarted at once: same host and port
    assert await again.start(ticking=False) == 2
    assert statuses(store) == {"mine": "recovered", "old-release": "recovered", "other": "open"}
    await again.tick()
    assert again.runner.running() == {"m1"}  # its own lease: no TTL to wait for


async def test_a_removed_monitor_stops_on_its_holder(store, io, clock):
    add_monitors(store, "m1", "m2")
    a = _loop(store, io, clock, "A", 8001)
    await a.start(ticking=False)
    await a.tick()
    store.run(f"DELETE FROM monitors WHERE id = {store.param}", ("m2",))
    await a.tick()
    assert a.runner.running() == {"m1"} and a.leases.holders() == {"m1": "A"}


async def test_status_lists_workers_and_the_monitors_each_holds(store, io, clock):
    add_monitors(store, "m1", "m2")
    a, b = _loop(store, io, clock, "A", 8001), _loop(store, io, clock, "B", 8002)
    await a.start(ticking=False)
    await b.start(ticking=False)
    await a.tick()
    await b.tick()
    clock.t += 1.5
    rows = {w["id"]: w for w in a.status_sync()}
    assert set(rows) == {"A", "B"}
    assert (rows["A"]["monitors"], rows["B"]["monitors"]) == (["m1"], ["m2"])
    assert rows["A"]["alive"] and rows["A"]["heartbeat_age_s"] == 1.5 and rows["A"]["address"] == "127.0.0.1:8001"
    assert set(rows["A"]) == {"id", "host", "pid", "address", "alive", "heartbeat_age_s", "monitors"}


async def test_plays_written_by_a_worker_carry_its_id(store, io, clock):
    a = _loop(store, io, clock, "A", 8001)
    await a.start(ticking=False)
    write_play(store, "k", None)  # the test's own store object: no worker
    a.store.write(replace(a.store.query()[0], key="k2", id=None))
    assert {p.key: p.worker_id for p in store.query()} == {"k": None, "k2": "A"}


# --- settings -----------------------------------------------------------------------------


async def test_lease_settings_defaults_flags_and_their_checks(tiny_db):
    import socket

    from audiocopy.errors import ConfigError
    from audiocopy.web.settings import settings_from_args

    s = settings_from_args({"db": str(tiny_db), "port": "9123"}, environ={})
    assert (s.worker_name, s.lease_ttl_s, s.lease_renew_s, s.adopt_window_s) == (
        f"{socket.gethostname()}:9123", 10.0, 3.0, 30.0)
    assert s.public_dict()["worker_id"] == s.worker_name
    s = settings_from_args({"db": str(tiny_db), "worker_id": "edge-1"},
                           environ={"AUDIOCOPY_LEASE_TTL_S": "7", "AUDIOCOPY_LEASE_RENEW_S": "3.4"})
    assert (s.worker_name, s.lease_ttl_s, s.lease_renew_s) == ("edge-1", 7.0, 3.4)
    assert settings_from_args({"db": str(tiny_db), "port": "0"}, environ={}).worker_name.endswith(f":pid{os.getpid()}")
    with pytest.raises(ConfigError, match="more than twice --lease-renew-s"):
        settings_from_args({"db": str(tiny_db), "lease_ttl_s": "6", "lease_renew_s": "3"}, environ={})
    for bad in ("", "two words", "x" * 201):
        with pytest.raises(ConfigError, match="--worker-id"):
            settings_from_args({"db": str(tiny_db), "worker_id": bad}, environ={})
    with pytest.raises(ConfigError, match="--adopt-window-s"):
        settings_from_args({"db": str(tiny_db), "adopt_window_s": "0"}, environ={})


async def test_api_status_shows_this_worker_and_every_worker_on_the_store(make_client, settings):  # noqa: F811
    from audiocopy.plays.leases import Leases
    from audiocopy.plays.store import PlaysLog

    client = await make_client(worker_id="here")
    other = Leases(PlaysLog(settings.state_path / "plays.sqlite"), "gone", ttl_s=10.0, clock=lambda: 1.0)
    other.register("elsewhere", 4242, "10.0.0.9:8080")  # its heartbeat is decades old: dead
    body = await (await client.get("/api/status")).json()
    rows = {w["id"]: w for w in body["workers"]}
    assert body["worker_id"] == "here" and body["workers_error"] is None
    assert rows["here"]["alive"] is True and rows["here"]["monitors"] == [] and rows["here"]["pid"] == os.getpid()
    assert (rows["gone"]["alive"], rows["gone"]["host"], rows["gone"]["address"]) == (False, "elsewhere",
                                                                                       "10.0.0.9:8080")


async def test_a_restart_beyond_its_fair_share_gives_back_the_leases_it_does_not_run(store, io, clock):
    add_monitors(store, "m1", "m2")
    a = _loop(store, io, clock, "A", 8001)
    await a.start(ticking=False)
    await a.tick()
    b = _loop(store, io, clock, "B", 8002)
    await b.start(ticking=False)
    await b.tick()
    assert b.runner.running() == set()  # A holds both
    again = _loop(store, io, clock, "A", 8001)  # A restarts at once: its leases are its own
    await again.start(ticking=False)
    await again.tick()
    assert again.runner.running() == {"m1"}  # its share of two monitors between two workers...
    assert again.leases.holders() == {"m1": "A"}  # ...and m2's lease went back
    await b.tick()
    assert b.runner.running() == {"m2"}


async def test_a_monitor_stopped_at_its_deadline_restarts_once_its_lease_is_renewed_again(store, io, clock):
    add_monitors(store, "m1")
    a = _loop(store, io, clock, "A", 8001)
    await a.start(ticking=False)
    await a.tick()
    clock.t += 7.5  # a tick hung past the local deadline: the watchdog stops the monitor
    await a.stop_overdue()
    assert a.runner.running() == set()
    await a.tick()  # the store answers again and nobody took the lease: it runs here again
    assert a.runner.running() == {"m1"} and a.leases.holders() == {"m1": "A"}


async def test_a_wake_in_the_same_turn_as_the_stop_does_not_lose_the_stop(store, io, clock):
    """A monitor added (``wake``) as the server stops (``cancel``): the lease loop must end.

    With ``asyncio.wait_for`` around the wake on Python 3.11, the wake won and
    the cancel was lost (CPython gh-86296): the loop went on ticking and the
    server's shutdown waited for it forever (two CI runs hung so).
    """
    add_monitors(store, "m1")
    a = _loop(store, io, clock, "A", 8001)
    await a.start()
    try:
        for _ in range(200):
            if a.ticks >= 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # resting in its wait for the next tick
        task = a._task
        a.wake()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        assert task.cancelled(), "the lease loop lost its cancel"
    finally:
        await asyncio.wait_for(a.close(), timeout=10)
