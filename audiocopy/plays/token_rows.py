"""Stream tokens in the store: the SHA-256 of each source's token, shared by every server worker.

Place in the pipeline: under ``web.source_tokens``, which holds the rules
(who may stream under which name) and asks this table at each stream start.
The table is ``source_tokens`` of the plays store's schema (version 3,
``plays.schema``), in the same SQLite file or PostgreSQL database as the
plays, so a token issued or revoked on one worker counts on every worker at
the next stream start.

Rows are keyed by the source name's comparison form (``name_key``, computed
by the caller: ``web.source_tokens.source_key``), so one name has one token
and issuing again rotates it. Only the token's SHA-256 (hex) is stored,
never the token; ``sha256`` is UNIQUE and indexed, so looking a token up is
one indexed SELECT.

Every method runs blocking SQL (call it from an executor, never on the
event loop) and raises ``plays.base.PlaysLogError`` when the store fails.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .base import PlayStore
from .legacy import mark_imported

log = logging.getLogger(__name__)

#: The file older releases kept the tokens in (``STATE/source-tokens.json``), imported once.
LEGACY_FILE = "source-tokens.json"
_COLUMNS = "name, sha256, created_at, last_used_at"
_HEX = frozenset("0123456789abcdef")


def is_sha256_hex(text: object) -> bool:
    """True for 64 lower-case hex digits (a SHA-256 digest as stored)."""
    return isinstance(text, str) and len(text) == 64 and set(text) <= _HEX


@dataclass(frozen=True)
class TokenRow:
    """One issued token, as stored: the source name, the token's SHA-256 (hex), when made and last used (UTC)."""

    source: str
    sha256: str
    created_at: str
    last_used_at: str | None = None

    def public(self) -> dict:
        """What the listing shows: everything but the hash."""
        return {"source": self.source, "created_at": self.created_at, "last_used_at": self.last_used_at}


class TokenRows:
    """The ``source_tokens`` table of ``store`` (see the module docstring)."""

    def __init__(self, store: PlayStore):
        self.store = store

    def all(self) -> list[TokenRow]:
        """Every token, by name key."""
        return [TokenRow(*r) for r in self.store.run(f"SELECT {_COLUMNS} FROM source_tokens ORDER BY name_key",
                                                     fetch="all")]

    def by_digest(self, sha256: str) -> TokenRow | None:
        """The row whose token has this SHA-256 (hex), or None (one indexed SELECT)."""
        row = self.store.run(f"SELECT {_COLUMNS} FROM source_tokens WHERE sha256 = {self.store.param}", (sha256,),
                             fetch="one")
        return None if row is None else TokenRow(*row)

    def by_key(self, key: str) -> TokenRow | None:
        """The row of the source whose name key is ``key``, or None."""
        row = self.store.run(f"SELECT {_COLUMNS} FROM source_tokens WHERE name_key = {self.store.param}", (key,),
                             fetch="one")
        return None if row is None else TokenRow(*row)

    def put(self, key: str, row: TokenRow) -> None:
        """Store ``row`` as the token of name key ``key``, replacing (rotating) the one it had."""
        p = self.store.param
        self.store.run(f"INSERT INTO source_tokens (name_key, name, sha256, created_at, last_used_at) VALUES ({p}, "
                       f"{p}, {p}, {p}, {p}) ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, "
                       "sha256 = excluded.sha256, created_at = excluded.created_at, last_used_at = NULL",
                       (key, row.source, row.sha256, row.created_at, row.last_used_at))

    def remove(self, key: str) -> TokenRow | None:
        """Delete the token of name key ``key``; the row it was, or None when there was none."""
        row = self.store.run(f"DELETE FROM source_tokens WHERE name_key = {self.store.param} RETURNING {_COLUMNS}",
                             (key,), fetch="one")
        return None if row is None else TokenRow(*row)

    def touch(self, key: str, sha256: str, last_used_at: str) -> None:
        """Record a use of the token ``sha256`` of ``key`` (a rotated or revoked token's use is dropped)."""
        p = self.store.param
        self.store.run(f"UPDATE source_tokens SET last_used_at = {p} WHERE name_key = {p} AND sha256 = {p} "
                       f"AND (last_used_at IS NULL OR last_used_at < {p})", (last_used_at, key, sha256, last_used_at))

    def check(self) -> int:
        """Raise ``ConfigError`` when a stored digest is not a SHA-256 hex digest; returns how many tokens.

        A damaged table stops the server instead of being ignored: ignoring
        it would silently unprotect the names it reserves.
        """
        rows = self.all()
        for r in rows:
            if not is_sha256_hex(r.sha256):
                raise ConfigError(f"the stream token of source {r.source!r} in the store {self.store.location} is "
                                  "not a SHA-256 hex digest; revoke and issue it again")
        return len(rows)

    def import_legacy(self, state_dir: Path, key: Callable[[str], str]) -> int:
        """Import ``STATE/source-tokens.json`` of an older release, once; returns the rows it added.

        key: the name's comparison form (``web.source_tokens.source_key``).
        A name the store has a token for already keeps the stored one. All
        rows go in one statement, then the file becomes
        ``source-tokens.json.imported``. Raises ``ConfigError`` for a
        malformed file (left in place): skipping it would silently unprotect
        every name it reserves.
        """
        path = Path(state_dir) / LEGACY_FILE
        if not path.exists():
            return 0
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = [TokenRow(str(e["source"]), str(e["sha256"]), str(e["created_at"]),
                             None if e.get("last_used_at") is None else str(e["last_used_at"])) for e in data["tokens"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the stream tokens {path} ({exc}); fix or delete it (deleting it "
                              "revokes every stream token)") from None
        for r in rows:
            if not is_sha256_hex(r.sha256):
                raise ConfigError(f"{path}: the token of source {r.source!r} is not a SHA-256 hex digest")
        added = 0
        if rows:
            p = self.store.param
            values = ", ".join([f"({p}, {p}, {p}, {p}, {p})"] * len(rows))
            args = [v for r in rows for v in (key(r.source), r.source, r.sha256, r.created_at, r.last_used_at)]
            added = len(self.store.run(f"INSERT INTO source_tokens (name_key, name, sha256, created_at, last_used_at) "
                                       f"VALUES {values} ON CONFLICT DO NOTHING RETURNING name_key", args,
                                       fetch="all"))
        mark_imported(path, added)
        return added
