"""The server's settings record and its defaults.

Place in the pipeline: the edge of the server. ``web.settings`` builds one
``ServerSettings`` from the command line and the environment (parsing and
validation live there); the app factory and everything under it receive it
and never read ``os.environ`` or globals themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

MIB = 1024 * 1024


def without_password(url: str) -> str:
    """A store URL as it may be shown (logs, errors, ``/api/status``): any password in it replaced by ``***``.

    Both places a libpq URL can hold one are covered: ``user:password@`` and
    a ``password=`` parameter. Text without a password comes back as it is.
    """
    import re

    url = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, validated.

    host, port: where to listen (default loopback only: the server exposes a
        microphone endpoint and an admin API, so reaching it from the network
        must be a deliberate choice).
    db: recognizer database (``audiocopy enroll``); engine: expected engine
        name, or None to take the one the database names.
    state_dir: server-owned files: plays log, admin token hash, monitors,
        training jobs (default ``DB/server``).
    store: where plays are kept: a PostgreSQL URL
        (``postgresql://user@host:port/db``) or an SQLite file; None: the
        SQLite file ``plays.sqlite`` in the state folder. Only the plays
        (and their sources) move to PostgreSQL; monitors, tokens and
        webhook outboxes stay in the state folder.
    admin_token: token for mutations; None = use or create the stored one.
    allowed_origins: extra browser origins allowed besides the server's own.
    max_streams: concurrent WebSocket streams; max_monitors: URL monitors.
    max_message_bytes: largest WebSocket message accepted (bytes).
    max_upload_bytes: largest uploaded file (bytes).
    max_batch: most windows in one recognizer call.
    max_pending: windows waiting for compute, all streams together; None:
        two per possible stream (``max_streams + max_monitors``), at least
        256. Streams started together come due together, so every stream may
        have a window waiting at one instant and its next one a hop later; a
        fixed limit below that drops windows of a server that keeps up on
        average (measured: 42 of 5,158 at 200 streams with a limit of 256).
    max_pending_per_stream: windows one live stream may have waiting; beyond
        it its oldest are dropped (at a 0.5 s hop, 6 windows = 3 s behind).
    batch_linger_ms: how long the batcher waits for more windows once one
        is due; a few ms turn near-simultaneous windows into one call.
    catalog_poll_s: seconds between two reads of the database's generation
        stamp; a change made outside the server (``audiocopy enroll``,
        ``remove``) is loaded within about this long (0: never checked).
    allow_private_monitors: let URL monitors reach loopback/private/
        link-local addresses (off: SSRF protection).
    allow_monitor_networks: non-public networks (CIDR strings) URL monitors
        may reach, one by one, when ``allow_private_monitors`` is off.
    allow_hls_monitors: accept HLS (.m3u8) monitor URLs; the server then
        fetches the playlists and checks every segment URL itself.
    negatives_dir: wrong tracks used to train tracks added from the Catalog
        page (None: adding by upload is disabled).
    train_positives, train_epochs: dataset size and epochs for those jobs.
    max_identify_seconds: longest audio analysed from one Identify upload
        (only that much is ever decoded, whatever the file's length).
    allowed_hosts: host names (optionally ``name:port``) this server answers
        to; a request with another ``Host`` gets 421. Empty: the bind address
        plus localhost, 127.0.0.1 and [::1] (``host_allowlist``). "*": any.
    start_timeout_s: a WebSocket must send a valid ``start`` this soon after
        connecting, or it is closed (it holds no stream slot meanwhile).
    idle_timeout_s: a started stream that sends no audio for this long is closed.
    max_connections_per_address: open WebSocket connections (started or not)
        from one client address; None: ``max_streams + 16``.
    max_identify_jobs: Identify uploads handled at once; others wait briefly, then get 503.
    identify_token: when set, ``/api/identify`` needs ``Authorization: Bearer``
        with it (or the admin token); None: Identify is open to any client.
    require_source_tokens: refuse every ``/ws`` stream whose ``start`` has no
        valid stream token (``web.source_tokens``); off: a stream without a
        token may use any name nobody reserved, and its plays are unverified.
    max_webhooks: most webhook receivers (``web.webhooks``).
    webhook_max_attempts: attempts per delivery before it is marked failed.
    webhook_backoff_s, webhook_max_backoff_s: wait before the first retry,
        doubled per failed attempt up to the cap (seconds).
    webhook_timeout_s: longest one delivery attempt may take (seconds).
    worker_id: this process's name among the server workers sharing one
        store (``web.workers``); None: ``worker_name``'s default,
        "HOSTNAME:PORT". A restarted process with the same id is the same
        worker: it recovers its own open plays at once.
    lease_ttl_s: a worker's heartbeat and its monitor leases last this long
        without renewal; a worker silent for longer is dead and its monitors
        move (seconds; must exceed twice ``lease_renew_s``).
    lease_renew_s: seconds between two heartbeats and lease renewals.
    adopt_window_s: a dead worker's open monitor play is continued by the
        monitor's next holder when that one opens a play of the same track
        within this many seconds of its last update (``web.handover``).
    """

    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    engine: str | None = None
    state_dir: Path | None = None
    store: str | None = None
    admin_token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_streams: int = 16
    max_monitors: int = 8
    max_message_bytes: int = 1 * MIB
    max_upload_bytes: int = 50 * MIB
    max_batch: int = 64
    max_pending: int | None = None
    max_pending_per_stream: int = 6
    batch_linger_ms: float = 5.0
    catalog_poll_s: float = 2.0
    allow_private_monitors: bool = False
    allow_monitor_networks: tuple[str, ...] = ()
    allow_hls_monitors: bool = False
    negatives_dir: Path | None = None
    train_positives: int = 400
    train_epochs: int = 20
    max_identify_seconds: float = 600.0
    allowed_hosts: tuple[str, ...] = ()
    start_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections_per_address: int | None = None
    max_identify_jobs: int = 2
    identify_token: str | None = None
    require_source_tokens: bool = False
    max_webhooks: int = 8
    webhook_max_attempts: int = 10
    webhook_backoff_s: float = 5.0
    webhook_max_backoff_s: float = 900.0
    webhook_timeout_s: float = 10.0
    worker_id: str | None = None
    lease_ttl_s: float = 10.0
    lease_renew_s: float = 3.0
    adopt_window_s: float = 30.0

    @property
    def worker_name(self) -> str:
        """``worker_id``, or "HOSTNAME:PORT" (with port 0, "HOSTNAME:pidPID": the port is not known yet)."""
        if self.worker_id:
            return self.worker_id
        import os
        import socket

        return f"{socket.gethostname()}:{self.port}" if self.port else f"{socket.gethostname()}:pid{os.getpid()}"

    @property
    def pending_limit(self) -> int:
        """``max_pending`` as the batcher applies it (see the class docstring)."""
        if self.max_pending is not None:
            return self.max_pending
        return max(256, 2 * (self.max_streams + self.max_monitors))

    @property
    def host_allowlist(self) -> tuple[str, ...]:
        """``allowed_hosts``, or by default the bind address and the loopback names.

        A wildcard bind address (0.0.0.0, ::) names no host, so it adds
        nothing: a server reached by another name must list it.
        """
        if self.allowed_hosts:
            return self.allowed_hosts
        names = ["localhost", "127.0.0.1", "[::1]"]
        bind = self.host.strip().lower()
        if bind not in ("0.0.0.0", "::", ""):
            bind = f"[{bind}]" if ":" in bind else bind
            if bind not in names:
                names.insert(0, bind)
        return tuple(names)

    @property
    def connections_per_address(self) -> int:
        """``max_connections_per_address`` as the WebSocket handler applies it."""
        if self.max_connections_per_address is not None:
            return self.max_connections_per_address
        return self.max_streams + 16

    @property
    def state_path(self) -> Path:
        """The state folder (``state_dir`` or ``DB/server``)."""
        return self.state_dir if self.state_dir is not None else self.db / "server"

    def public_dict(self) -> dict:
        """Settings safe to show (the token is never included)."""
        out = {}
        for f in fields(self):
            if f.name in ("admin_token", "identify_token"):
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        out["state_dir"] = str(self.state_path)
        out["store"] = without_password(self.store) if self.store else str(self.state_path / "plays.sqlite")
        out["max_pending"] = self.pending_limit
        out["allowed_hosts"] = list(self.host_allowlist)
        out["max_connections_per_address"] = self.connections_per_address
        out["worker_id"] = self.worker_name
        return out
