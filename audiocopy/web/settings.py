"""Server settings: one frozen record from the command line, with environment fallback.

Place in the pipeline: the edge of the server. ``server.py`` and
``audiocopy serve`` share ``add_arguments`` and ``settings_from_args``; the
app factory and everything under it receive the resulting
``ServerSettings`` and never read ``os.environ`` or globals themselves.

Every option has an environment variable ``AUDIOCOPY_<NAME>`` (for example
``--max-streams`` / ``AUDIOCOPY_MAX_STREAMS``), so a container or a systemd
unit can configure the server without a command line. The command line wins
over the environment, which wins over the default. All values are checked
before anything starts; a bad one raises ``ConfigError`` naming the option,
the variable and what is expected, and the launcher prints that one line.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from ..config import MIB, ServerSettings
from ..config.server import without_password
from ..errors import ConfigError

# --- value parsers: text -> value, ValueError with a short reason ---------

def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value
    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value
    return parse


def _bytes(lo: int, hi: int) -> Callable[[str], int]:
    """An integer byte count, optionally with a K/M/G (binary) suffix."""
    def parse(text: str) -> int:
        t = text.strip().upper().removesuffix("B").removesuffix("I")
        scale = {"K": 1024, "M": MIB, "G": 1024 * MIB}.get(t[-1:], 1)
        try:
            value = int(float(t[:-1] if scale > 1 else t) * scale)
        except ValueError:
            raise ValueError("must be a byte count such as 1048576, 512K or 50M") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi} bytes")
        return value
    return parse


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("empty path")
    return Path(text).expanduser()


def _host(text: str) -> str:
    t = text.strip()
    if not t or any(c.isspace() or c in "/?#@" for c in t):
        raise ValueError("expected a host name or IP address")
    return t


def _token(text: str) -> str:
    if len(text) < 16:
        raise ValueError("must be at least 16 characters (use a random one)")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("must be printable without spaces")
    return text


def _origins(text: str) -> tuple[str, ...]:
    out = []
    for item in (o.strip() for o in text.split(",")):
        if not item:
            continue
        if item == "*":
            out.append(item)
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"{item!r} is not an origin like https://example.org[:port]")
        out.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(out)


def _networks(text: str) -> tuple[str, ...]:
    import ipaddress

    out = []
    for item in (n.strip() for n in text.split(",")):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not a network like 192.168.1.0/24 or 10.1.2.3") from None
    return tuple(out)


def _hosts(text: str) -> tuple[str, ...]:
    """Comma-separated ``name``, ``name:port``, ``[v6]``, ``[v6]:port`` or ``*``, lower-cased."""
    from .security import split_host

    out = []
    for item in (h.strip().lower() for h in text.split(",")):
        if not item:
            continue
        if item != "*" and split_host(item) is None:
            raise ValueError(f"{item!r} is not a host like example.org, example.org:8080 or [::1]")
        out.append(item)
    if not out:
        raise ValueError("expected at least one host")
    return tuple(out)


def _store(text: str) -> str:
    """A PostgreSQL URL (kept as written) or an SQLite file path (made absolute)."""
    from ..plays.factory import POSTGRES_SCHEMES

    t = text.strip()
    if not t:
        raise ValueError("empty; give postgresql://user@host:port/db or an SQLite file path")
    scheme = urlsplit(t).scheme.lower() if "://" in t else ""
    if scheme in POSTGRES_SCHEMES:
        if not urlsplit(t).path.strip("/") and "dbname=" not in t:
            raise ValueError("name the database: postgresql://user@host:port/DBNAME")
        return t
    if scheme:
        raise ValueError(f"unknown scheme {scheme!r}; use postgresql://user@host:port/db or an SQLite file path")
    return str(Path(t).expanduser())


def _worker_id(text: str) -> str:
    t = text.strip()
    if not t or len(t) > 200 or not t.isprintable() or any(c.isspace() for c in t):
        raise ValueError("expected a printable name without spaces, at most 200 characters (e.g. host-a:8080)")
    return t


def _engine(text: str) -> str:
    from ..engines import ENGINE_MODULES

    if text not in ENGINE_MODULES:
        raise ValueError(f"known engines: {', '.join(sorted(ENGINE_MODULES))}")
    return text


#: field name -> (parser, metavar, help). The flag is --field-name, the variable AUDIOCOPY_FIELD_NAME.
_OPTIONS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "db": (_path, "DB", "recognizer database folder (built with `audiocopy enroll`)"),
    "host": (_host, "HOST", "interface to listen on (default 127.0.0.1)"),
    "port": (_int_range(0, 65535), "PORT", "TCP port (default 8080; 0 picks a free one)"),
    "engine": (_engine, "NAME", "expected engine (default: the one the database names)"),
    "state_dir": (_path, "DIR", "folder for the plays log, admin token and monitors (default DB/server)"),
    "store": (_store, "URL_OR_FILE", ("where plays are kept: postgresql://user@host:port/db (the postgres extra) "
                                      "or an SQLite file (default STATE_DIR/plays.sqlite)")),
    "admin_token": (_token, "TOKEN", "admin token for mutations (default: generated on first start, shown once)"),
    "allowed_origins": (_origins, "ORIGINS", "comma-separated extra browser origins allowed to connect"),
    "max_streams": (_int_range(1, 10_000), "N", "most concurrent WebSocket streams (default 16)"),
    "max_monitors": (_int_range(0, 1000), "N", "most URL monitors (default 8)"),
    "max_message_bytes": (_bytes(1024, 64 * MIB), "BYTES", "largest WebSocket message (default 1M)"),
    "max_upload_bytes": (_bytes(1024, 1024 * MIB), "BYTES", "largest upload (default 50M)"),
    "max_batch": (_int_range(1, 4096), "N", "most windows per recognizer call (default 64)"),
    "max_pending": (_int_range(1, 100_000), "N", "most windows waiting for compute (default: 2 per stream and monitor, at least 256)"),
    "max_pending_per_stream": (_int_range(1, 1000), "N", "most windows one live stream may have waiting (default 6)"),
    "batch_linger_ms": (_float_range(0, 1000), "MS", "wait for more windows before a batch (default 5 ms)"),
    "catalog_poll_s": (_float_range(0, 3600), "SECONDS", "check the database's generation stamp this often and "
                       "reload after a change made outside the server, e.g. by the CLI (default 2; 0: never)"),
    "allow_private_monitors": (_bool, "BOOL", "let URL monitors reach loopback/private addresses (default false)"),
    "allow_monitor_networks": (_networks, "CIDRS", ("comma-separated private networks URL monitors may reach "
                                                    "(e.g. 192.168.1.0/24; default none)")),
    "allow_hls_monitors": (_bool, "BOOL", "accept HLS (.m3u8) monitor URLs, every segment URL checked (default false)"),
    "negatives_dir": (_path, "DIR", "wrong tracks for training tracks added on the Catalog page"),
    "train_positives": (_int_range(8, 100_000), "N", "augmented windows per added track (default 400)"),
    "train_epochs": (_int_range(1, 1000), "N", "training epochs per added track (default 20)"),
    "max_identify_seconds": (_float_range(2.5, 24 * 3600), "SECONDS", "longest audio analysed per upload (default 600)"),
    "allowed_hosts": (_hosts, "HOSTS", ("comma-separated Host names the server answers to, others get 421 "
                       "(default: the bind address, localhost, 127.0.0.1, [::1]; * for any)")),
    "start_timeout_s": (_float_range(0.1, 3600), "SECONDS", ("close a WebSocket that sends no valid start "
                         "this long after connecting (default 10)")),
    "idle_timeout_s": (_float_range(0.1, 24 * 3600), "SECONDS", ("close a stream that sends no audio for this long "
                        "(default 30)")),
    "max_connections_per_address": (_int_range(1, 100_000), "N", ("most open WebSocket connections from one client "
                                     "address (default: max streams + 16)")),
    "max_identify_jobs": (_int_range(1, 64), "N", "Identify uploads handled at once; more get 503 (default 2)"),
    "identify_token": (_token, "TOKEN", ("require this bearer token (or the admin token) for /api/identify "
                        "(default: none needed)")),
    "require_source_tokens": (_bool, "BOOL", ("refuse /ws streams without a valid stream token "
                              "(POST /api/sources/tokens; default false)")),
    "max_webhooks": (_int_range(0, 100), "N", "most webhook receivers of closed plays (default 8)"),
    "webhook_max_attempts": (_int_range(1, 100), "N", ("attempts per webhook delivery before it is marked failed "
                                                      "(default 10)")),
    "webhook_backoff_s": (_float_range(0.01, 3600), "SECONDS", ("wait before the first webhook retry, doubled "
                                                                "per failed attempt (default 5)")),
    "webhook_max_backoff_s": (_float_range(0.01, 24 * 3600), "SECONDS", ("longest wait between two "
                                                                         "webhook attempts (default 900)")),
    "webhook_timeout_s": (_float_range(0.1, 300), "SECONDS", "longest one webhook attempt may take (default 10)"),
    "worker_id": (_worker_id, "ID", ("this server's name among the workers sharing one store; a restart with the "
                  "same id takes its own monitors and open plays back at once (default HOSTNAME:PORT)")),
    "lease_ttl_s": (_float_range(1, 3600), "SECONDS", ("a worker silent this long is dead and its monitors move "
                    "to another worker (default 10; more than twice --lease-renew-s)")),
    "lease_renew_s": (_float_range(0.1, 600), "SECONDS", "seconds between a worker's heartbeats (default 3)"),
    "adopt_window_s": (_float_range(1, 3600), "SECONDS", ("a dead worker's open monitor play is continued by the "
                       "monitor's next holder within this many seconds of its last update (default 30)")),
}


def env_name(field_name: str) -> str:
    return "AUDIOCOPY_" + field_name.upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per setting; defaults stay None so the environment can fill in."""
    for name, (parse, metavar, help_text) in _OPTIONS.items():
        extra = {"nargs": "?", "const": "true"} if parse is _bool else {}  # a bare flag means "true"
        parser.add_argument(flag_name(name), dest=name, default=None, metavar=metavar,
                            help=f"{help_text} [env {env_name(name)}]", **extra)


