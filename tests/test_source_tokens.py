"""Forged sources: stream tokens decide under which name a /ws stream's plays are logged.

Before stream tokens, anyone who reached ``/ws`` could stream under any
``source`` name, a monitored station's included, and its plays were logged
under that name. Each attack below worked on that code and is refused now:

* streaming under a URL monitor's name (in any letter case);
* streaming under a name the admin protected with a token, without it;
* streaming with a made-up, rotated or revoked token;
* claiming a verified source in the ``start`` message itself.

And what must keep working: a valid token logs the plays under the token's
own name, verified, whatever name the client claims; a free name without a
token still streams, its plays marked unverified; ``--require-source-tokens``
refuses every stream without a token. The registry keeps only hashes.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3

import numpy as np
import pytest
from aiohttp import WSMsgType
from synth import pattern
from test_web_fixtures import (  # noqa: F401
    CLIENT_RATE,
    auth_headers,
    make_client,
    receive_json,
    recognizer,
    s16le,
    settings,
    stream_pcm,
)

from audiocopy.errors import ConfigError, ProtocolError
from audiocopy.plays.store import PlaysLog
from audiocopy.plays.token_rows import LEGACY_FILE, TokenRows
from audiocopy.web import protocol
from audiocopy.web.settings import settings_from_args
from audiocopy.web.source_tokens import SourceTokens, authorise, source_key

#: 3 s of silence, then a catalogue track for 6 s: one play (as in test_web_ws).
PULSES = s16le(np.concatenate([np.zeros(3 * CLIENT_RATE, dtype=np.float32), pattern("pulses", 6, CLIENT_RATE)]))


def start_message(source: str, **extra) -> dict:
    return {"type": "start", "sample_rate": CLIENT_RATE, "format": "s16le", "channels": 1, "source": source,
            "realtime": False, **extra}


async def attempt(client, source: str, **extra) -> tuple[dict, list[dict], int | None]:
    """Start a stream and, when it is accepted, stream ``PULSES`` to the end.

    Returns the first answer (``ready`` or ``error``), the messages that
    followed, and the close code when the server closed the connection.
    """
    async with client.ws_connect("/ws") as ws:
        await ws.send_json(start_message(source, **extra))
        first = await receive_json(ws)
        if first["type"] == "ready":
            return first, await stream_pcm(ws, PULSES), None
        closing = await ws.receive(timeout=10)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), closing
        return first, [], ws.close_code


async def logged_plays(client, count: int) -> list[dict]:
    """The plays log once it holds ``count`` plays (written off the event loop: allow up to 10 s)."""
    for _ in range(100):
        plays = (await (await client.get("/api/plays")).json())["plays"]
        if len(plays) >= count:
            return plays
        await asyncio.sleep(0.1)
    return plays


async def issue(client, source: str) -> dict:
    resp = await client.post("/api/sources/tokens", headers=auth_headers(), json={"source": source})
    assert resp.status == 201, await resp.text()
    return await resp.json()


def assert_refused(first: dict, close_code: int | None, code: str) -> None:
    assert first["type"] == "error" and first["code"] == code, first
    assert first["fatal"] is True and first["message"]
    assert close_code == 1008


def write_monitor(settings_, name: str) -> None:
    """A saved URL monitor (its loopback URL is refused by the URL guard, so it never reads anything)."""
    settings_.state_path.mkdir(parents=True, exist_ok=True)
    (settings_.state_path / "monitors.json").write_text(json.dumps([{"id": "m1", "name": name,
                                                                      "url": "http://127.0.0.1:9/radio"}]))


# --- the forged-source attacks --------------------------------------------------

@pytest.mark.asyncio
async def test_streaming_under_a_monitors_name_is_refused_and_logs_nothing(make_client, settings):
    write_monitor(settings, "Radio One")
    client = await make_client()
    for claimed in ("Radio One", "radio one", "RADIO  ONE", "Ｒadio One"):  # case, spaces, full-width letter
        first, _, close_code = await attempt(client, claimed)
        assert_refused(first, close_code, "source_reserved")
        assert "monitor" in first["message"]
    # A control stream under a free name is logged: the refused ones would have been logged before it.
    first, _, _ = await attempt(client, "my laptop")
    assert first["type"] == "ready"
    plays = await logged_plays(client, 1)
    assert [(p["source"], p["source_verified"]) for p in plays] == [("my laptop", False)]


@pytest.mark.asyncio
async def test_streaming_under_a_protected_name_without_its_token_is_refused(make_client):
    client = await make_client()
    await issue(client, "Studio A")
    for claimed in ("Studio A", "studio a", " STUDIO   A "):
        first, _, close_code = await attempt(client, claimed)
        assert_refused(first, close_code, "source_reserved")
        assert "source_token" in first["message"]
    first, _, _ = await attempt(client, "Studio B")
    assert first["type"] == "ready" and first["source_verified"] is False
    plays = await logged_plays(client, 1)
    assert [p["source"] for p in plays] == ["Studio B"]


@pytest.mark.asyncio
async def test_a_token_logs_plays_under_its_own_source_verified(make_client):
    client = await make_client()
    token = (await issue(client, "Studio A"))["token"]
    # The client claims another name (even a monitor-like one): the token's name wins.
    first, messages, _ = await attempt(client, "Somebody Else", source_token=token)
    assert first["type"] == "ready" and first["source"] == "Studio A" and first["source_verified"] is True
    assert [m["source"] for m in messages if m["type"] == "play"] == ["Studio A"]
    plays = await logged_plays(client, 1)
    assert [(p["track"], p["source"], p["source_kind"], p["source_verified"]) for p in plays] == [
        ("pulses", "Studio A", "ws", True)]
    sources = (await (await client.get("/api/plays/sources")).json())
    assert "Somebody Else" not in json.dumps(sources)
    listed = (await (await client.get("/api/sources/tokens", headers=auth_headers())).json())["tokens"]
    assert listed[0]["source"] == "Studio A" and listed[0]["last_used_at"] is not None


@pytest.mark.asyncio
async def test_without_a_token_a_free_name_streams_unverified(make_client):
    client = await make_client()
    # A client cannot declare itself verified: the field is the server's.
    first, _, _ = await attempt(client, "kitchen radio", source_verified=True)
    assert first["type"] == "ready" and first["source"] == "kitchen radio" and first["source_verified"] is False
    plays = await logged_plays(client, 1)
    assert [(p["source"], p["source_kind"], p["source_verified"]) for p in plays] == [
        ("kitchen radio", "ws", False)]


@pytest.mark.parametrize("token", ["not-a-real-token-000000000000000000000000000", "x"])
@pytest.mark.asyncio
async def test_an_invalid_token_is_refused(make_client, token):
    client = await make_client()
    await issue(client, "Studio A")
    first, _, close_code = await attempt(client, "Studio A", source_token=token)
    assert_refused(first, close_code, "forbidden_source_token")
    assert token not in first["message"]
    first, _, close_code = await attempt(client, "free name", source_token=token)  # on a free name too
    assert_refused(first, close_code, "forbidden_source_token")


@pytest.mark.parametrize("token", [123, "", "a" * 201, "tab\there", None])
@pytest.mark.asyncio
async def test_a_malformed_token_field_is_a_bad_start(make_client, token):
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json(start_message("x", source_token=token))
        msg = await receive_json(ws)
    if token is None:  # null means "no token"
        assert msg["type"] == "ready" and msg["source_verified"] is False
    else:
        assert msg["type"] == "error" and msg["code"] == "bad_start" and "source_token" in msg["message"]


@pytest.mark.asyncio
async def test_rotation_and_revocation_invalidate_the_old_token(make_client):
    client = await make_client()
    old = (await issue(client, "Studio A"))["token"]
    rotated = await issue(client, "studio a")
    assert rotated["rotated"] is True and rotated["token"] != old
    first, _, close_code = await attempt(client, "Studio A", source_token=old)
    assert_refused(first, close_code, "forbidden_source_token")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json(start_message("x", source_token=rotated["token"]))
        ready = await receive_json(ws)
    assert ready["type"] == "ready" and ready["source"] == "studio a" and ready["source_verified"] is True
    listed = (await (await client.get("/api/sources/tokens", headers=auth_headers())).json())["tokens"]
    assert [t["source"] for t in listed] == ["studio a"]
    # Revoked: the token stops working and the name is free again (unverified).
    resp = await client.delete("/api/sources/tokens/STUDIO%20A", headers=auth_headers())
    assert resp.status == 200 and (await resp.json())["removed"] == "studio a"
    first, _, close_code = await attempt(client, "x", source_token=rotated["token"])
    assert_refused(first, close_code, "forbidden_source_token")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json(start_message("studio a"))
        ready = await receive_json(ws)
    assert ready["type"] == "ready" and ready["source_verified"] is False
    resp = await client.delete("/api/sources/tokens/STUDIO%20A", headers=auth_headers())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_source_token"


@pytest.mark.asyncio
async def test_the_registry_holds_hashes_only_and_survives_a_restart(make_client, settings):
    client = await make_client()
    issued = await issue(client, "Studio A")
    token = issued["token"]
    assert len(token) >= 40
    stored = sqlite3.connect(settings.state_path / "plays.sqlite").execute(
        "SELECT name_key, name, sha256, created_at, last_used_at FROM source_tokens").fetchall()
    assert token not in repr(stored)
    assert stored == [("studio a", "Studio A", hashlib.sha256(token.encode()).hexdigest(), issued["created_at"],
                       None)]
    assert not (settings.state_path / LEGACY_FILE).exists()  # the store holds them, no file of its own
    listed = await (await client.get("/api/sources/tokens", headers=auth_headers())).json()
    assert token not in json.dumps(listed) and "sha256" not in json.dumps(listed)
    assert listed["tokens"] == [{"source": "Studio A", "created_at": issued["created_at"], "last_used_at": None}]
    # A restarted server knows the token.
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json(start_message("x", source_token=token))
        ready = await receive_json(ws)
    assert ready["source"] == "Studio A" and ready["source_verified"] is True


@pytest.mark.asyncio
async def test_token_endpoints_need_the_admin_token(make_client):
    client = await make_client()
    calls = [("get", "/api/sources/tokens", None), ("post", "/api/sources/tokens", {"source": "Studio A"}),
             ("delete", "/api/sources/tokens/Studio%20A", None)]
    for method, url, body in calls:
        resp = await getattr(client, method)(url, json=body)
        assert resp.status == 401, (method, await resp.text())
        resp = await getattr(client, method)(url, json=body, headers=auth_headers("wrong-token-0123456789"))
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "bad_token"
        resp = await getattr(client, method)(url, json=body, headers={**auth_headers(),
                                                                       "Origin": "https://evil.example"})
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden_origin"
    assert (await (await client.get("/api/sources/tokens", headers=auth_headers())).json())["tokens"] == []


@pytest.mark.parametrize("source, code, status", [
    ("", "bad_source_name", 400),
    ("   ", "bad_source_name", 400),
    ("a/b", "bad_source_name", 400),
    ("a\\b", "bad_source_name", 400),
    ("x" * 101, "bad_source_name", 400),
    ("line\nbreak", "bad_source_name", 400),
    (42, "bad_source_name", 400),
    (None, "bad_source_name", 400),
    ("radio one", "source_is_monitor", 409),
])
@pytest.mark.asyncio
async def test_bad_source_names_are_refused(make_client, settings, source, code, status):
    write_monitor(settings, "Radio One")
    client = await make_client()
    resp = await client.post("/api/sources/tokens", headers=auth_headers(), json={"source": source})
    assert resp.status == status and (await resp.json())["error"]["code"] == code
    assert (await resp.json())["error"]["message"]
    resp = await client.post("/api/sources/tokens", headers=auth_headers(), data=b"not json")
    assert resp.status == 400
    assert (await issue(client, "x" * 100))["source"] == "x" * 100  # the longest name is accepted


@pytest.mark.asyncio
async def test_require_source_tokens_refuses_streams_without_one(make_client):
    client = await make_client(require_source_tokens=True)
    first, _, close_code = await attempt(client, "free name")
    assert_refused(first, close_code, "source_token_required")
    token = (await issue(client, "Studio A"))["token"]
    first, _, _ = await attempt(client, "free name", source_token=token)
    assert first["type"] == "ready" and first["source"] == "Studio A" and first["source_verified"] is True
    plays = await logged_plays(client, 1)
    assert [(p["source"], p["source_verified"]) for p in plays] == [("Studio A", True)]


def test_require_source_tokens_setting(tiny_db):
    parsed = settings_from_args({"db": str(tiny_db), "require_source_tokens": "true"}, {}, check_db=False)
    assert parsed.require_source_tokens is True
    parsed = settings_from_args({"db": str(tiny_db)}, {"AUDIOCOPY_REQUIRE_SOURCE_TOKENS": "1"}, check_db=False)
    assert parsed.require_source_tokens is True
    assert settings_from_args({"db": str(tiny_db)}, {}, check_db=False).require_source_tokens is False
    with pytest.raises(ConfigError, match="require-source-tokens"):
        settings_from_args({"db": str(tiny_db), "require_source_tokens": "maybe"}, {}, check_db=False)


# --- the registry and the admission rule on their own ----------------------------

def test_registry_use_times_are_written_at_most_once_a_minute(tmp_path):
    now = [1_000_000.0]
    rows = TokenRows(PlaysLog(tmp_path / "plays.sqlite"))
    tokens = SourceTokens.load(rows, clock=lambda: now[0])
    _, token = tokens.issue("Studio A")

    def stored_use():
        return rows.all()[0].last_used_at

    assert tokens.verify(token).source == "Studio A" and stored_use() == "1970-01-12T13:46:40Z"
    now[0] += 30
    assert tokens.verify(token).last_used_at == "1970-01-12T13:47:10Z"
    assert stored_use() == "1970-01-12T13:46:40Z"  # in memory only, for now
    assert tokens.entries()[0].last_used_at == "1970-01-12T13:47:10Z"  # the listing shows it already
    tokens.flush()
    assert stored_use() == "1970-01-12T13:47:10Z"
    now[0] += 31
    assert tokens.verify(token) is not None and stored_use() == "1970-01-12T13:47:41Z"  # a minute since the write
    assert tokens.verify(token + "x") is None and tokens.verify("") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"tokens": [{"source": "a"}]}',
                                     '{"tokens": [{"source": "a", "sha256": "zz", "created_at": "t"}]}'])
def test_a_malformed_legacy_registry_stops_the_server(tmp_path, content):
    (tmp_path / LEGACY_FILE).write_text(content)
    with pytest.raises(ConfigError, match="token"):
        SourceTokens.load(TokenRows(PlaysLog(tmp_path / "plays.sqlite")), tmp_path)
    assert (tmp_path / LEGACY_FILE).read_text() == content  # left as it was, for the admin to fix


def test_a_damaged_token_table_stops_the_server(tmp_path):
    store = PlaysLog(tmp_path / "plays.sqlite")
    store.run("INSERT INTO source_tokens (name_key, name, sha256, created_at) VALUES ('a', 'a', 'zz', 't')")
    with pytest.raises(ConfigError, match="not a SHA-256"):
        SourceTokens.load(TokenRows(store))


def test_authorise_rules(tmp_path):
    tokens = SourceTokens.load(TokenRows(PlaysLog(tmp_path / "plays.sqlite")))
    _, token = tokens.issue("Studio A")
    start = protocol.parse_start(start_message("Radio One"))
    with pytest.raises(ProtocolError) as err:
        authorise(start, tokens, ["radio one"], required=False)
    assert err.value.code == protocol.SOURCE_RESERVED
    granted = authorise(protocol.parse_start(start_message("Radio One", source_token=token)), tokens,
                        ["radio one"], required=True)
    assert (granted.source, granted.source_verified, granted.source_token) == ("Studio A", True, None)
    assert token not in repr(protocol.parse_start(start_message("x", source_token=token)))
    free = authorise(protocol.parse_start(start_message("free")), tokens, ["radio one"], required=False)
    assert (free.source, free.source_verified) == ("free", False)
    assert source_key(" Ｒadio\tONE ") == source_key("radio one")


# --- tools/stream.py --------------------------------------------------------------

@pytest.mark.asyncio
async def test_stream_tool_sends_the_token_from_the_environment(aiohttp_server, settings, recognizer, tmp_path,
                                                               capsys, monkeypatch):
    import argparse
    import importlib.util
    import sys
    from pathlib import Path

    import soundfile as sf

    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth
    from audiocopy.web.source_tokens import SOURCE_TOKENS

    spec = importlib.util.spec_from_file_location("tool_stream_tokens", Path(__file__).resolve().parents[1]
                                                  / "tools" / "stream.py")
    stream = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = stream
    spec.loader.exec_module(stream)
    app = create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token("test-admin-token-0123456789"))
    server = await aiohttp_server(app)
    _, token = app[SOURCE_TOKENS].issue("Studio A")
    wav = tmp_path / "chord.wav"
    sf.write(wav, pattern("chord", 3, 44100), 44100)
    # The command line reads the environment when --source-token is not given.
    monkeypatch.setenv(stream.TOKEN_ENV, token)
    assert stream.parse_args([str(wav)]).source_token == token
    assert stream.parse_args([str(wav), "--source-token", "other"]).source_token == "other"
    monkeypatch.delenv(stream.TOKEN_ENV)
    assert stream.parse_args([str(wav)]).source_token is None
    args = argparse.Namespace(source=str(wav), server=f"ws://127.0.0.1:{server.port}/ws", no_pacing=True,
                              name="Somebody Else", all=False, json=True, source_token=token)
    assert await stream.run(args) == 0
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert messages[0]["source"] == "Studio A" and messages[0]["source_verified"] is True
    assert "verified by its token" in stream.describe(messages[0], False)
    # Without the token, the protected name is refused and the tool exits 1 with the server's reason.
    args.source_token = None
    args.name = "studio a"
    with pytest.raises(stream.StreamError, match="protected by a stream token"):
        await stream.run(args)


# --- the Plays page ------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.asyncio
async def test_plays_page_marks_unverified_sources(aiohttp_server, settings, recognizer):
    """A play of a stream without a token shows "(unverified)" beside its source; verified ones do not."""
    import shutil
    from pathlib import Path

    try:
        import playwright.async_api as playwright_api
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[browser]')")
    chromium = os.environ.get("AUDIOCOPY_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists() and not shutil.which(chromium):
        pytest.skip(f"no Chromium at {chromium} (apt-get install -y chromium)")
    from audiocopy.decision.play import Play
    from audiocopy.plays.record import PlayOrigin
    from audiocopy.plays.store import PlaysLog
    from audiocopy.web.app import PLAYS_FILE, create_app
    from audiocopy.web.auth import AdminAuth

    store = PlaysLog(settings.state_path / PLAYS_FILE)
    for source, origin, start in (("Studio A", PlayOrigin("ws", verified=True), "2024-05-01T10:00:00.000Z"),
                                  ("my laptop", PlayOrigin("ws"), "2024-05-01T11:00:00.000Z")):
        store.add(Play(track="chirps", source=source, start_s=0.0, end_s=20.0, confidence=1.0, peak_score=2.0,
                       windows=9, started_at=start, ended_at=start.replace(":00:00", ":00:20")), origin)
    store.close()
    server = await aiohttp_server(create_app(settings, recognizer=recognizer,
                                             auth=AdminAuth.from_token("test-admin-token-0123456789")))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                           args=["--no-sandbox", "--headless", "--disable-gpu"])
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/plays")
            rows = page.locator("#plays-rows tr")
            await playwright_api.expect(rows).to_have_count(2)
            sources = {}
            for i in range(2):
                cell = rows.nth(i).locator("td").nth(2)
                sources[(await cell.text_content()).split(" ")[0]] = await cell.locator(".unverified").count()
            assert sources == {"Studio": 0, "my": 1}
        finally:
            await browser.close()
