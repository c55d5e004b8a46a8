"""Outbound URLs of monitors: every answer checked, the connection pinned, redirects and HLS checked.

The attacks are played against real local servers. The app allows exactly
127.0.0.1 (``allow_monitor_networks``, the explicit setting an operator
would use); a second server on 127.0.0.2 stands for the internal service an
attacker wants to reach, and counts every request it gets: each attack must
end with the monitor "refused" and that counter at zero.
"""
from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess

import pytest
import soundfile as sf
from aiohttp import web
from synth import pattern
from test_web_fixtures import auth_headers, loses_the_first_cancel, make_client, recognizer, settings  # noqa: F401

from audiocopy.web.url_fetch import FetchError, GuardedFetcher, is_playlist
from audiocopy.web.url_guard import AddressPolicy, UrlRefused, check_url, redact_url
from audiocopy.web.url_hls import parse_playlist

pytestmark = pytest.mark.asyncio
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
ONLY_127_0_0_1 = ("127.0.0.1/32",)
SECRET = "streamkey-5ecret"


def wav_bytes(seconds: float = 8.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pattern("pulses", seconds, 22050), 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Internal:
    """The server an attacker wants the monitor to reach (on 127.0.0.2): counts every request."""

    def __init__(self):
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request):
        self.hits += 1
        return web.Response(body=wav_bytes(), content_type="audio/wav")