def settings_from_args(args: argparse.Namespace | Mapping[str, Any], environ: Mapping[str, str] | None = None,
                       *, check_db: bool = True) -> ServerSettings:
    """Resolve every setting (command line > environment > default) and validate.

    args: parsed namespace (or mapping) whose values are strings or None.
    environ: the environment (default ``os.environ``).
    check_db: also check that the database exists and its engine matches.
    Raises ``ConfigError`` with one clear line for the first bad value.
    """
    environ = os.environ if environ is None else environ
    raw = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    values: dict[str, Any] = {}
    for name, (parse, _, _) in _OPTIONS.items():
        text, where = raw.get(name), flag_name(name)
        if text is None and environ.get(env_name(name)) not in (None, ""):
            text, where = environ[env_name(name)], env_name(name)
        if text is None:
            continue
        if not isinstance(text, str):  # already typed (tests, programmatic use)
            values[name] = text
            continue
        try:
            values[name] = parse(text)
        except ValueError as exc:
            # A store URL may hold a password: never echo it.
            raise ConfigError(f"{where}: invalid value {without_password(text)!r}: {exc}") from None
    if "db" not in values:
        raise ConfigError(f"no database: pass --db DB or set {env_name('db')}")
    settings = ServerSettings(**values)
    check_leases(settings)
    if check_db:
        check_database(settings)
    return settings


