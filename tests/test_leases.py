"""Workers, monitor leases and recovery by worker in the shared store (``plays.leases``, ``PlayStore.recover``).

Every test runs against both backends, as tests/test_plays.py does: the
SQLite file and a real PostgreSQL server (parameter marked ``postgres``).
Time is a fake clock shared by the workers of a test, so expiry is exact
and nothing sleeps; the one test with real threads claims at the same
instant from several connections and checks that each monitor got exactly
one winner.
"""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401
from test_plays import backend  # noqa: F401 - each test on SQLite and on PostgreSQL

from audiocopy.decision.play import Play
from audiocopy.plays.leases import LeaseError, Leases, fair_share
from audiocopy.plays.record import PlayOrigin, PlayRecord

TTL = 10.0


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(backend):
    return backend.open()


def _worker(store, wid: str, clock) -> Leases:
    leases = Leases(store, wid, ttl_s=TTL, clock=clock)
    leases.register("host-" + wid, 100, f"127.0.0.1:{8000 + len(wid)}")
    return leases


def add_monitors(store, *ids: str) -> None:
    p = store.param
    for i, mid in enumerate(ids):
        store.run(f"INSERT INTO monitors (id, name, name_key, url, created_at) VALUES ({p}, {p}, {p}, {p}, {p})",
                  (mid, f"Radio {mid}", f"radio {mid}", "http://radio.example/live", f"2024-05-01T10:00:0{i}.000Z"))


def write_play(store, key: str, worker: str | None, kind: str = "ws", monitor: str | None = None,
            status: str = "open") -> PlayRecord:
    play = Play(track="t1", source="radio", start_s=0.0, end_s=20.0, confidence=1.0, peak_score=2.0, windows=10,
                started_at="2024-05-01T10:00:00.000Z", ended_at="2024-05-01T10:00:20.000Z", key=key,
                open=status == "open")
    origin = PlayOrigin(kind, monitor_id=monitor, verified=kind == "monitor")
    return store.write(replace(PlayRecord.of(play, origin), worker_id=worker))


def statuses(store) -> dict[str, str]:
    return {p.key: p.status for p in store.query()}


