"""Request-level defences: Origin checks, security headers, SSRF-safe URLs.

Place in the pipeline: used by the routes (``web.ws``, ``web.api``) and the
URL monitors. Each rule is a small function with its reason next to it.

* Origin. A browser lets any page open a WebSocket to 127.0.0.1 and send
  forms there. A browser always sends ``Origin`` with such requests, so a
  request whose Origin is neither this server's own nor one the operator
  listed is refused. A request with no Origin comes from a non-browser
  client (``tools/stream.py``, curl), which no web page can forge, and is
  allowed.
* URLs for monitors (server-side request forgery). The server runs ffmpeg
  on a URL a user typed; without a check that user could make the server
  read ``file:`` paths or reach services that only the server can reach
  (127.0.0.1, the LAN, cloud metadata at 169.254.169.254). Only http(s) is
  accepted, and every address the host name resolves to must be public
  unless the operator explicitly allowed private ones.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import AudiocopyError

MAX_URL_CHARS = 2048


class UrlRefused(AudiocopyError):
    """A monitor URL is not allowed (scheme, form or destination)."""


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's Origin may use this server.

    origin: the Origin header (None when absent); host: the Host header.
    allowed: extra origins ("scheme://host[:port]", or "*" for any).
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.strip().lower()


def security_headers(host: str | None) -> dict[str, str]:
    """Headers for every HTML response: no inline script, no framing, no sniffing.

    The Content-Security-Policy allows scripts, styles and sockets from this
    origin only, so even an escaping bug could not run injected script.
    """
    ws = f" ws://{host} wss://{host}" if host else ""
    return {
        "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                    "img-src 'self' data:; media-src 'self' blob:; "
                                    f"connect-src 'self'{ws}; object-src 'none'; base-uri 'none'; "
                                    "form-action 'self'; frame-ancestors 'none'"),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def _ip_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


def parse_monitor_url(url: str) -> tuple[str, str, int]:
    """Check a URL's form: (normalised URL, host, port). ``UrlRefused`` if it is not http(s)."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL must be a non-empty string of at most {MAX_URL_CHARS} characters")
    url = url.strip()
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRefused("the URL contains spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs can be monitored, not {parts.scheme or '(none)'!r}")
    if parts.username or parts.password:
        raise UrlRefused("URLs with credentials (user:password@) are not accepted")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise UrlRefused("the URL has an invalid port") from None
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    return url, parts.hostname, port


async def check_monitor_url(url: str, *, allow_private: bool, resolve=None) -> str:
    """Validate a monitor URL and the addresses it resolves to; returns it normalised.

    allow_private: accept loopback/private/link-local destinations.
    resolve: ``async (host, port) -> list[str]`` of IP addresses (default:
    the event loop's resolver); injectable for tests.
    Raises ``UrlRefused``.
    """
    url, host, port = parse_monitor_url(url)
    if allow_private:
        return url
    try:
        ips = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addresses = await (resolve or _resolve)(host, port)
        except OSError as exc:
            raise UrlRefused(f"cannot resolve {host!r}: {exc}") from None
        ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not ips:
        raise UrlRefused(f"{host!r} resolves to no address")
    bad = sorted({str(ip) for ip in ips if not _ip_is_public(ip)})
    if bad:
        raise UrlRefused(f"{host!r} resolves to a loopback, private or link-local address ({', '.join(bad)}); "
                         "start the server with --allow-private-monitors to allow it")
    return url


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]
