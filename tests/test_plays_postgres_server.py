"""The server with its plays in PostgreSQL (``--store postgresql://...``), and the ``store`` setting.

The tests marked ``postgres`` run the real server (in process, the tiny
catalogue) against a PostgreSQL server that ``postgres_server`` starts on
loopback: a stream over ``/ws`` writes its open play, then closes it in
place, and counts its windows in its source's row, all in PostgreSQL; the
API reads them back from there; a play a dead server left open in
PostgreSQL is recovered when the app starts. The setting's own checks
(parsing, a password never shown) need no server.
"""
from __future__ import annotations

import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401
from synth import pattern
from test_plays_crash import _poll
from test_web_fixtures import make_client, recognizer, s16le, settings, start_stream, stream_pcm  # noqa: F401

from audiocopy.decision.play import Play
from audiocopy.errors import ConfigError
from audiocopy.plays.factory import open_store
from audiocopy.plays.record import PlayOrigin
from audiocopy.web.settings import settings_from_args

RATE = 16000


@pytest.fixture
def pg_store(postgres_url):
    """The test's PostgreSQL database opened as the server will open it, to look under the server."""
    store = open_store(postgres_url)
    yield store
    store.close()


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_stream_over_ws_keeps_its_plays_in_postgres(make_client, postgres_url, pg_store):
    client = await make_client(store=postgres_url)
    pcm = s16le(pattern("pulses", 20, RATE))
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, sample_rate=RATE, source="studio")
        half = len(pcm) // 2 // 2 * 2
        for i in range(0, half, 16000):
            await ws.send_bytes(pcm[i:min(i + 16000, half)])
        (open_row,) = await _poll(lambda: pg_store.query(status="open"), what="an open play in PostgreSQL")
        assert (open_row.track, open_row.source, open_row.source_kind) == ("pulses", "studio", "ws")
        messages = await stream_pcm(ws, pcm[half:], frame_bytes=16000)
    stopped = messages[-1]
    (sent,) = [m for m in messages if m["type"] == "play"]
    (closed,) = await _poll(lambda: pg_store.query(status="closed"), what="the closed play in PostgreSQL")
    assert pg_store.count() == 1  # the close replaced the open row
    assert (closed.id, closed.key) == (open_row.id, sent["key"]) and closed.end_s == sent["end_s"] > open_row.end_s
    (source,) = await _poll(lambda: [r for r in pg_store.sources() if r["windows_answered"] == stopped["windows"]],
                            what="the source's final counts")
    assert (source["name"], source["kind"], source["streams"], source["windows_dropped"]) == ("studio", "ws", 1, 0)
    # The API reads the same rows back from PostgreSQL.
    body = await (await client.get("/api/plays?status=closed")).json()
    assert [(p["key"], p["status"]) for p in body["plays"]] == [(sent["key"], "closed")]
    totals = await (await client.get("/api/plays/totals?by=track")).json()
    assert [(t["track"], t["plays"]) for t in totals["totals"]] == [("pulses", 1)]


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_app_start_recovers_plays_left_open_in_postgres(make_client, postgres_url, pg_store, settings):
    pg_store.add(Play(track="chord", source="radio", start_s=4.0, end_s=19.5, confidence=0.8, peak_score=2.0,
                      windows=30, started_at="2024-05-01T10:00:04.000Z", ended_at="2024-05-01T10:00:19.500Z",
                      key="left-open", open=True), PlayOrigin("monitor", monitor_id="m1", verified=True))
    client = await make_client(store=postgres_url)
    (p,) = (await (await client.get("/api/plays")).json())["plays"]
    assert (p["key"], p["status"], p["end_s"], p["monitor_id"]) == ("left-open", "recovered", 19.5, "m1")
    assert not (settings.state_path / "plays.sqlite").exists()  # nothing went to the embedded default


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_app_with_an_unreachable_store_fails_to_start_clearly(aiohttp_client, settings, recognizer):
    import socket
    from dataclasses import replace

    from audiocopy.plays.base import PlaysLogError
    from audiocopy.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(replace(settings, store=f"postgresql://u:secret@127.0.0.1:{port}/db"), recognizer=recognizer)
    with pytest.raises(PlaysLogError, match="unreachable") as info:
        await aiohttp_client(app)
    assert "secret" not in str(info.value)


# --- the setting, no server needed ---------------------------------------------------

def test_store_setting_takes_a_postgres_url_or_a_file(tiny_db, tmp_path):
    url = "postgresql://plays:s3cret@db.example:5432/audiocopy?sslmode=require"
    s = settings_from_args({"db": str(tiny_db), "store": url}, environ={})
    assert s.store == url  # the server connects with the password ...
    shown = s.public_dict()["store"]
    assert shown == "postgresql://plays:***@db.example:5432/audiocopy?sslmode=require"  # ... never shows it
    from_env = settings_from_args({"db": str(tiny_db)}, environ={"AUDIOCOPY_STORE": str(tmp_path / "p.sqlite")})
    assert from_env.store == str(tmp_path / "p.sqlite")
    default = settings_from_args({"db": str(tiny_db)}, environ={})
    assert default.store is None and default.public_dict()["store"].endswith("server/plays.sqlite")


@pytest.mark.parametrize("bad, why", [("mysql://u:pw@h/db", "unknown scheme"), ("postgresql://u:pw@h:5432/", "name the"),
                                      ("  ", "empty")])
def test_store_setting_rejects_what_it_cannot_open(tiny_db, bad, why):
    with pytest.raises(ConfigError, match=f"--store: invalid value .*{why}") as info:
        settings_from_args({"db": str(tiny_db), "store": bad}, environ={})
    assert ":pw@" not in str(info.value)
