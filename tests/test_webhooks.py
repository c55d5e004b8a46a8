"""Webhooks: signed POSTs of closed plays, retried from an outbox that survives a restart.

Receivers are aiohttp servers on 127.0.0.1, which the dispatcher may reach
only because each test allows private addresses explicitly
(``allow_private_monitors``), exactly as an operator would have to. Back-off
is a few tens of milliseconds, so retries take no time.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from prometheus_client.parser import text_string_to_metric_families
from synth import pattern
from test_web_fixtures import (  # noqa: F401
    CLIENT_RATE,
    auth_headers,
    loses_the_first_cancel,
    make_client,
    recognizer,
    s16le,
    settings,
    start_stream,
    stream_pcm,
)

from audiocopy.config import ServerSettings
from audiocopy.decision.play import Play
from audiocopy.errors import ConfigError
from audiocopy.plays.outbox_rows import WebhookOutbox
from audiocopy.plays.record import PlayOrigin, PlayRecord
from audiocopy.plays.store import PlaysLog
from audiocopy.web.settings import settings_from_args
from audiocopy.web.webhooks import KEY_FILE, WEBHOOKS, WebhookDispatcher, load_or_create_key, play_body, sign, verify

pytestmark = pytest.mark.asyncio

KEY = "ab" * 32


def closed_play(track: str = "pulses") -> PlayRecord:
    play = Play(track=track, source="station", start_s=1.0, end_s=21.0, confidence=0.8, peak_score=2.0, windows=39,
                started_at="2026-01-01T00:00:01.000Z", ended_at="2026-01-01T00:00:21.000Z", key="k1",
                time_scale=1.0, alteration="none")
    return PlayRecord.of(play, PlayOrigin("monitor", monitor_id="m1"))


def fast_settings(tmp_path, **overrides) -> ServerSettings:
    values = {"db": tmp_path / "db", "state_dir": tmp_path / "state", "allow_private_monitors": True,
              "webhook_backoff_s": 0.05, "webhook_max_backoff_s": 0.2, "webhook_timeout_s": 2.0}
    values.update(overrides)
    return ServerSettings(**values)


def receiver(statuses: list[int], seen: list):
    """An aiohttp app answering POST /hook with ``statuses`` in turn (then 200); every request is kept."""
    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        status = statuses.pop(0) if statuses else 200
        if status in (301, 302):
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        return web.Response(status=status)

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(("elsewhere", b""))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/elsewhere", elsewhere)
    return app


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True)


def outbox_for(options: ServerSettings) -> WebhookOutbox:
    """The outbox in the server's default store (``STATE/plays.sqlite``); a new object, as a new process has."""
    return WebhookOutbox(PlaysLog(options.state_path / "plays.sqlite"))


async def dispatcher_for(options: ServerSettings, executor, key: str = KEY) -> WebhookDispatcher:
    d = WebhookDispatcher(options, outbox_for(options), key, executor)
    await d.start()
    return d


# --- signature -----------------------------------------------------------------------

def documented_recipe(key: str, timestamp: str, body: bytes) -> str:
    """What docs/protocol.md tells a receiver to compute, written out independently of ``sign``."""
    return "sha256=" + hmac.new(key.encode("ascii"), timestamp.encode("ascii") + b"." + body,
                                hashlib.sha256).hexdigest()


async def test_signature_follows_the_documented_recipe_and_rejects_tampering():
    body = play_body(closed_play())
    now = 1_800_000_000
    signature = sign(KEY, now, body)
    assert signature == documented_recipe(KEY, str(now), body)
    assert verify(KEY, str(now), signature, body, now=now + 10)
    assert not verify(KEY, str(now), signature, body + b" ", now=now)  # body changed
    assert not verify("cd" * 32, str(now), signature, body, now=now)  # another key
    assert not verify(KEY, str(now + 1), signature, body, now=now)  # timestamp changed: it is signed
    assert not verify(KEY, str(now), signature, body, now=now + 301)  # replayed too late
    assert not verify(KEY, None, signature, body, now=now)
    assert not verify(KEY, "12a", signature, body, now=now)
    assert not verify(KEY, str(now), None, body, now=now)
    # The body is the ``play`` message with the store's source fields.
    parsed = json.loads(body)
    assert parsed["type"] == "play" and parsed["track"] == "pulses" and parsed["source_kind"] == "monitor"
    assert "id" not in parsed and "open" not in parsed