async def serve(aiohttp_server, routes: dict, *, host="127.0.0.1", port=None):
    """An aiohttp server answering ``routes`` {path: handler}; returns the server."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return await aiohttp_server(app, host=host, port=port)


async def wait_for(client, predicate, timeout=20.0) -> dict:
    """Poll /api/monitors (with the token) until ``predicate(first monitor)``; return that monitor."""
    monitor = None
    for _ in range(int(timeout / 0.1)):
        monitors = (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"]
        monitor = monitors[0] if monitors else None
        if monitor is not None and predicate(monitor):
            return monitor
        await asyncio.sleep(0.1)
    raise AssertionError(f"monitor never reached the expected state: {monitor}")


async def add(client, url, name="radio"):
    resp = await client.post("/api/monitors", headers=auth_headers(), json={"url": url, "name": name})
    return resp.status, await resp.json()


# --- the guard itself ---------------------------------------------------------

def stub(table, calls=None):
    async def resolve(host, port):
        if calls is not None:
            calls.append(host)
        answer = table[host]
        return answer(len(calls or [])) if callable(answer) else answer
    return resolve


@pytest.mark.parametrize("addresses", [["93.184.216.34", "10.0.0.1"], ["10.0.0.1", "93.184.216.34"],
                                       ["2606:4700::1111", "::1"], ["93.184.216.34", "169.254.169.254"],
                                       ["64:ff9b::a00:1"], ["2002:a00:1::1"], ["::ffff:169.254.169.254"],
                                       ["100.64.0.1"], ["224.0.0.1"], ["0.0.0.0"], ["240.0.0.1"]])
async def test_every_answer_is_checked_not_only_the_first(addresses):
    with pytest.raises(UrlRefused, match="loopback, private"):
        await check_url("http://radio.example/live", AddressPolicy(), stub({"radio.example": addresses}))


async def test_the_check_returns_every_answer_as_the_pin():
    target = await check_url("https://Radio.Example:8443/x", AddressPolicy(),
                             stub({"radio.example": ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]}))
    assert (target.host, target.port, target.addresses) == ("radio.example", 8443,
                                                            ("93.184.216.34", "2606:4700::1111"))


async def test_allowed_networks_allow_only_themselves():
    policy = AddressPolicy(networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert policy.allows(ipaddress.ip_address("127.0.0.1")) and policy.allows(ipaddress.ip_address("8.8.8.8"))
    for refused in ("127.0.0.2", "::1", "10.0.0.1", "169.254.169.254", "224.0.0.1", "0.0.0.0"):
        assert not policy.allows(ipaddress.ip_address(refused)), refused
    everything = AddressPolicy(allow_private=True)
    assert everything.allows(ipaddress.ip_address("10.0.0.1"))
    assert not everything.allows(ipaddress.ip_address("224.0.0.1"))  # never a stream server
    assert not everything.allows(ipaddress.ip_address("0.0.0.0"))


async def test_redaction_keeps_scheme_and_host_only():
    assert redact_url(f"https://radio.example:8443/live/{SECRET}.mp3?key={SECRET}") == "https://radio.example:8443/…"
    assert redact_url(f"http://[2606:4700::1]/{SECRET}") == "http://[2606:4700::1]/…"


async def test_playlists_are_recognised():
    assert is_playlist("application/vnd.apple.mpegurl", "http://x/a", b"")
    assert is_playlist("audio/mpeg", "http://x/live.m3u8?token=1", b"")
    assert is_playlist("audio/mpeg", "http://x/live", b"\xef\xbb\xbf#EXTM3U\n#EXTINF:")
    assert not is_playlist("audio/mpeg", "http://x/live.mp3", b"ID3\x03")


async def test_hls_parser_resolves_urls_and_refuses_what_it_cannot_check():
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:4,\nseg7.ts\n#EXTINF:4,\n" \
           "http://other.example/seg8.ts\n#EXT-X-ENDLIST\n"
    p = parse_playlist("http://radio.example/hls/live.m3u8", text)
    assert p.segments == ["http://radio.example/hls/seg7.ts", "http://other.example/seg8.ts"]
    assert (p.media_sequence, p.target_duration, p.ended) == (7, 4.0, True)
    master = parse_playlist("http://r.example/m.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=128000\nhi.m3u8\n"
                            "#EXT-X-STREAM-INF:BANDWIDTH=32000\nlo.m3u8\n")
    assert min(master.variants) == (32000, "http://r.example/lo.m3u8")
    with pytest.raises(FetchError, match="encrypted"):
        parse_playlist("http://r/", "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n")
    with pytest.raises(FetchError, match="malformed"):
        parse_playlist("http://r/", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n")


# --- attacks on a running server ----------------------------------------------

@needs_ffmpeg
@pytest.mark.parametrize("target", ["internal", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"])
async def test_a_redirect_to_a_refused_address_is_refused(make_client, aiohttp_server, target):
    internal = Internal()
    inside = await aiohttp_server(internal.app, host="127.0.0.2")
    location = f"http://127.0.0.2:{inside.port}/admin" if target == "internal" else target

    async def redirect(request):
        raise web.HTTPFound(location)

    radio = await serve(aiohttp_server, {"/live": redirect})
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1)
    status, body = await add(client, f"http://127.0.0.1:{radio.port}/live")
    assert status == 201, body  # the first URL itself is fine; the redirect is the attack
    monitor = await wait_for(client, lambda m: m["state"] == "refused")
    assert "only http and https" in monitor["message"] or "private" in monitor["message"]
    assert internal.hits == 0  # never connected there


@needs_ffmpeg
async def test_dns_rebinding_gains_nothing_the_connection_is_pinned(make_client, aiohttp_server):
    """The name answers 127.0.0.1 (allowed) at first, 127.0.0.2 (refused) from the third lookup on.

    The connection must use the address its own check saw: the request reaches
    the allowed server with the name in ``Host``, and a later lookup never
    redirects the open connection. The next connection resolves again, sees
    the refused answer and stops.
    """
    port = free_port()
    internal = Internal()
    await aiohttp_server(internal.app, host="127.0.0.2", port=port)
    seen = []

    async def live(request):
        seen.append((request.host, len(calls)))
        return web.Response(body=wav_bytes(), content_type="audio/wav")

    await serve(aiohttp_server, {"/live": live}, port=port)
    calls: list[str] = []
    rebinding = stub({"radio.test": lambda n: ["127.0.0.1"] if n <= 2 else ["127.0.0.2"]}, calls)
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1, monitor_resolver=rebinding)
    status, body = await add(client, f"http://radio.test:{port}/live")
    assert status == 201, body  # lookup 1: the check when adding
    monitor = await wait_for(client, lambda m: m["state"] == "refused")  # lookup 3: the reconnection
    assert seen == [(f"radio.test:{port}", 2)]  # lookup 2 was the one the connection used, and only it
    assert monitor["windows"] >= 10 and "127.0.0.2" in monitor["message"]
    assert internal.hits == 0


async def test_a_name_with_one_refused_answer_is_refused_when_added(make_client):
    mixed = stub({"radio.test": ["127.0.0.1", "127.0.0.2"]})
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1, monitor_resolver=mixed)
    status, body = await add(client, "http://radio.test/live")
    assert status == 400 and body["error"]["code"] == "url_refused" and "127.0.0.2" in body["error"]["message"]
    assert "127.0.0.1" not in body["error"]["message"]


async def test_the_fetcher_connects_to_nothing_it_has_not_checked():
    """Even asked directly, the client's resolver knows only pinned names (fail closed)."""
    async with GuardedFetcher(AddressPolicy(), resolve=stub({"radio.test": ["10.0.0.1"]})) as fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.open("http://radio.test/")
        with pytest.raises(OSError, match="no checked address"):
            await fetcher.pins.resolve("radio.test", 80)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_https_connects_to_the_pinned_address_with_the_name_in_sni_and_certificate(aiohttp_server, tmp_path):
    """TLS keeps the name (SNI, certificate check) while the TCP connection goes to the checked address."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-subj", "/CN=radio.test", "-addext", "subjectAltName=DNS:radio.test", "-days", "1",
               "-keyout", str(key), "-out", str(cert)]
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, timeout=60)
    server_names = []
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, ctx: server_names.append(name)

    async def live(request):
        return web.Response(body=b"ID3audio", content_type="audio/mpeg")

    app = web.Application()
    app.router.add_get("/live", live)
    server = await aiohttp_server(app, ssl=server_tls)
    client_tls = ssl.create_default_context(cafile=str(cert))
    policy = AddressPolicy(networks=(ipaddress.ip_network("127.0.0.1/32"),))
    async with GuardedFetcher(policy, resolve=stub({"radio.test": ["127.0.0.1"]}), tls=client_tls) as fetcher:
        chunks = [c async for c in fetcher.stream(f"https://radio.test:{server.port}/live")]
    assert chunks == [b"ID3audio"] and server_names == ["radio.test"]
    # The same address under another name fails the certificate check: the name, not the IP, is verified.
    async with GuardedFetcher(policy, resolve=stub({"other.test": ["127.0.0.1"]}), tls=client_tls) as fetcher:
        with pytest.raises(FetchError, match="cannot fetch https://other.test"):
            await fetcher.open(f"https://other.test:{server.port}/live")


def playlist(*segments: str, ended: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    for seg in segments:
        lines += ["#EXTINF:2.0,", seg]
    return "\n".join(lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


@needs_ffmpeg
async def test_hls_is_refused_unless_allowed(make_client, aiohttp_server):
    async def m3u8(request):
        return web.Response(text=playlist("seg0.ts"), content_type="application/vnd.apple.mpegurl")

    radio = await serve(aiohttp_server, {"/live.m3u8": m3u8, "/seg0.ts": m3u8})
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1)
    assert (await add(client, f"http://127.0.0.1:{radio.port}/live.m3u8"))[0] == 201
    monitor = await wait_for(client, lambda m: m["state"] == "refused")
    assert "--allow-hls-monitors" in monitor["message"]


@needs_ffmpeg
@pytest.mark.parametrize("segment", ["internal", "http://169.254.169.254/seg.ts", "file:///etc/passwd"])
async def test_an_hls_segment_at_a_refused_address_is_refused(make_client, aiohttp_server, segment):
    internal = Internal()
    inside = await aiohttp_server(internal.app, host="127.0.0.2")
    url = f"http://127.0.0.2:{inside.port}/seg0.ts" if segment == "internal" else segment

    async def m3u8(request):
        return web.Response(text=playlist(url), content_type="application/vnd.apple.mpegurl")

    radio = await serve(aiohttp_server, {"/live.m3u8": m3u8})
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1, allow_hls_monitors=True)
    assert (await add(client, f"http://127.0.0.1:{radio.port}/live.m3u8"))[0] == 201
    await wait_for(client, lambda m: m["state"] == "refused")
    assert internal.hits == 0


@needs_ffmpeg
async def test_allowed_hls_is_read_segment_by_segment(make_client, aiohttp_server, tmp_path):
    (tmp_path / "in.wav").write_bytes(wav_bytes())
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "in.wav"), "-c:a", "aac", "-b:a", "96k",
               "-f", "hls", "-hls_time", "2", "-hls_list_size", "0", "-hls_segment_filename", str(tmp_path / "seg%d.ts"),
               str(tmp_path / "live.m3u8")]
    await asyncio.to_thread(subprocess.run, command, check=True, timeout=60)
    fetched = []

    async def files(request):
        fetched.append(request.match_info["name"])
        return web.FileResponse(tmp_path / request.match_info["name"])

    radio = await serve(aiohttp_server, {"/hls/{name}": files})
    client = await make_client(allow_monitor_networks=ONLY_127_0_0_1, allow_hls_monitors=True)
    assert (await add(client, f"http://127.0.0.1:{radio.port}/hls/live.m3u8"))[0] == 201
    monitor = await wait_for(client, lambda m: m["plays"] >= 1)
    assert monitor["recent_plays"][0]["track"] == "pulses"
    assert fetched[0] == "live.m3u8" and {"seg0.ts", "seg1.ts", "seg2.ts"} <= set(fetched)


# --- what the API shows, names, states ----------------------------------------

def closed_port_resolver():
    """radio.example -> 127.0.0.1 on a closed port: the monitor connects nowhere (no outside network)."""
    return stub({"radio.example": ["127.0.0.1"]}), free_port()


async def test_urls_are_shown_only_with_the_admin_token(make_client):
    resolver, port = closed_port_resolver()
    client = await make_client(monitor_resolver=resolver, allow_monitor_networks=ONLY_127_0_0_1)
    url = f"https://radio.example:{port}/live/{SECRET}.mp3?key={SECRET}"
    resp = await client.post("/api/monitors", headers=auth_headers(), json={"url": url})
    assert resp.status == 201 and (await resp.json())["monitor"]["url"] == url
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        text = await (await client.get("/api/monitors", headers=headers)).text()
        assert SECRET not in text  # not in the URL, the default name or any message
        assert json.loads(text)["monitors"][0]["url"] == f"https://radio.example:{port}/…"
    shown = (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"][0]
    assert shown["url"] == url and shown["name"] == "radio.example"


async def test_monitor_names_are_unique(make_client):
    resolver, port = closed_port_resolver()
    client = await make_client(monitor_resolver=resolver, allow_monitor_networks=ONLY_127_0_0_1)
    assert (await add(client, f"http://radio.example:{port}/a", "Radio One"))[0] == 201
    for name in ("Radio One", " radio one "):
        status, body = await add(client, f"http://radio.example:{port}/b", name)
        assert status == 409 and body["error"]["code"] == "duplicate_monitor_name", body
    assert (await add(client, f"http://radio.example:{port}/c", None))[1]["monitor"]["name"] == "radio.example"
    assert (await add(client, f"http://radio.example:{port}/d", None))[1]["monitor"]["name"] == "radio.example (2)"
    status, body = await add(client, f"http://radio.example:{port}/e", "x" * 101)
    assert status == 400 and body["error"]["code"] == "bad_monitor_name"


async def test_a_refused_monitor_stays_refused_while_it_waits(make_client, settings):
    """A saved monitor whose URL is now refused shows "refused" (with the reason), not "waiting"."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    (settings.state_path / "monitors.json").write_text(json.dumps(
        [{"id": "m1", "name": "metadata", "url": "http://169.254.169.254/latest/"}]))
    client = await make_client()
    monitor = await wait_for(client, lambda m: m["restarts"] >= 1)
    assert monitor["state"] == "refused" and "169.254.169.254" in monitor["message"]
    assert "trying again" in monitor["message"]


