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
    allow_private_monitors: let URL monitors reach loopback/private/
        link-local addresses (off: SSRF protection).
    negatives_dir: wrong tracks used to train tracks added from the Catalog
        page (None: adding by upload is disabled).
    train_positives, train_epochs: dataset size and epochs for those jobs.
    max_identify_seconds: longest audio analysed from one Identify upload.
    """

    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    engine: str | None = None
    state_dir: Path | None = None
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
    allow_private_monitors: bool = False
    negatives_dir: Path | None = None
    train_positives: int = 400
    train_epochs: int = 20
    max_identify_seconds: float = 600.0

    @property
    def pending_limit(self) -> int:
        """``max_pending`` as the batcher applies it (see the class docstring)."""
        if self.max_pending is not None:
            return self.max_pending
        return max(256, 2 * (self.max_streams + self.max_monitors))

    @property
    def state_path(self) -> Path:
        """The state folder (``state_dir`` or ``DB/server``)."""
        return self.state_dir if self.state_dir is not None else self.db / "server"

    def public_dict(self) -> dict:
        """Settings safe to show (the token is never included)."""
        out = {}
        for f in fields(self):
            if f.name == "admin_token":
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        out["state_dir"] = str(self.state_path)
        out["max_pending"] = self.pending_limit
        return out
