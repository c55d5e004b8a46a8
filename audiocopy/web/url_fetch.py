"""Outbound HTTP for URL monitors: the server fetches, checks and pins; ffmpeg only decodes a pipe.

Place in the pipeline: ``web.monitors`` asks ``GuardedFetcher.stream`` for a
URL's bytes and writes them to ``ffmpeg -protocol_whitelist pipe -i pipe:0``.

Why the server fetches instead of handing ffmpeg the URL: ffmpeg resolves the
host name again by itself, follows redirects by itself and fetches HLS
segment URLs by itself, so no check made before starting it can hold (DNS
rebinding, a 302 to 169.254.169.254, or a playlist pointing inside all
reach internal addresses). Here every connection is made by aiohttp under
these rules:

* **Resolve once, check every answer, pin.** Before each request the host is
  resolved once (``url_guard.resolve_checked``: every answer must be
  allowed) and the answers are stored in a ``PinnedResolver``, the client's
  only resolver. It answers with those addresses and nothing else (an
  unchecked name fails), so the TCP connection goes to a checked address,
  while the URL, and so the ``Host`` header, TLS SNI and certificate check,
  keep the name.
* **Redirects by hand.** Automatic redirects are off; each ``Location`` is
  parsed, resolved, checked and pinned like the first URL, at most
  ``MAX_REDIRECTS`` times.
* **No proxies from the environment** (``trust_env=False``): ``HTTP_PROXY``
  cannot send the request somewhere else.
* **HLS refused unless allowed.** A playlist (``#EXTM3U``, an HLS content
  type or a ``.m3u8`` path) is refused with a clear error unless the
  operator started the server with ``--allow-hls-monitors``; then
  ``url_hls`` reads the playlists and fetches every segment through this
  same fetcher, so every segment URL is checked and pinned too.
* **ffmpeg cannot open anything.** It reads ``pipe:0`` with
  ``-protocol_whitelist pipe``, so even a demuxer that follows references
  inside the data (HLS, concat) cannot open a file or a network URL.

Errors name the host only (``url_guard.redact_url``): monitor URLs may carry
stream keys and error messages are shown on the Monitors page.
"""
from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from typing import Self
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..errors import AudiocopyError
from .url_guard import AddressPolicy, Resolve, UrlRefused, check_url, redact_url

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
MAX_PLAYLIST_BYTES = 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 15.0  # no data for this long ends the connection (the monitor reconnects)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HLS_CONTENT_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                               "audio/x-mpegurl"})
PLAYLIST_MAGIC = b"#EXTM3U"


class FetchError(AudiocopyError):
    """An outbound fetch failed (network, HTTP status, too many redirects)."""


class PinnedResolver(AbstractResolver):
    """The HTTP client's only resolver: it answers with checked addresses, never asks DNS."""

    def __init__(self) -> None:
        self.pins: dict[str, tuple[str, ...]] = {}

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        addresses = self.pins.get(host.rstrip(".").lower())
        if not addresses:
            raise OSError(f"{host!r} has no checked address")  # fail closed: only checked names connect
        return [ResolveResult(hostname=host, host=ip, port=port,
                              family=socket.AF_INET6 if ":" in ip else socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV) for ip in addresses]

    async def close(self) -> None:
        return None