async def test_signing_key_is_generated_private_kept_and_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = load_or_create_key(tmp_path)
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key  # kept across restarts
    assert all(key not in r.getMessage() for r in caplog.records)
    (tmp_path / KEY_FILE).write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a hex key"):
        load_or_create_key(tmp_path)


# --- delivery ------------------------------------------------------------------------

async def test_workers_starting_together_share_one_signing_key(tmp_path, monkeypatch):
    """Another worker on the same state folder writes the key between this one's check and its write: the
    first key is kept and read, never an error (two workers starting at once failed with FileExistsError)."""
    theirs = "cd" * 32
    real_exists = Path.exists

    def exists_but_another_worker_is_faster(self):
        if self.name == KEY_FILE and not real_exists(self):
            self.write_text(theirs + "\n")  # the other worker's key lands after this one looked
            return False
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", exists_but_another_worker_is_faster)
    assert load_or_create_key(tmp_path) == theirs
    monkeypatch.undo()
    assert load_or_create_key(tmp_path) == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]  # no temporary file left behind


async def test_failing_receiver_is_retried_with_backoff_and_finally_delivered(aiohttp_server, tmp_path, executor):
    seen: list = []
    server = await aiohttp_server(receiver([500, 503], seen))
    d = await dispatcher_for(fast_settings(tmp_path), executor)
    try:
        await d.add(f"http://127.0.0.1:{server.port}/hook")
        d.on_record(closed_play())
        d.on_record(replace(closed_play(), status="open"))  # an open play is not sent
        await wait_for(lambda: d.stats.delivered == 1)
    finally:
        await d.close()
    assert len(seen) == 3 and d.stats.failed_attempts == 2 and d.stats.given_up == 0
    bodies = {body for _, body in seen}
    assert bodies == {play_body(closed_play())}  # the same bytes every time
    assert len({h["X-Audiocopy-Delivery"] for h, _ in seen}) == 1  # one delivery id: receivers can dedupe
    for headers, body in seen:
        assert headers["X-Audiocopy-Event"] == "play.closed"
        assert headers["X-Audiocopy-Signature"] == documented_recipe(KEY, headers["X-Audiocopy-Timestamp"], body)
        assert verify(KEY, headers["X-Audiocopy-Timestamp"], headers["X-Audiocopy-Signature"], body)
    assert d.outbox.counts() == {"pending": 0, "failed": 0}  # delivered rows are deleted


