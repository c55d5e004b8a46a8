"""Two server processes on one store, one live radio monitor, the holder killed: one play, moved in < 15 s.

Two ``audiocopy serve`` workers (ids "worker-a", "worker-b") share one
state folder, so one SQLite store, with the default lease timing (TTL 10 s,
renewal every 3 s): the embedded store, where ``test_scaled_out.py`` runs
the same scenario on PostgreSQL and Milvus. A local station
(``live_radio.LiveRadio``) plays the catalogue's "chord" live (paced by the
wall clock from its first listener, then silence for ever), so a worker
that connects later hears the rest of the song, as from a real radio. The
workers are ``scaled_out_fixtures.Worker`` processes. Once the holder has an open play of it in
the store, the holder is killed with SIGKILL (no shutdown, no flush). The
other worker must claim the monitor within 15 s of the kill, and when the
song has ended the store must hold it exactly once: one closed play, from
the killed worker's start to the new worker's end, written last by the new
worker (``web.handover``), and no other play of the station.
"""
from __future__ import annotations

import shutil
import time

import pytest
from live_radio import RATE, LiveRadio, Segment
from scaled_out_fixtures import ADMIN_TOKEN, Worker, poll, post_json, running_workers
from synth import pattern

from audiocopy.plays.store import PlaysLog

SONG_S = 45.0  # long enough to outlast the kill, the takeover and the new worker's detection
TAKEOVER_LIMIT_S = 15.0

# Two servers start and run for a minute and a half: with the other multi-worker tests, not in the default run.
pytestmark = [pytest.mark.scaleout, pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")]


def _holders(worker: Worker, monitor_id: str) -> dict[str, bool] | None:
    """{worker id: alive} of the workers ``worker``'s /api/status says hold ``monitor_id``; None if it is down."""
    try:
        body = worker.status()
    except OSError:
        return None
    return {w["id"]: w["alive"] for w in body.get("workers") or [] if monitor_id in w["monitors"]}


# Long: one scenario, step by step, reads best in one place
def test_killed_holder_monitor_moves_within_15_s_and_its_song_is_one_play(tiny_db, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    store = PlaysLog(state / "plays.sqlite")
    args = ["--db", str(tiny_db), "--state-dir", str(state), "--host", "127.0.0.1", "--admin-token", ADMIN_TOKEN,
            "--allow-private-monitors", "true"]
    with LiveRadio([Segment("chord", pattern("chord", SONG_S, RATE), "chord")], format="wav") as radio, \
            running_workers() as workers:
        for worker_id in ("worker-a", "worker-b"):
            workers.append(Worker(worker_id, [*args, "--worker-id", worker_id], tmp_path / f"{worker_id}.log"))
        for w in workers:
            w.wait_healthy()
        status, answer = post_json(f"{workers[0].url}/api/monitors", {"url": radio.url, "name": "Live Radio"},
                                   token=ADMIN_TOKEN)
        assert status == 201, answer
        mid = answer["monitor"]["id"]
        first = poll(lambda: [i for i, alive in (_holders(workers[1], mid) or {}).items() if alive],
                     timeout_s=15, what="a worker taking the monitor")[0]
        victim, survivor = sorted(workers, key=lambda w: w.id != first)
        opened = poll(lambda: store.query(source="Live Radio", status="open"), timeout_s=60,
                      what="an open play of the song")
        assert [(p.track, p.worker_id) for p in opened] == [("chord", victim.id)]
        time.sleep(2.0)  # the song plays on a little, checkpoints written
        victim.kill()
        killed_at = time.monotonic()
        poll(lambda: (_holders(survivor, mid) or {}).get(survivor.id), timeout_s=30, what="the takeover")
        took_s = time.monotonic() - killed_at
        print(f"takeover: {took_s:.1f} s after the kill, {time.time() - radio.on_air_at - took_s:.1f} s into the song")
        assert took_s <= TAKEOVER_LIMIT_S, f"the monitor moved {took_s:.1f} s after the kill"
        body = survivor.status()
        rows = {w["id"]: w for w in body["workers"]}
        assert body["worker_id"] == survivor.id and rows[victim.id]["alive"] is False
        assert rows[victim.id]["monitors"] == []

        # The song ends (silence follows); the new holder closes the play it continued.
        closed = poll(lambda: store.query(source="Live Radio", status="closed"), timeout_s=SONG_S + 60,
                      what="the song's play closing")
        print(f"song closed {radio.now_s():.1f} s after it began")
    plays = store.query(source="Live Radio")
    assert len(plays) == 1, [(p.key, p.status, p.worker_id, p.start_s, p.end_s) for p in plays]
    (play,) = closed
    assert (play.key, play.track, play.worker_id) == (opened[0].key, "chord", survivor.id)
    assert play.started_at == opened[0].started_at  # from the killed worker's start...
    assert play.end_s - play.start_s > SONG_S - 15  # ...to the survivor's end: nearly the whole song