async def stop_the_lease_loop(client) -> None:
    """Stop the app's lease loop (its leases stay): the test feeds ``sync`` and ``start_leased`` itself,
    and a tick of its own could start a monitor the test expects stopped."""
    from audiocopy.web.workers import WORKERS

    await client.server.app[WORKERS].close(release=False)


async def test_a_store_snapshot_older_than_a_new_monitor_does_not_forget_it(make_client):
    """The lease loop reads the store in a thread; a monitor added meanwhile is missing from that snapshot.

    It used to be forgotten until the next heartbeat: GET /api/monitors right after a 201 listed nothing
    (seen once in CI). Only a snapshot read after the monitor was stored may forget it.
    """
    import time

    from audiocopy.web.keys import MONITORS

    resolver, port = closed_port_resolver()
    client = await make_client(monitor_resolver=resolver, allow_monitor_networks=ONLY_127_0_0_1)
    await stop_the_lease_loop(client)
    monitors = client.server.app[MONITORS]
    before = time.monotonic()
    assert (await add(client, f"http://radio.example:{port}/a", "Radio One"))[0] == 201
    mid = next(iter(monitors.monitors))
    assert mid not in monitors.running()  # a running monitor is never forgotten: this is the other case
    monitors.sync([], {}, read_at=before)  # a snapshot that began before the monitor was stored
    assert mid in monitors.monitors
    monitors.sync([], {}, read_at=time.monotonic())  # one that began after: it was removed elsewhere
    assert mid not in monitors.monitors