async def test_backoff_doubles_and_is_capped(tmp_path, executor):
    d = WebhookDispatcher(fast_settings(tmp_path, webhook_backoff_s=1.0, webhook_max_backoff_s=5.0),
                          WebhookOutbox(PlaysLog(tmp_path / "o.sqlite")), KEY, executor)
    assert [d.backoff_s(n) for n in (1, 2, 3, 4, 5, 9)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


async def test_outbox_survives_a_restart(aiohttp_server, tmp_path, executor):
    port = unused_port()  # nothing listens here yet: the first server's attempts are refused
    options = fast_settings(tmp_path, webhook_backoff_s=0.05, webhook_max_backoff_s=0.05)
    first = await dispatcher_for(options, executor)
    try:
        await first.add(f"http://127.0.0.1:{port}/hook")
        first.on_record(closed_play("chirps"))
        await wait_for(lambda: first.stats.failed_attempts >= 2)
    finally:
        await first.close()
    pending = outbox_for(options).due(now=1e12, limit=10)
    assert len(pending) == 1 and pending[0].attempts >= 2 and "cannot connect" in pending[0].last_error

    seen: list = []
    await aiohttp_server(receiver([], seen), port=port)
    second = await dispatcher_for(options, executor)  # a new process: the same store, nothing in memory
    try:
        assert second.stats.pending == 1 and [h.url for h in second.webhooks] == [f"http://127.0.0.1:{port}/hook"]
        await wait_for(lambda: second.stats.delivered == 1)
    finally:
        await second.close()
    assert [body for _, body in seen] == [play_body(closed_play("chirps"))]
    assert seen[0][0]["X-Audiocopy-Delivery"] == pending[0].id
    assert second.outbox.counts() == {"pending": 0, "failed": 0}


async def test_gives_up_after_the_last_attempt_and_counts_it(aiohttp_server, tmp_path, executor):
    seen: list = []
    server = await aiohttp_server(receiver([500] * 10, seen))
    d = await dispatcher_for(fast_settings(tmp_path, webhook_max_attempts=3), executor)
    try:
        await d.add(f"http://127.0.0.1:{server.port}/hook")
        d.on_record(closed_play())
        await wait_for(lambda: d.stats.given_up == 1)
        await asyncio.sleep(0.3)  # no further attempt after giving up
    finally:
        await d.close()
    assert len(seen) == 3 and d.stats.failed_attempts == 3 and d.stats.delivered == 0
    assert d.outbox.counts() == {"pending": 0, "failed": 1}
    [failed] = d.outbox.failures()
    assert failed.attempts == 3 and failed.last_error == "HTTP 500"


async def test_redirects_are_not_followed(aiohttp_server, tmp_path, executor):
    seen: list = []
    server = await aiohttp_server(receiver([302], seen))
    d = await dispatcher_for(fast_settings(tmp_path, webhook_max_attempts=1), executor)
    try:
        await d.add(f"http://127.0.0.1:{server.port}/hook")
        d.on_record(closed_play())
        await wait_for(lambda: d.stats.given_up == 1)
    finally:
        await d.close()
    assert len(seen) == 1 and seen[0][0] != "elsewhere"  # the Location was never fetched
    assert d.outbox.failures()[0].last_error == "HTTP 302"


async def test_removing_a_webhook_drops_its_pending_deliveries(tmp_path, executor):
    port = unused_port()
    d = await dispatcher_for(fast_settings(tmp_path, webhook_backoff_s=60.0), executor)
    try:
        hook = await d.add(f"http://127.0.0.1:{port}/hook")
        d.on_record(closed_play())
        await wait_for(lambda: d.stats.failed_attempts == 1)
        assert d.outbox.counts()["pending"] == 1
        await d.remove(hook.id)
    finally:
        await d.close()
    assert d.outbox.counts() == {"pending": 0, "failed": 0} and d.webhooks == []
    assert d.outbox.enqueue([hook], "play.closed", b"{}") == []  # a play closing just after the removal
    assert d.outbox.counts() == {"pending": 0, "failed": 0}


async def test_delivery_connects_only_to_the_checked_address(aiohttp_server, tmp_path, executor):
    """The host name is resolved by the guard and pinned; the system resolver never sees it."""
    seen: list = []
    server = await aiohttp_server(receiver([], seen))

    async def resolve(host, port):
        assert host == "hooks.example"
        return ["127.0.0.1"]

    options = fast_settings(tmp_path)
    outbox = outbox_for(options)
    d = WebhookDispatcher(options, outbox, KEY, executor, resolve=resolve)
    await d.start()
    try:
        await d.add(f"http://hooks.example:{server.port}/hook")
        d.on_record(closed_play())
        await wait_for(lambda: d.stats.delivered == 1)
    finally:
        await d.close()
    assert seen[0][0]["Host"] == f"hooks.example:{server.port}"


async def test_a_name_that_turns_private_after_configuration_is_refused_at_delivery(tmp_path, executor):
    """DNS rebinding: the URL is checked again before every attempt, and a private answer is never reached."""
    answers = iter([["93.184.216.34"]])

    async def resolve(host, port):
        return next(answers, ["127.0.0.1"])  # public when configured, loopback afterwards

    options = fast_settings(tmp_path, allow_private_monitors=False, webhook_max_attempts=1)
    outbox = outbox_for(options)
    d = WebhookDispatcher(options, outbox, KEY, executor, resolve=resolve)
    await d.start()
    try:
        await d.add("http://rebind.example/hook")
        d.on_record(closed_play())
        await wait_for(lambda: d.stats.given_up == 1)
    finally:
        await d.close()
    [failed] = d.outbox.failures()
    assert failed.last_error.startswith("refused:") and "127.0.0.1" in failed.last_error


# --- admin API -----------------------------------------------------------------------

@pytest.mark.parametrize("option, value, reason", [
    ("webhook_max_attempts", "0", "between 1 and 100"), ("webhook_backoff_s", "soon", "must be a number"),
    ("webhook_max_backoff_s", "-1", "between"), ("webhook_timeout_s", "0", "between"),
    ("max_webhooks", "101", "between 0 and 100")])
async def test_bad_webhook_settings_are_refused_with_the_option_named(tmp_path, option, value, reason):
    with pytest.raises(ConfigError, match=f"--{option.replace('_', '-')}: invalid value.*{reason}"):
        settings_from_args({"db": str(tmp_path), option: value}, environ={}, check_db=False)



async def test_private_urls_are_refused_when_configured_unless_allowed(make_client):
    client = await make_client()
    assert (await client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/hook"})).status == 401
    for url, reason in [("http://127.0.0.1:9/hook", "--allow-private-monitors"),
                        ("http://10.0.0.8/hook", "loopback, private"), ("http://169.254.169.254/", "loopback"),
                        ("file:///etc/passwd", "only http and https"), ("http://u:p@93.184.216.34/", "credentials")]:
        resp = await client.post("/api/webhooks", json={"url": url}, headers=auth_headers())
        body = await resp.json()
        assert resp.status == 400 and body["error"]["code"] == "url_refused", body
        assert reason in body["error"]["message"]
    listing = await (await client.get("/api/webhooks", headers=auth_headers())).json()
    assert listing["webhooks"] == []
    assert (await client.get("/api/webhooks")).status == 401  # the listing holds the signing key


async def test_admin_api_adds_lists_and_removes(make_client):
    client = await make_client(allow_private_monitors=True, max_webhooks=2)
    url = "http://127.0.0.1:9/hook"
    resp = await client.post("/api/webhooks", json={"url": url}, headers=auth_headers())
    assert resp.status == 201
    hook = (await resp.json())["webhook"]
    same = await client.post("/api/webhooks", json={"url": url}, headers=auth_headers())
    assert same.status == 409 and (await same.json())["error"]["code"] == "duplicate_webhook"
    other = await client.post("/api/webhooks", json={"url": "http://127.0.0.1:10/x"}, headers=auth_headers())
    assert other.status == 201
    third = await client.post("/api/webhooks", json={"url": "http://127.0.0.1:11/x"}, headers=auth_headers())
    assert third.status == 409 and (await third.json())["error"]["code"] == "too_many_webhooks"
    assert (await client.delete(f"/api/webhooks/{(await other.json())['webhook']['id']}",
                                headers=auth_headers())).status == 200
    listing = await (await client.get("/api/webhooks", headers=auth_headers())).json()
    assert [h["url"] for h in listing["webhooks"]] == [url]
    assert len(listing["signing_key"]) == 64 and listing["outbox"] == {"pending": 0, "failed": 0}
    for bad_body in ("nope", "[]", '{"url": 5}'):
        bad = await client.post("/api/webhooks", data=bad_body, headers=auth_headers())
        assert bad.status == 400, bad_body
    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=auth_headers())).status == 200
    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=auth_headers())).status == 404