def test_one_claim_wins_the_other_is_refused(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1") is True
    assert b.claim("m1") is False
    assert a.claim("m1") is True  # claiming our own lease again renews it
    assert a.holders() == {"m1": "A"}
    (lease,) = a.leases()
    assert (lease.acquired_at, lease.expires_at) == (clock.t, clock.t + TTL)


def test_concurrent_claims_give_each_monitor_exactly_one_worker(store):
    ids = [f"m{i}" for i in range(20)]
    workers = [Leases(store, f"W{i}", ttl_s=TTL) for i in range(4)]
    won: dict[str, list[str]] = {w.worker_id: [] for w in workers}
    barrier = threading.Barrier(len(workers))

    def claim_all(leases: Leases) -> None:
        barrier.wait()
        won[leases.worker_id] = [m for m in ids if leases.claim(m)]

    threads = [threading.Thread(target=claim_all, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = sorted(m for ms in won.values() for m in ms)
    assert winners == sorted(ids)  # every monitor claimed once, none twice
    holders = workers[0].holders()
    assert all(holders[m] == w for w, ms in won.items() for m in ms)


def test_an_expired_lease_is_taken_over_and_the_old_holder_sees_it_lost(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1")
    clock.t += TTL  # expires_at == now: not expired yet (strictly before now only)
    assert b.claim("m1") is False
    clock.t += 0.01
    assert b.claim("m1") is True
    assert a.renew() == set()  # A learns it lost the monitor: it must stop it
    assert b.renew() == {"m1"}
    (lease,) = b.leases()
    assert (lease.worker_id, lease.acquired_at) == ("B", clock.t)


def test_renewal_keeps_a_lease_alive_past_its_first_ttl(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1")
    for _ in range(5):  # 5 renewals 3 s apart: 15 s > TTL, still A's
        clock.t += 3.0
        assert a.heartbeat() and a.renew() == {"m1"}
        assert b.claim("m1") is False
    assert a.live_workers() == ["A"]  # B never heartbeat again: dead by silence
    clock.t += TTL + 0.5  # A stops renewing (killed)
    assert b.claim("m1") is True


def test_clean_stop_releases_leases_and_marks_the_worker_dead_at_once(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1") and a.claim("m2")
    assert a.stop() == 2
    assert a.leases() == [] and b.claim("m1") and b.claim("m2")
    assert a.dead_workers() == ["A"] and b.live_workers() == ["B"]
    assert a.heartbeat() is False  # a stopped row is not revived by a heartbeat...
    a.register("host-A", 101, "127.0.0.1:8001")  # ...only by registering again (a restart)
    assert a.heartbeat() is True and set(a.live_workers()) == {"A", "B"}


def test_dead_by_silence_alive_by_heartbeat(store, clock):
    _worker(store, "A", clock)
    b = _worker(store, "B", clock)
    clock.t += TTL - 1
    assert b.heartbeat()
    clock.t += 2  # A's heartbeat is TTL + 1 old, B's 2 s
    assert b.dead_workers() == ["A"] and b.live_workers() == ["B"]
    rows = {w.id: w for w in b.workers()}
    assert (rows["A"].alive, rows["A"].host, rows["A"].pid, rows["B"].alive) == (False, "host-A", 100, True)


def test_release_only_releases_our_own_lease(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1")
    assert b.release("m1") is False and a.holders() == {"m1": "A"}
    assert a.release("m1") is True and a.holders() == {}


def test_declare_dead_drops_the_leases_of_workers_known_gone(store, clock):
    a, b = _worker(store, "A", clock), _worker(store, "B", clock)
    assert a.claim("m1")
    assert b.declare_dead(["A", "B"]) == 1  # never itself
    assert b.dead_workers() == ["A"] and b.claim("m1")


def test_leases_of_removed_monitors_are_forgotten(store, clock):
    a = _worker(store, "A", clock)
    add_monitors(store, "m1", "m2")
    assert [m for m, _, _ in a.monitors()] == ["m1", "m2"]
    assert a.claim("m1") and a.claim("gone")
    assert a.forget_missing() == 1 and a.holders() == {"m1": "A"}


@pytest.mark.parametrize("monitors, live, share", [(0, 1, 0), (1, 2, 1), (4, 2, 2), (5, 2, 3), (3, 3, 1),
                                                    (7, 1, 7), (2, 0, 2)])
def test_fair_share_is_the_ceiling_of_monitors_per_live_worker(monitors, live, share):
    assert fair_share(monitors, live) == share


def test_bad_lease_arguments_are_refused(store):
    with pytest.raises(LeaseError):
        Leases(store, "", ttl_s=TTL)
    with pytest.raises(LeaseError):
        Leases(store, "A", ttl_s=0)
    with pytest.raises(LeaseError):
        fair_share(-1, 2)


# --- plays by worker -----------------------------------------------------------------------


def test_start_recovers_own_and_unowned_open_plays_only(store):
    write_play(store, "own", "A")
    write_play(store, "unowned", None)
    write_play(store, "other", "B")
    write_play(store, "own-closed", "A", status="closed")
    assert store.recover(["A"], unowned=True) == 2
    assert statuses(store) == {"own": "recovered", "unowned": "recovered", "other": "open",
                                "own-closed": "closed"}


def test_reaper_recovers_only_dead_workers_websocket_plays(store):
    write_play(store, "dead-ws", "A")
    write_play(store, "dead-monitor", "A", kind="monitor", monitor="m1")
    write_play(store, "live-ws", "B")
    write_play(store, "unowned-ws", None)
    assert store.recover(["A"], unowned=False, kind="ws") == 1
    assert statuses(store) == {"dead-ws": "recovered", "dead-monitor": "open", "live-ws": "open",
                                "unowned-ws": "open"}
    assert store.recover([], unowned=False) == 0  # nobody dead: nothing


def test_recover_without_workers_closes_every_open_play_as_one_server_did(store):
    write_play(store, "a", "A")
    write_play(store, "b", None)
    assert store.recover() == 2 and store.count("open") == 0


def test_a_dead_workers_open_plays_of_one_monitor(store):
    write_play(store, "m1-dead", "A", kind="monitor", monitor="m1")
    write_play(store, "m2-dead", "A", kind="monitor", monitor="m2")
    write_play(store, "m1-live", "B", kind="monitor", monitor="m1")
    write_play(store, "m1-closed", "A", kind="monitor", monitor="m1", status="closed")
    assert [p.key for p in store.open_plays(monitor_id="m1", worker_ids=["A"])] == ["m1-dead"]
    assert store.open_plays(monitor_id="m1", worker_ids=[]) == []
    assert [r.key for r in store.recover_keys(["m1-dead", "m1-closed"])] == ["m1-dead"]
    assert statuses(store)["m1-dead"] == "recovered" and statuses(store)["m1-closed"] == "closed"


def test_every_write_names_its_worker_and_an_adopter_takes_the_row_over(store):
    store.worker_id = "A"
    write_play(store, "k", None)
    assert store.query()[0].worker_id == "A"
    store.worker_id = "B"  # the worker that continues the play writes it next
    write_play(store, "k", None, status="closed")
    (row,) = store.query()
    assert (row.worker_id, row.status) == ("B", "closed")