async def test_a_store_snapshot_older_than_a_removal_does_not_bring_the_monitor_back(make_client):
    """DELETE, then the lease loop's snapshot read before the delete: the monitor stays removed.

    It used to come back (listed again, seen once in CI), and the lease loop
    could claim and start it again from that snapshot.
    """
    import time

    from audiocopy.web.keys import MONITORS

    resolver, port = closed_port_resolver()
    client = await make_client(monitor_resolver=resolver, allow_monitor_networks=ONLY_127_0_0_1)
    await stop_the_lease_loop(client)
    monitors = client.server.app[MONITORS]
    status, body = await add(client, f"http://radio.example:{port}/a", "Radio One")
    assert status == 201
    mid = body["monitor"]["id"]
    stale = [(mid, "Radio One", f"http://radio.example:{port}/a")]
    before = time.monotonic()
    assert (await client.delete(f"/api/monitors/{mid}", headers=auth_headers())).status == 200
    monitors.sync(stale, {}, read_at=before)  # a snapshot that began before the removal
    assert mid not in monitors.monitors
    assert (await (await client.get("/api/monitors", headers=auth_headers())).json())["monitors"] == []
    assert not await monitors.start_leased(mid, lambda record: record)  # a claim from that snapshot
    assert mid not in monitors.running()
    # Removed by another worker: still known here, gone from the store; a stale claim must not start it.
    status, body = await add(client, f"http://radio.example:{port}/b", "Radio Two")
    other = body["monitor"]["id"]
    assert monitors.rows.remove(other) and other in monitors.monitors
    assert not await monitors.start_leased(other, lambda record: record)
    assert other not in monitors.running()