async def test_a_streamed_play_reaches_the_receiver_signed(make_client, aiohttp_server):
    seen: list = []
    server = await aiohttp_server(receiver([500], seen))
    client = await make_client(allow_private_monitors=True, webhook_backoff_s=0.05)
    resp = await client.post("/api/webhooks", json={"url": f"http://127.0.0.1:{server.port}/hook"},
                             headers=auth_headers())
    assert resp.status == 201
    key = (await (await client.get("/api/webhooks", headers=auth_headers())).json())["signing_key"]
    signal = np.concatenate([np.zeros(3 * CLIENT_RATE, dtype=np.float32), pattern("pulses", 6, CLIENT_RATE)])
    async with client.ws_connect("/ws") as ws:
        await start_stream(ws, source="studio-1")
        messages = await stream_pcm(ws, s16le(signal))
    [ws_play] = [m for m in messages if m["type"] == "play"]
    await wait_for(lambda: len(seen) == 2)  # a 500, then the retry
    headers, body = seen[-1]
    assert verify(key, headers["X-Audiocopy-Timestamp"], headers["X-Audiocopy-Signature"], body)
    sent = json.loads(body)
    assert {k: sent[k] for k in ws_play} == ws_play  # the play message, plus the store's source fields
    assert sent["source_kind"] == "ws" and sent["status"] == "closed"
    await wait_for(lambda: client.server.app[WEBHOOKS].stats.delivered == 1)
    text = await (await client.get("/metrics")).text()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("audiocopy_webhook_failures_total", ())] == 1
    assert values[("audiocopy_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
    assert values[("audiocopy_webhook_deliveries_total", (("outcome", "given_up"),))] == 0
    assert values[("audiocopy_webhook_outbox_pending", ())] == 0 and values[("audiocopy_webhooks", ())] == 1


async def test_a_play_recovered_after_a_crash_reaches_the_receiver(make_client, aiohttp_server, settings):
    """A play left open by a server that died is closed as "recovered" at the next start, and that is a play that
    ended: the receiver hears of it, marked so (before, only plays closed by a running stream were sent)."""
    seen: list = []
    server = await aiohttp_server(receiver([], seen))
    store = PlaysLog(settings.state_path / "plays.sqlite")
    WebhookOutbox(store).add_webhook(f"http://127.0.0.1:{server.port}/hook")
    left_open = replace(closed_play("chirps"), status="open", open=True, key="died-mid-song")
    store.write(left_open)  # written by a server that was then killed: no worker id, still open
    client = await make_client(allow_private_monitors=True, webhook_backoff_s=0.05)
    await wait_for(lambda: len(seen) == 1)
    sent = json.loads(seen[0][1])
    assert (sent["key"], sent["track"], sent["status"]) == ("died-mid-song", "chirps", "recovered")
    assert store.query(status="recovered")[0].key == "died-mid-song"
    await wait_for(lambda: client.server.app[WEBHOOKS].stats.delivered == 1)
    assert len(seen) == 1  # once, not again on the next tick of the lease loop


@pytest.mark.parametrize("lost_as", ["timeout", "nothing"])
async def test_close_ends_the_dispatcher_even_when_a_delivery_loses_the_cancel(tmp_path, executor, monkeypatch,
                                                                               lost_as):
    """A delivery that turns the stop's cancel into a timeout (aio-libs/aiohttp#5979), or swallows it whole,
    must not keep the server's shutdown waiting (``web.stopping``)."""
    posts: list = []
    monkeypatch.setattr(WebhookDispatcher, "_post", loses_the_first_cancel(posts, lost_as))
    d = await dispatcher_for(fast_settings(tmp_path), executor)
    await d.add(f"http://127.0.0.1:{unused_port()}/hook")
    d.on_record(closed_play())
    await wait_for(lambda: posts)
    task = d._task
    try:
        await asyncio.wait_for(d.close(), timeout=10)
    except TimeoutError:
        pytest.fail("close() waited for a dispatcher that lost its cancel")
    finally:
        task.cancel()
    assert task.done()
