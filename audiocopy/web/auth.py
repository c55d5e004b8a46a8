"""The admin token that guards every mutation (catalog changes, monitors).

Place in the pipeline: beside the routes. Reading pages, plays and results
needs no token; changing the catalog or starting a URL monitor does, because
those spend CPU for hours or make the server fetch arbitrary URLs.

Where the token comes from: ``--admin-token`` / ``AUDIOCOPY_ADMIN_TOKEN`` when
given; otherwise a random one is generated on the first start, shown once by
the launcher, and only its SHA-256 is kept (``STATE/admin-token.sha256``,
mode 0600). Losing it means deleting that file and restarting, which prints
a new one. Clients send it as ``Authorization: Bearer <token>``; the header
(not a cookie) is what makes the admin API immune to cross-site request
forgery, since another site's page cannot set it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from ..atomic_files import create_once
from ..config import ServerSettings
from ..errors import ConfigError

log = logging.getLogger(__name__)

TOKEN_FILE = "admin-token.sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AdminAuth:
    """Checks admin tokens against a stored SHA-256.

    new_token: the freshly generated token, set only on the start that
    created it (so the launcher can show it once); None otherwise.
    """

    token_sha256: str
    new_token: str | None = None

    @classmethod
    def from_token(cls, token: str) -> "AdminAuth":
        return cls(_digest(token))

    def check(self, header: str | None) -> bool | None:
        """None when no token was sent, else whether ``header`` holds the right one.

        header: the Authorization header value ("Bearer <token>").
        """
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(_digest(token.strip()), self.token_sha256)


def load_or_create(settings: ServerSettings) -> AdminAuth:
    """The configured token, else the stored hash, else a new token (stored hashed).

    Workers sharing one state folder may start together without a token:
    ``atomic_files.create_once`` keeps one worker's hash, and the others use
    it (only the worker whose token was kept announces one). Raises
    ``ConfigError`` when the stored file is unreadable or malformed.
    """
    if settings.admin_token:
        return AdminAuth.from_token(settings.admin_token)
    path = settings.state_path / TOKEN_FILE
    if path.exists():
        return AdminAuth(_read_digest(path))
    token = secrets.token_urlsafe(24)
    if not create_once(path, _digest(token) + "\n"):
        return AdminAuth(_read_digest(path))
    log.info("generated a new admin token; its hash is in %s", path)
    return AdminAuth(_digest(token), new_token=token)


def _read_digest(path) -> str:
    try:
        digest = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the admin token hash {path}: {exc}") from None
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"{path} is not a SHA-256 hex digest; delete it to generate a new admin token")
    return digest
