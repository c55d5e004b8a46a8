"""Which outbound URLs the server may fetch: form, every resolved address, and the pinned answer.

Place in the pipeline: used by ``web.url_fetch`` (the only code that opens
outbound connections, for URL monitors) and by ``web.monitors`` to refuse a
bad URL when it is added.

Why: the server fetches URLs a user typed (server-side request forgery).
Without a check that user could make the server read services only the
server can reach: 127.0.0.1, the LAN, cloud metadata at 169.254.169.254.

The rules:

* Only ``http`` and ``https``; no credentials in the URL; no spaces or
  control characters; at most ``MAX_URL_CHARS``.
* The host is resolved **once** and **every** answer is checked (one private
  answer among public ones refuses the URL: the connection could use any of
  them). The checked answers are returned as a ``Target`` and the caller
  connects to those addresses only (``url_fetch.PinnedResolver``), so a DNS
  server that answers differently the second time (DNS rebinding) gains
  nothing.
* An address is acceptable when it is public (``is_global``), or when the
  operator allowed it: ``--allow-private-monitors`` allows every non-public
  unicast address, ``--allow-monitor-networks`` only the listed networks.
  Multicast and unspecified addresses (0.0.0.0, ::) are never acceptable.
  IPv4 addresses hidden in IPv6 forms (``::ffff:10.0.0.1``, NAT64
  ``64:ff9b::a00:1``, 6to4 ``2002:0a00:0001::``) are judged as the IPv4
  address they reach.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

from ..config import ServerSettings
from ..errors import AudiocopyError

MAX_URL_CHARS = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``async (host, port) -> [ip, ...]``; the default asks the event loop's resolver.
Resolve = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class UrlRefused(AudiocopyError):
    """An outbound URL is not allowed (scheme, form or destination)."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which destination addresses outbound fetches may reach.

    allow_private: every non-public unicast address (loopback, LAN, link-local).
    networks: non-public networks allowed one by one (e.g. a LAN radio server).
    """

    allow_private: bool = False
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> AddressPolicy:
        return cls(settings.allow_private_monitors,
                   tuple(ipaddress.ip_network(n, strict=False) for n in settings.allow_monitor_networks))

    def allows(self, ip: IPAddress) -> bool:
        ip = effective_address(ip)
        if ip.is_multicast or ip.is_unspecified:
            return False
        if ip.is_global or self.allow_private:
            return True
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: fetch ``url`` from ``addresses`` only (the host name stays in the request)."""

    url: str
    scheme: str
    host: str  # as the HTTP client spells it (IDNA-encoded, lower case): the key of the pinned answer
    port: int
    addresses: tuple[str, ...]


def effective_address(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form really reaches (mapped, NAT64, 6to4), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip in _SIX_TO_FOUR and ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def parse_url(url: str) -> tuple[str, str, str, int]:
    """Check a URL's form: (normalised URL, scheme, host, port). ``UrlRefused`` if it is not plain http(s)."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL must be a non-empty string of at most {MAX_URL_CHARS} characters")
    url = url.strip()
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UrlRefused("the URL contains spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs can be monitored, not {parts.scheme or '(none)'!r}")
    if parts.username or parts.password:
        raise UrlRefused("URLs with credentials (user:password@) are not accepted")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("the URL has an invalid port") from None
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    try:
        host = URL(url).raw_host  # the spelling the HTTP client resolves and connects with
    except (ValueError, UnicodeError):
        raise UrlRefused("the URL's host name is not valid") from None
    if not host:
        raise UrlRefused("the URL has no host")
    return url, scheme, host.rstrip(".").lower() or host, port


async def resolve_checked(host: str, port: int, policy: AddressPolicy, resolve: Resolve | None = None
                          ) -> tuple[str, ...]:
    """Resolve ``host`` once and check every answer; returns the addresses (the pin).

    Raises ``UrlRefused`` when the name does not resolve, resolves to nothing,
    or any answer is not allowed by ``policy``.
    """
    try:
        ips: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            answers = await (resolve or default_resolve)(host, port)
            ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        except (OSError, ValueError) as exc:
            raise UrlRefused(f"cannot resolve {host!r}: {exc}") from None
    if not ips:
        raise UrlRefused(f"{host!r} resolves to no address")
    bad = sorted({str(ip) for ip in ips if not policy.allows(ip)})
    if bad:
        raise UrlRefused(f"{host!r} resolves to a loopback, private, link-local or reserved address "
                         f"({', '.join(bad)}); the server only reaches such addresses when started with "
                         "--allow-private-monitors or --allow-monitor-networks")
    return tuple(dict.fromkeys(str(ip) for ip in ips))


async def check_url(url: str, policy: AddressPolicy, resolve: Resolve | None = None) -> Target:
    """Check a URL's form and every address of its host; ``UrlRefused`` if not allowed."""
    url, scheme, host, port = parse_url(url)
    return Target(url, scheme, host, port, await resolve_checked(host, port, policy, resolve))


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: what may be shown of a URL whose path or query may hold a stream key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


async def default_resolve(host: str, port: int) -> list[str]:
    """The event loop's resolver (getaddrinfo), TCP answers only."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]