@pytest.mark.parametrize("lost_as", ["timeout", "nothing"])
async def test_a_monitor_stops_even_when_its_connection_loses_the_cancel(make_client, monkeypatch, lost_as):
    """Stopping a monitor cancels its task; the task must end even if the cancel is lost on the way.

    aiohttp's connect timeout can turn a cancel that arrives as the timeout
    fires into ``TimeoutError`` (aio-libs/aiohttp#5979), an ``OSError`` the
    monitor's retry loop catches: the loop went on retrying, and stopping
    the monitor (server shutdown, a lost lease) waited forever. Seen once as
    a test run that hung in the app's clean-up. "timeout": the cancel comes
    back as that error (the retry loop sees the task is being cancelled);
    "nothing": a library swallows it whole, as if the stream had ended (the
    stop cancels again).
    """
    from audiocopy.web import monitors as monitors_module
    from audiocopy.web.keys import MONITORS

    calls: list = []
    monkeypatch.setattr(monitors_module.MonitorManager, "_read_once", loses_the_first_cancel(calls, lost_as))
    resolver, port = closed_port_resolver()
    client = await make_client(monitor_resolver=resolver, allow_monitor_networks=ONLY_127_0_0_1)
    monitors = client.server.app[MONITORS]
    assert (await add(client, f"http://radio.example:{port}/a"))[0] == 201
    mid = next(iter(monitors.monitors))
    for _ in range(200):  # the lease loop starts it
        if calls:
            break
        await asyncio.sleep(0.05)
    assert calls, "the monitor never connected"
    task = monitors.monitors[mid].task
    try:
        await asyncio.wait_for(monitors.stop_leased(mid), timeout=10)
    except TimeoutError:
        pytest.fail("stopping the monitor waited for a task that swallowed its cancel")
    finally:
        task.cancel()  # so that a failure here does not also hang the app's clean-up
    assert task.done() and mid not in monitors.running()
