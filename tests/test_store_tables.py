"""The store's other tables (monitors, stream tokens, the webhook outbox), on SQLite and on PostgreSQL.

Every test runs against both backends, as tests/test_plays.py does: an
SQLite file (the embedded default) and a real PostgreSQL server started on
loopback by ``postgres_server`` (parameter marked ``postgres``: run with
``pytest -m postgres tests/test_store_tables.py``). Several workers share
one store, so the races that matter (two adds of one monitor name, two
dispatchers claiming one delivery) are run from several threads, each with
its own store object, as separate processes would.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp import web
from postgres_server import postgres_server, postgres_url  # noqa: F401
from test_web_fixtures import auth_headers, make_client, receive_json, recognizer, settings  # noqa: F401

from audiocopy.config import ServerSettings
from audiocopy.errors import ConfigError
from audiocopy.plays import outbox_rows
from audiocopy.plays.factory import open_store
from audiocopy.plays.monitor_rows import MonitorRows, name_key
from audiocopy.plays.outbox_rows import OutboxError, WebhookOutbox
from audiocopy.plays.token_rows import TokenRow, TokenRows
from audiocopy.web.monitors import MonitorError, MonitorManager
from audiocopy.web.source_tokens import SourceTokens, source_key


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def where(request, tmp_path):
    """Where the store is: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "state" / "plays.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def stores(where):
    """``stores()`` -> a new store object on the same database (one per simulated worker)."""
    opened = []

    def make():
        opened.append(open_store(where))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def run_together(calls):
    """Run the callables at the same moment on their own threads; their results in order."""
    barrier = threading.Barrier(len(calls))

    def go(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


# --- monitors ------------------------------------------------------------------------

def test_monitor_rows_add_list_remove(stores):
    rows = MonitorRows(stores())
    a = rows.add("m1", "Radio One", "http://radio.example/a")
    assert a is not None and a.created_at.endswith("Z")
    assert rows.add("m2", " radio ONE ", "http://radio.example/b") is None  # name taken, compared by name_key
    assert rows.add("m1", "Other", "http://radio.example/c") is None  # id taken
    b = rows.add("m2", "Radio Two", "http://radio.example/b", created_at="2999-01-01T00:00:00.000Z")
    again = MonitorRows(stores())  # another worker sees the same rows, in the same order
    assert again.all() == [a, b] and again.get("m2") == b and again.get("nope") is None
    assert sorted(again.names()) == ["Radio One", "Radio Two"] and again.count() == 2
    assert again.remove("m1") is True and again.remove("m1") is False
    assert [r.id for r in rows.all()] == ["m2"]
    assert rows.add("m3", "radio one", "http://radio.example/a") is not None  # the name is free again
    assert name_key("  Ｒadio  ") != name_key("radio")  # only case and outer spaces fold (as before)


def test_concurrent_adds_of_one_name_give_one_monitor(stores):
    workers = [MonitorRows(stores()) for _ in range(4)]
    got = run_together([lambda r=r, i=i: r.add(f"id{i}", f"Radio {'ONE' if i % 2 else 'one'}", "http://x.example/")
                        for i, r in enumerate(workers)])
    assert sum(g is not None for g in got) == 1
    assert len(workers[0].all()) == 1


def _manager(store, tmp_path, executor, max_monitors=5) -> MonitorManager:
    settings = ServerSettings(db=tmp_path, state_dir=tmp_path / "state", max_monitors=max_monitors)

    async def resolve(host, port):
        return ["93.184.216.34"]

    manager = MonitorManager(settings, batcher=None, recognizer=None, record_play=None, rows=MonitorRows(store),
                             executor=executor, resolve=resolve)
    # Definitions only: the running of a monitor (ffmpeg, the network) is tested in tests/test_web_monitors.py.
    manager._start = lambda monitor: manager.monitors.__setitem__(monitor.id, monitor)
    return manager


@pytest.mark.asyncio
async def test_two_workers_adding_one_name_get_one_monitor_and_one_409(stores, tmp_path):
    with ThreadPoolExecutor(4) as executor:
        one, two = _manager(stores(), tmp_path, executor), _manager(stores(), tmp_path, executor)
        results = await asyncio.gather(one.add("http://radio.example/a", "Radio One"),
                                       two.add("http://radio.example/b", "RADIO ONE"), return_exceptions=True)
        errors = [r for r in results if isinstance(r, MonitorError)]
        assert len(errors) == 1 and errors[0].status == 409 and errors[0].code == "duplicate_monitor_name"
        assert "Radio One" in str(errors[0]) or "RADIO ONE" in str(errors[0])
        assert len(MonitorRows(stores()).all()) == 1
        # Default names are numbered against every worker's monitors, not only this one's.
        first = await one.add("http://radio.example/c", None)
        second = await two.add("http://radio.example/d", None)
        assert (first.name, second.name) == ("radio.example", "radio.example (2)")
        # Removal: any worker may delete the row; an id in neither the store nor memory is a 404.
        await two.remove(first.id)
        assert first.id not in {r.id for r in MonitorRows(stores()).all()}
        with pytest.raises(MonitorError) as err:
            await two.remove("nope")
        assert err.value.status == 404


@pytest.mark.asyncio
async def test_the_monitor_limit_counts_every_workers_monitors(stores, tmp_path):
    with ThreadPoolExecutor(2) as executor:
        one, two = (_manager(stores(), tmp_path, executor, max_monitors=1) for _ in range(2))
        await one.add("http://radio.example/a", "A")
        with pytest.raises(MonitorError) as err:
            await two.add("http://radio.example/b", "B")
        assert err.value.code == "monitor_limit"


def test_legacy_monitors_file_is_imported_once(stores, tmp_path):
    state = tmp_path / "legacy"
    state.mkdir()
    (state / "monitors.json").write_text(json.dumps([
        {"id": "m1", "name": "Radio One", "url": "http://radio.example/1"},
        {"id": "m2", "name": "radio one", "url": "http://radio.example/2"},  # a duplicate old releases allowed
        {"id": "m3", "name": "Kept", "url": "http://radio.example/3"},
        {"id": "m4", "name": "Three", "url": "http://radio.example/4"}]))
    # The file was written by an older release a while ago (its rows take times from its mtime, 1 ms apart:
    # written just now, "m4" could date after the row stored below and the order would depend on the clock).
    old = time.time() - 3600
    os.utime(state / "monitors.json", (old, old))
    rows = MonitorRows(stores())
    rows.add("m3", "Kept", "http://radio.example/already-stored")  # already in the store: kept as it is
    assert rows.import_legacy(state) == 3
    # The file's order is kept (its rows date from the file's time, before the row stored just now).
    assert [(r.id, r.name, r.url) for r in rows.all()] == [
        ("m1", "Radio One", "http://radio.example/1"), ("m2", "radio one (m2)", "http://radio.example/2"),
        ("m4", "Three", "http://radio.example/4"), ("m3", "Kept", "http://radio.example/already-stored")]
    assert not (state / "monitors.json").exists()
    assert json.loads((state / "monitors.json.imported").read_text())[0]["id"] == "m1"  # never deleted
    assert rows.import_legacy(state) == 0 and len(rows.all()) == 4  # a second start imports nothing


@pytest.mark.parametrize("content", ["{not json", '[{"id": "m1"}]', "{}"])
def test_an_unreadable_legacy_monitors_file_is_left_in_place(stores, tmp_path, content):
    (tmp_path / "monitors.json").write_text(content)
    rows = MonitorRows(stores())
    assert rows.import_legacy(tmp_path) == 0 and rows.all() == []
    assert (tmp_path / "monitors.json").read_text() == content



# --- stream tokens -------------------------------------------------------------------

def _token(source: str, digit: str, used: str | None = None) -> TokenRow:
    return TokenRow(source, digit * 64, "2026-01-01T00:00:00Z", used)


def test_token_rows_issue_rotate_revoke_across_workers(stores):
    one, two = TokenRows(stores()), TokenRows(stores())
    one.put("studio a", _token("Studio A", "a"))
    assert two.by_digest("a" * 64).source == "Studio A" and two.by_key("studio a").sha256 == "a" * 64
    two.touch("studio a", "a" * 64, "2026-01-02T00:00:00Z")
    one.touch("studio a", "a" * 64, "2026-01-01T12:00:00Z")  # an older use written later does not go back
    assert one.by_key("studio a").last_used_at == "2026-01-02T00:00:00Z"
    one.put("studio a", _token("STUDIO A", "b"))  # rotation: the old token stops at once, on every worker
    assert two.by_digest("a" * 64) is None and two.by_digest("b" * 64).last_used_at is None
    two.touch("studio a", "a" * 64, "2026-01-03T00:00:00Z")  # a use of the rotated token is dropped
    assert one.by_key("studio a").last_used_at is None
    assert [r.source for r in two.all()] == ["STUDIO A"] and two.check() == 1
    assert one.remove("studio a").sha256 == "b" * 64 and two.remove("studio a") is None
    assert two.by_digest("b" * 64) is None and one.all() == []


def test_a_damaged_token_row_is_refused(stores):
    rows = TokenRows(stores())
    rows.put("x", TokenRow("x", "not-a-digest", "2026-01-01T00:00:00Z"))
    with pytest.raises(ConfigError, match="not a SHA-256"):
        rows.check()


def test_a_token_issued_on_one_worker_works_on_another(stores):
    one, two = SourceTokens.load(TokenRows(stores())), SourceTokens.load(TokenRows(stores()))
    _, token = one.issue("Studio A")
    assert two.verify(token).source == "Studio A" and two.reserved("studio  a") is not None
    one.revoke("Studio A")
    assert two.verify(token) is None and two.reserved("Studio A") is None


def test_legacy_tokens_file_is_imported_once(stores, tmp_path):
    (tmp_path / "source-tokens.json").write_text(json.dumps({"version": 1, "tokens": [
        {"source": "Studio A", "sha256": "a" * 64, "created_at": "2025-01-01T00:00:00Z", "last_used_at": None},
        {"source": "Studio B", "sha256": "b" * 64, "created_at": "2025-01-01T00:00:00Z",
         "last_used_at": "2025-02-01T00:00:00Z"}]}))
    rows = TokenRows(stores())
    rows.put("studio b", _token("Studio B", "c"))  # issued in the store already: kept
    assert rows.import_legacy(tmp_path, source_key) == 1
    assert [(r.source, r.sha256) for r in rows.all()] == [("Studio A", "a" * 64), ("Studio B", "c" * 64)]
    assert (tmp_path / "source-tokens.json.imported").exists() and not (tmp_path / "source-tokens.json").exists()
    assert rows.import_legacy(tmp_path, source_key) == 0


# --- the webhook outbox --------------------------------------------------------------

def test_outbox_rows_life(stores):
    outbox = WebhookOutbox(stores())
    hook = outbox.add_webhook("http://hooks.example/a")
    with pytest.raises(OutboxError, match="configured already"):
        outbox.add_webhook("http://hooks.example/a")
    other = outbox.add_webhook("http://hooks.example/b")
    ids = outbox.enqueue([hook, other], "play.closed", b"\x00{body}", now=100.0)
    assert len(ids) == 2 and outbox.counts() == {"pending": 2, "failed": 0}
    assert outbox.claim(now=99.0, limit=10, claim_s=30) == []  # nothing due yet
    claimed = outbox.claim(now=100.0, limit=10, claim_s=30)
    assert sorted(d.id for d in claimed) == sorted(ids) and claimed[0].body == b"\x00{body}"
    assert outbox.claim(now=129.0, limit=10, claim_s=30) == []  # held by the claim
    assert outbox.next_due_at() == 130.0
    first, second = claimed
    outbox.delivered(first.id)
    outbox.retry_later(second.id, 1, 140.0, "HTTP 500")
    [again] = outbox.claim(now=140.0, limit=10, claim_s=30)
    assert (again.id, again.attempts, again.last_error) == (second.id, 1, "HTTP 500")
    outbox.give_up(second.id, 2, "HTTP 503")
    assert outbox.counts() == {"pending": 0, "failed": 1} and outbox.failures()[0].last_error == "HTTP 503"
    # Removing a webhook drops its pending deliveries, and a play closing afterwards queues none for it.
    outbox.enqueue([hook, other], "play.closed", b"{}", now=200.0)
    assert outbox.remove_webhook(hook.id) is True and outbox.remove_webhook(hook.id) is False
    assert [d.webhook_id for d in outbox.due(now=1e12, limit=10)] == [other.id]
    assert outbox.enqueue([hook], "play.closed", b"{}") == [] and outbox.enqueue([], "play.closed", b"{}") == []
    assert [h.id for h in outbox.webhooks()] == [other.id]


def test_only_the_newest_failures_are_kept(stores, monkeypatch):
    monkeypatch.setattr(outbox_rows, "KEEP_FAILED", 3)
    outbox = WebhookOutbox(stores())
    hook = outbox.add_webhook("http://hooks.example/a")
    for i in range(5):
        [did] = outbox.enqueue([hook], "play.closed", b"{}", now=float(i))
        outbox.give_up(did, 1, f"error {i}")
    assert [d.last_error for d in outbox.failures()] == ["error 4", "error 3", "error 2"]


def test_two_dispatchers_claim_each_delivery_once(stores):
    """Four workers claim from one outbox at once, again and again: every delivery is claimed exactly once."""
    outbox = WebhookOutbox(stores())
    hooks = [outbox.add_webhook(f"http://hooks.example/{i}") for i in range(5)]
    # Enough claims (about 290 per worker's share) that one worker cannot drain them all within one GIL
    # switch interval: with 200 deliveries, the first worker took all of them before the others started.
    queued = [i for n in range(400) for i in outbox.enqueue(hooks, "play.closed", b"{}", now=float(n))]
    workers = [WebhookOutbox(stores()) for _ in range(4)]
    claimed: list[list[str]] = [[] for _ in workers]

    def drain(k: int) -> None:
        while got := workers[k].claim(now=1000.0, limit=7, claim_s=600):
            claimed[k].extend(d.id for d in got)
            # Hand the GIL over after each claim, as a worker doing real deliveries would: on a loaded
            # machine the first thread out of the barrier otherwise drained the outbox alone (seen once, with
            # two test runs sharing 2 cores).
            time.sleep(0.001)

    run_together([lambda k=k: drain(k) for k in range(len(workers))])
    every = [i for ids in claimed for i in ids]
    assert len(queued) == 2000 and sorted(every) == sorted(queued)  # all of them, none twice
    assert sum(bool(ids) for ids in claimed) >= 2  # the claims really ran side by side
    assert outbox.claim(now=1599.0, limit=5000, claim_s=600) == []
    assert len(outbox.claim(now=1600.0, limit=5000, claim_s=600)) == 2000  # a dead worker's claims expire


def test_legacy_outbox_is_imported_once(stores, tmp_path):
    legacy = tmp_path / "webhooks.sqlite"
    _legacy_outbox(legacy, pending=2)
    outbox = WebhookOutbox(stores())
    assert outbox.import_legacy(tmp_path) == (1, 3)
    assert [h.url for h in outbox.webhooks()] == ["http://hooks.example/old"]
    pending = outbox.due(now=1e12, limit=10)
    assert [(d.attempts, d.last_error, d.body) for d in pending] == [(2, "HTTP 500", b'{"n":0}'),
                                                                   (2, "HTTP 500", b'{"n":1}')]
    assert outbox.counts() == {"pending": 2, "failed": 1}
    assert not legacy.exists() and (tmp_path / "webhooks.sqlite.imported").exists()
    assert outbox.import_legacy(tmp_path) == (0, 0)
    (tmp_path / "webhooks.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(OutboxError, match="cannot import"):
        outbox.import_legacy(tmp_path)
    assert (tmp_path / "webhooks.sqlite").exists()  # left in place


def _legacy_outbox(path, pending: int) -> None:
    """A ``webhooks.sqlite`` as older releases wrote it: one receiver, ``pending`` retried rows, one failure."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
        CREATE TABLE deliveries (id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, url TEXT NOT NULL,
            event TEXT NOT NULL, body BLOB NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL, last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);""")
    con.execute("INSERT INTO webhooks VALUES ('h1', 'http://hooks.example/old', 1.0)")
    for n in range(pending):
        con.execute("INSERT INTO deliveries VALUES (?, 'h1', 'http://hooks.example/old', 'play.closed', ?, "
                    "'pending', 2, ?, 'HTTP 500', 1.0, 1.0)", (f"d{n}", f'{{"n":{n}}}'.encode(), 10.0 + n))
    con.execute("INSERT INTO deliveries VALUES ('f1', 'h1', 'http://hooks.example/old', 'play.closed', X'7B7D', "
                "'failed', 5, 1.0, 'HTTP 404', 1.0, 1.0)")
    con.commit()
    con.close()


# --- a server started on an older release's state folder ----------------------------------

@pytest.mark.asyncio
async def test_a_server_imports_an_older_releases_state_folder(where, make_client, settings, aiohttp_server):
    """monitors.json, source-tokens.json and webhooks.sqlite -> the store: same monitors, tokens valid,
    pending deliveries resumed; each file renamed ``.imported``."""
    seen: list = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((request.headers["X-Audiocopy-Delivery"], await request.read()))
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    state = settings.state_path
    state.mkdir(parents=True)
    (state / "monitors.json").write_text(json.dumps([
        {"id": "m1", "name": "Radio One", "url": "http://127.0.0.1:9/radio"},
        {"id": "m2", "name": "Radio Two", "url": "http://127.0.0.1:9/two"}]))
    token = "legacy-token-" + "x" * 30
    (state / "source-tokens.json").write_text(json.dumps({"version": 1, "tokens": [
        {"source": "Studio A", "sha256": hashlib.sha256(token.encode()).hexdigest(),
         "created_at": "2025-01-01T00:00:00Z", "last_used_at": None}]}))
    _legacy_outbox(state / "webhooks.sqlite", pending=1)
    con = sqlite3.connect(state / "webhooks.sqlite")
    con.execute("UPDATE webhooks SET url = ?", (f"http://127.0.0.1:{server.port}/hook",))
    con.execute("UPDATE deliveries SET url = ?", (f"http://127.0.0.1:{server.port}/hook",))
    con.commit()
    con.close()

    store = {} if isinstance(where, Path) else {"store": where}
    client = await make_client(allow_private_monitors=True, **store)
    listed = (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"]
    assert [(m["id"], m["name"]) for m in listed] == [("m1", "Radio One"), ("m2", "Radio Two")]
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000, "format": "s16le", "channels": 1,
                            "source": "anything", "realtime": False, "source_token": token})
        ready = await receive_json(ws)
    assert (ready["type"], ready["source"], ready["source_verified"]) == ("ready", "Studio A", True)
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.05)
    assert seen == [("d0", b'{"n":0}')]  # the pending delivery resumed, with its id and exact bytes
    for name in ("monitors.json", "source-tokens.json", "webhooks.sqlite"):
        assert not (state / name).exists() and (state / f"{name}.imported").exists()
    await client.close()
    # A second start imports nothing again and finds the same state in the store.
    client = await make_client(allow_private_monitors=True, **store)
    listed = (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"]
    assert [m["id"] for m in listed] == ["m1", "m2"]
    tokens = (await (await client.get("/api/sources/tokens", headers=auth_headers())).json())["tokens"]
    assert [t["source"] for t in tokens] == ["Studio A"] and tokens[0]["last_used_at"] is not None
