"""Request-level defences: Host and Origin checks, security headers.

Place in the pipeline: used by the routes (``web.ws``, ``web.api``) and the
URL monitors. Each rule is a small function with its reason next to it.

* Host (DNS rebinding). A page on evil.example can make its own name
  resolve to 127.0.0.1 a moment after loading; its scripts then reach this
  server *as* evil.example, with ``Host: evil.example`` and a matching
  ``Origin``, so comparing the two proves nothing. Every request's ``Host``
  must therefore be one of the names the operator serves under
  (``ServerSettings.host_allowlist``: the bind address and the loopback
  names by default); any other gets 421 Misdirected Request before a
  handler runs (``host_guard``).
* Origin. A browser lets any page open a WebSocket to 127.0.0.1 and send
  forms there. A browser always sends ``Origin`` with such requests, so a
  request whose Origin is neither this server's own (an allowed host, at
  the host and port the request came to) nor one the operator listed is
  refused. A request with no Origin comes from a non-browser client
  (``tools/stream.py``, curl), which no web page can forge, and is allowed.
* URLs for monitors (server-side request forgery) are checked in
  ``web.url_guard`` and fetched in ``web.url_fetch``.
"""
from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from aiohttp import web

from .responses import error_body

log = logging.getLogger(__name__)


def split_host(text: str) -> tuple[str, int | None] | None:
    """``Host``-style text -> (lower-case name, port or None); None when malformed.

    Accepts ``name``, ``name:port``, ``1.2.3.4[:port]`` and ``[v6][:port]``.
    A trailing dot is dropped (``localhost.`` is ``localhost``).
    """
    t = text.strip().lower()
    if not t or len(t) > 300 or any(c.isspace() or c in "/?#@\\" or not c.isprintable() for c in t):
        return None
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            return None
        inner, rest = t[1:end], t[end + 1:]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        if rest and not rest.startswith(":"):
            return None
        name, port_text = f"[{inner}]", rest[1:] if rest else None
    else:
        if t.count(":") > 1:  # a bare IPv6 address is not a valid Host
            return None
        name, colon, port_text = t.partition(":")
        name, port_text = name.rstrip("."), port_text if colon else None
        if not name:
            return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` value names this server.

    allowed: entries ``name`` (any port), ``name:port`` (that port only) or
    ``*`` (anything). A Host without a port matches ``name:80``/``name:443``.
    """
    if "*" in allowed:
        return True
    parsed = split_host(host or "")
    if parsed is None:
        return False
    name, port = parsed
    for entry in allowed:
        want = split_host(entry)
        if want is None or want[0] != name:
            continue
        if want[1] is None or want[1] == port or (port is None and want[1] in (80, 443)):
            return True
    return False


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...],
                   allowed_hosts: tuple[str, ...] = ("*",)) -> bool:
    """Whether a request's Origin may use this server.

    origin: the Origin header (None when absent); host: the Host header.
    allowed: extra origins ("scheme://host[:port]", or "*" for any).
    allowed_hosts: the names this server answers to (``host_allowlist``).
    Otherwise the Origin must be this server as the browser reached it: its
    host and port are the request's ``Host`` *and* that host is allowed; a
    rebinding page has a matching Host, but not an allowed one.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return (parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.strip().lower()
            and host_allowed(parts.netloc, allowed_hosts))


def host_guard(allowed_hosts: tuple[str, ...]):
    """An aiohttp middleware answering 421 to requests whose ``Host`` is not allowed.

    A request with no Host header at all (HTTP/1.0) comes from no browser
    and passes; browsers always send one.
    """
    @web.middleware
    async def guard(request: web.Request, handler):
        host = request.headers.get("Host")
        if host is None or host_allowed(host, allowed_hosts):
            return await handler(request)
        log.warning("refused a request for host %r (%s %s)", host[:100], request.method, request.path[:100])
        return web.Response(status=421, content_type="application/json", headers=security_headers(None),
                            text=error_body("misdirected_host", "this server does not answer to the host name "
                                            f"{host[:100]!r}; start it with --allowed-hosts to add a name"))
    return guard


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