def ffmpeg_pipe_command(sample_rate: int) -> list[str]:
    """ffmpeg decoding whatever arrives on stdin to mono s16le at ``sample_rate`` on stdout."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-protocol_whitelist", "pipe",  # the input is our pipe; nothing inside it may open more
            "-i", "pipe:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "pipe:1"]


def is_playlist(content_type: str, url: str, first_bytes: bytes) -> bool:
    """Whether a response is an M3U/HLS playlist rather than audio."""
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    return (content_type.lower() in HLS_CONTENT_TYPES or path.endswith((".m3u8", ".m3u"))
            or first_bytes.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(PLAYLIST_MAGIC))


class GuardedFetcher:
    """One client session whose every connection goes to a checked, pinned address.

    policy: which addresses may be reached; allow_hls: read HLS playlists.
    resolve: the DNS lookup behind the check (tests inject a stub).
    tls: certificate verification for https (default: the system's trusted
    authorities; tests pass a context trusting their own certificate).
    Use as ``async with GuardedFetcher(...) as f:``.
    """

    def __init__(self, policy: AddressPolicy, *, allow_hls: bool = False, resolve: Resolve | None = None,
                 tls: ssl.SSLContext | None = None):
        self.policy = policy
        self._tls = tls
        self.allow_hls = allow_hls
        self._resolve = resolve
        self.pins = PinnedResolver()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(resolver=self.pins, use_dns_cache=False, limit=4,
                                         ssl=self._tls if self._tls is not None else True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                              headers={"User-Agent": "audiocopy-monitor", "Icy-MetaData": "0"})
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, url: str) -> aiohttp.ClientResponse:
        """GET ``url``, following up to ``MAX_REDIRECTS`` redirects, each checked and pinned.

        Returns the final 2xx response (the caller reads and releases it).
        Raises ``UrlRefused`` (a refused hop) or ``FetchError``.
        """
        assert self._session is not None, "use GuardedFetcher as an async context manager"
        for _ in range(MAX_REDIRECTS + 1):
            target = await check_url(url, self.policy, self._resolve)
            self.pins.pins[target.host] = target.addresses
            try:
                response = await self._session.get(target.url, allow_redirects=False)
            except (aiohttp.ClientError, OSError) as exc:
                raise FetchError(f"cannot fetch {redact_url(url)}: {type(exc).__name__}") from None
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location", "")
                response.release()
                if not location:
                    raise FetchError(f"{redact_url(url)} answered {response.status} without a Location")
                url = urljoin(target.url, location)
                continue
            if response.status >= 400 or response.status < 200:
                response.release()
                raise FetchError(f"{redact_url(url)} answered HTTP {response.status}")
            return response
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")

    async def read_text(self, url: str, max_bytes: int) -> tuple[str, str]:
        """A small text resource (a playlist): (final URL, text). ``FetchError`` beyond ``max_bytes``."""
        response = await self.open(url)
        try:
            body = await _read_limited(response, max_bytes)
        finally:
            response.release()
        return str(response.url), body.decode("utf-8", "replace")

    async def stream(self, url: str) -> AsyncIterator[bytes]:
        """The audio bytes behind ``url`` as they arrive (a playlist is read segment by segment).

        Everything is checked before the first chunk is yielded, so a caller
        that awaits the first chunk learns of a refusal before starting ffmpeg.
        """
        response = await self.open(url)
        try:
            first = await _read_chunk(response)
            if is_playlist(response.headers.get("Content-Type", "").split(";")[0].strip(), str(response.url),
                           first):
                if not self.allow_hls:
                    raise UrlRefused("the URL serves an HLS/M3U playlist; HLS monitors are off (the server "
                                     "checks every segment URL only when started with --allow-hls-monitors)")
                from .url_hls import hls_stream

                text = first + await _read_limited(response, MAX_PLAYLIST_BYTES)
                response.release()
                async for chunk in hls_stream(self, str(response.url), text.decode("utf-8", "replace")):
                    yield chunk
                return
            while first:
                yield first
                first = await _read_chunk(response)
        finally:
            response.release()


async def _read_chunk(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.content.read(CHUNK_BYTES)  # up to CHUNK_BYTES, as soon as any arrive
    except (aiohttp.ClientError, OSError) as exc:
        raise FetchError(f"reading {redact_url(str(response.url))} failed: {type(exc).__name__}") from None


async def _read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    chunks, total = [], 0
    while chunk := await _read_chunk(response):
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"{redact_url(str(response.url))}: a playlist larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
