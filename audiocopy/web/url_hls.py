"""HLS for URL monitors, read by the server so that every playlist and segment URL is checked.

Place in the pipeline: ``url_fetch.GuardedFetcher.stream`` calls
``hls_stream`` when a monitor URL serves a playlist and the operator allowed
HLS (``--allow-hls-monitors``). The segments' bytes are concatenated onto
ffmpeg's stdin, which is how HLS itself is designed to be played: MPEG-TS,
ADTS/AAC and MP3 segments are streams that continue across segment
boundaries, and fragmented MP4 continues after its ``EXT-X-MAP`` init
section.

Every playlist reload and every segment goes through ``GuardedFetcher.open``
(resolved once, every answer checked, pinned; every redirect checked), so
a playlist that points at 169.254.169.254 or the LAN is refused exactly like
a monitor URL that does. What is not supported is refused with a clear
error rather than passed to ffmpeg: encrypted segments (``EXT-X-KEY``),
byte ranges and nested master playlists.

A master playlist picks its audio rendition (``EXT-X-MEDIA TYPE=AUDIO``,
the default one first) or else the variant with the lowest bandwidth: the
recognizer needs 16 kHz mono, never the best quality. A live playlist is
joined ``LIVE_EDGE_SEGMENTS`` from its end, as players do, and reloaded every
half target duration.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:  # pragma: no cover
    from .url_fetch import GuardedFetcher

from .url_fetch import CHUNK_BYTES, MAX_PLAYLIST_BYTES, FetchError

MAX_SEGMENT_BYTES = 32 * 1024 * 1024
LIVE_EDGE_SEGMENTS = 3
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass
class Playlist:
    """What a playlist says, URLs already made absolute."""

    variants: list[tuple[int, str]] = field(default_factory=list)  # (bandwidth, url) of a master playlist
    audio: list[tuple[bool, str]] = field(default_factory=list)  # (is default, url) audio renditions
    segments: list[str] = field(default_factory=list)
    media_sequence: int = 0
    target_duration: float = 6.0
    ended: bool = False
    init: str | None = None


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


def parse_playlist(base_url: str, text: str) -> Playlist:
    """Parse an M3U8 playlist; ``FetchError`` for what this reader refuses to handle or cannot read."""
    try:
        return _parse(base_url, text)
    except ValueError as exc:
        raise FetchError(f"malformed HLS playlist ({exc})") from None


def _parse(base_url: str, text: str) -> Playlist:
    out, pending_variant = Playlist(), None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-STREAM-INF":
            pending_variant = int(_attrs(value).get("BANDWIDTH", "0") or 0)
        elif tag == "#EXT-X-MEDIA" and _attrs(value).get("TYPE") == "AUDIO" and "URI" in _attrs(value):
            a = _attrs(value)
            out.audio.append((a.get("DEFAULT") == "YES", urljoin(base_url, a["URI"])))
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            out.media_sequence = int(value or 0)
        elif tag == "#EXT-X-TARGETDURATION":
            out.target_duration = max(1.0, float(value or 6))
        elif tag == "#EXT-X-ENDLIST":
            out.ended = True
        elif tag == "#EXT-X-MAP":
            out.init = urljoin(base_url, _attrs(value).get("URI", ""))
        elif tag == "#EXT-X-KEY" and _attrs(value).get("METHOD", "NONE") != "NONE":
            raise FetchError("encrypted HLS (EXT-X-KEY) is not supported")
        elif tag == "#EXT-X-BYTERANGE" or (tag == "#EXT-X-MAP" and "BYTERANGE" in value):
            raise FetchError("HLS byte ranges are not supported")
        elif not line.startswith("#"):
            url = urljoin(base_url, line)
            if pending_variant is not None:
                out.variants.append((pending_variant, url))
                pending_variant = None
            else:
                out.segments.append(url)
    return out


async def _segment(fetcher: GuardedFetcher, url: str) -> AsyncIterator[bytes]:
    response = await fetcher.open(url)
    total = 0
    try:
        while chunk := await response.content.read(CHUNK_BYTES):
            total += len(chunk)
            if total > MAX_SEGMENT_BYTES:
                raise FetchError(f"an HLS segment larger than {MAX_SEGMENT_BYTES} bytes")
            yield chunk
    finally:
        response.release()


async def _media_playlist(fetcher: GuardedFetcher, url: str, text: str) -> tuple[str, Playlist]:
    playlist = parse_playlist(url, text)
    if not (playlist.variants or playlist.audio):
        return url, playlist
    choice = max(playlist.audio, key=lambda a: a[0])[1] if playlist.audio else min(playlist.variants)[1]
    url, text = await fetcher.read_text(choice, MAX_PLAYLIST_BYTES)
    playlist = parse_playlist(url, text)
    if playlist.variants or playlist.audio:
        raise FetchError("nested HLS master playlists are not supported")
    return url, playlist


async def hls_stream(fetcher: GuardedFetcher, url: str, text: str) -> AsyncIterator[bytes]:
    """The concatenated segments of the HLS playlist ``text`` (fetched from ``url``)."""
    url, playlist = await _media_playlist(fetcher, url, text)
    next_seq: int | None = None
    sent_init: str | None = None
    while True:
        if playlist.init and playlist.init != sent_init:
            async for chunk in _segment(fetcher, playlist.init):
                yield chunk
            sent_init = playlist.init
        first = playlist.media_sequence
        if next_seq is None:  # join a live playlist near its end, a finished one at its start
            next_seq = first if playlist.ended else max(first, first + len(playlist.segments) - LIVE_EDGE_SEGMENTS)
        for seq in range(max(next_seq, first), first + len(playlist.segments)):
            async for chunk in _segment(fetcher, playlist.segments[seq - first]):
                yield chunk
            next_seq = seq + 1
        if playlist.ended:
            return
        await asyncio.sleep(playlist.target_duration / 2)
        url, text = await fetcher.read_text(url, MAX_PLAYLIST_BYTES)
        playlist = parse_playlist(url, text)