def check_leases(settings: ServerSettings) -> None:
    """A lease must outlive two missed renewals, or a worker that is only slow loses its monitors."""
    if not settings.lease_ttl_s > 2 * settings.lease_renew_s:
        raise ConfigError(f"--lease-ttl-s {settings.lease_ttl_s:g} must be more than twice --lease-renew-s "
                          f"{settings.lease_renew_s:g} (a worker renews every --lease-renew-s seconds and may miss "
                          "one renewal without losing its monitors)")


def check_database(settings: ServerSettings) -> None:
    """The database must exist and be of the expected engine; ``ConfigError`` otherwise."""
    from ..engines import catalog
    from ..errors import ModelError

    try:
        info = catalog.open_db(settings.db)
    except ModelError as exc:
        raise ConfigError(f"--db: {exc}") from None
    if settings.engine is not None and settings.engine != info.engine:
        raise ConfigError(f"--engine {settings.engine}: the database {settings.db} was built for "
                          f"{info.engine!r}")
    if settings.negatives_dir is not None and not settings.negatives_dir.is_dir():
        raise ConfigError(f"--negatives-dir: folder not found: {settings.negatives_dir}")
    if settings.state_path.exists() and not settings.state_path.is_dir():
        raise ConfigError(f"--state-dir: {settings.state_path} exists and is not a folder")
