"""URL monitors: SSRF checks, and a real ffmpeg reader on a local HTTP stream producing plays.

The end-to-end test serves a catalogue track from an aiohttp server on
127.0.0.1, which the monitor may only reach because the test allows private
addresses explicitly, exactly as an operator would have to.
"""
from __future__ import annotations

import asyncio
import shutil

import pytest
from test_web_fixtures import auth_headers, make_client, pulses_radio, recognizer, settings  # noqa: F401

from audiocopy.plays.monitor_rows import MonitorRows
from audiocopy.plays.store import PlaysLog
from audiocopy.web.security import origin_allowed
from audiocopy.web.url_guard import AddressPolicy, UrlRefused, check_url

pytestmark = pytest.mark.asyncio


def fake_resolver(table):
    async def resolve(host, port):
        if host not in table:
            raise OSError("no such host")
        return table[host]
    return resolve


RESOLVE = fake_resolver({"radio.example": ["93.184.216.34"], "intranet.example": ["10.1.2.3"],
                         "mixed.example": ["93.184.216.34", "127.0.0.1"], "v6.example": ["2606:4700::1111"],
                         "mapped.example": ["::ffff:127.0.0.1"], "localhost": ["127.0.0.1", "::1"]})


@pytest.mark.parametrize("url", ["http://radio.example/live.mp3", "https://radio.example:8443/x.aac?q=1",
                                 "http://93.184.216.34/stream", "https://v6.example/s"])
async def test_public_urls_pass(url):
    assert (await check_url(url, AddressPolicy(), RESOLVE)).url == url


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://radio.example/x", "only http and https"),
    ("gopher://radio.example/", "only http and https"),
    ("radio.example/live.mp3", "only http and https"),
    ("http://127.0.0.1:8080/", "loopback, private"),
    ("http://localhost/admin", "loopback, private"),
    ("http://[::1]/", "loopback, private"),
    ("http://169.254.169.254/latest/meta-data/", "loopback, private"),
    ("http://10.0.0.8/", "loopback, private"),
    ("http://192.168.1.1/", "loopback, private"),
    ("http://intranet.example/", "loopback, private"),
    ("http://mixed.example/", "loopback, private"),  # one private address is enough to refuse
    ("http://mapped.example/", "loopback, private"),
    ("http://0.0.0.0/", "loopback, private"),
    ("http://user:pw@radio.example/", "credentials"),
    ("http://unknown.example/", "cannot resolve"),
    ("http://radio.example:99999/", "invalid port"),
    ("http:///nohost", "no host"),
    ("http://radio.example/a b", "spaces"),
    ("", "non-empty"),
])
async def test_refused_urls(url, reason):
    with pytest.raises(UrlRefused, match=reason):
        await check_url(url, AddressPolicy(), RESOLVE)


async def test_private_allowed_only_when_configured():
    assert (await check_url("http://127.0.0.1:9/x", AddressPolicy(allow_private=True), RESOLVE)).addresses == (
        "127.0.0.1",)
    with pytest.raises(UrlRefused):
        await check_url("file:///etc/passwd", AddressPolicy(allow_private=True), RESOLVE)


async def test_origin_rules():
    assert origin_allowed(None, "127.0.0.1:8080", ())  # non-browser client
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", ())
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080", ())
    assert not origin_allowed("https://evil.example", "127.0.0.1:8080", ())
    assert not origin_allowed("null", "127.0.0.1:8080", ())
    assert origin_allowed("https://app.example", "x:1", ("https://app.example",))
    assert origin_allowed("https://any.example", "x:1", ("*",))


async def test_api_refuses_private_urls_by_default(make_client):
    client = await make_client(monitor_resolver=RESOLVE)
    for url in ("http://127.0.0.1:1/x", "file:///etc/passwd", "http://169.254.169.254/"):
        resp = await client.post("/api/monitors", headers=auth_headers(), json={"url": url, "name": "x"})
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "url_refused"
    resp = await client.post("/api/monitors", headers=auth_headers(), data=b"not json")
    assert resp.status == 400
    assert (await (await client.get("/api/monitors")).json())["monitors"] == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
async def test_monitor_reads_a_stream_logs_plays_and_persists(make_client, aiohttp_server, settings):
    url = await pulses_radio(aiohttp_server)

    client = await make_client(allow_private_monitors=True, max_monitors=1)
    resp = await client.post("/api/monitors", headers=auth_headers(), json={"url": url, "name": "test radio"})
    assert resp.status == 201, await resp.text()
    monitor = (await resp.json())["monitor"]
    resp = await client.post("/api/monitors", headers=auth_headers(), json={"url": url})
    assert resp.status == 409  # --max-monitors 1
    plays = []
    for _ in range(300):
        plays = (await (await client.get("/api/plays?source=test radio&status=closed")).json())["plays"]
        if plays:
            break
        await asyncio.sleep(0.1)
    assert plays and plays[0]["track"] == "pulses" and plays[0]["end_s"] == 8.0
    listed = (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"]
    assert listed[0]["name"] == "test radio" and listed[0]["windows"] >= 12 and listed[0]["plays"] >= 1
    assert listed[0]["url"] == url
    stored = MonitorRows(PlaysLog(settings.state_path / "plays.sqlite")).all()
    assert [(r.id, r.name, r.url) for r in stored] == [(monitor["id"], "test radio", url)]
    assert not (settings.state_path / "monitors.json").exists()  # the store holds it, no file of its own
    await client.close()

    # A restart brings the monitor back from the store; removing it needs the token.
    client = await make_client(allow_private_monitors=True)
    listed = (await (await client.get("/api/monitors")).json())["monitors"]
    assert [m["id"] for m in listed] == [monitor["id"]]
    assert (await client.delete(f"/api/monitors/{monitor['id']}")).status == 401
    assert (await client.delete(f"/api/monitors/{monitor['id']}", headers=auth_headers())).status == 200
    assert (await (await client.get("/api/monitors")).json())["monitors"] == []
    assert (await client.delete("/api/monitors/nope", headers=auth_headers())).status == 404
