"""Stream tokens: who may stream to ``/ws`` under which source name.

Place in the pipeline: admission of a ``/ws`` stream, between the parsed
``start`` (``web.protocol``) and the ``StreamSession`` (``web.ws``), plus the
admin API that issues the tokens. A play is logged under its stream's
source name, so without proof anyone who reaches ``/ws`` could log plays as
"Radio One". The admin issues one token per source name; a client that
sends it in its ``start`` (``"source_token"``: a browser's WebSocket cannot
set headers) streams under the token's name, whatever name it claims, and
its plays are ``source_verified``.

Rules at ``start`` (``authorise``):

* a valid token: the source becomes the token's name, verified;
* a token that matches none: refused (``forbidden_source_token``);
* no token, and ``--require-source-tokens``: refused (``source_token_required``);
* no token, and the claimed name is reserved, i.e. it has a token or is a
  URL monitor's name: refused (``source_reserved``), so nobody can pour
  unproven plays into a protected name;
* no token on a free name: the stream runs, its plays unverified.

Names are compared by ``source_key``: Unicode NFKC, case folded, runs of
white space made one space, so "RADIO  one" or a full-width "Ｒadio One"
cannot slip past a reserved "Radio One".

Storage: ``STATE/source-tokens.json`` (written atomically, mode 0600 like
every ``atomic_files`` temporary). It holds only the SHA-256 of each token,
never the token: the token is shown once, in the answer that issued it.
Tokens are 256-bit random strings, so a hash without salt or stretching is
enough; the lookup compares every stored hash with ``hmac.compare_digest``,
so its time tells nothing about how close a guess came. ``last_used_at`` is
kept exactly in memory and written at most once a minute per source (and at
shutdown), so stream starts do not each cost a disk sync.

A malformed file stops the server (``ConfigError``) instead of being
ignored: ignoring it would silently unprotect every reserved name.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from ..atomic_files import atomic_write_json
from ..errors import AudiocopyError, ConfigError, ProtocolError
from . import protocol
from .admin_api import require_admin
from .keys import MONITORS, SETTINGS
from .responses import fail

log = logging.getLogger(__name__)

TOKENS_FILE = "source-tokens.json"
FILE_VERSION = 1
#: Source names: as long as a ``start``'s source label may be.
MAX_NAME_CHARS = protocol.MAX_SOURCE_CHARS
#: Characters a source name may not hold: "/" and "\\" would not fit in the
#: DELETE path, and control or other unprintable characters are refused by
#: ``str.isprintable``.
FORBIDDEN_NAME_CHARS = "/\\"
#: Seconds between two writes of one source's ``last_used_at``.
LAST_USED_SAVE_S = 60.0
#: Random bytes in a token (``secrets.token_urlsafe``: 43 characters).
TOKEN_BYTES = 32


class SourceTokenError(AudiocopyError):
    """A token request the admin API refuses: ``code`` and HTTP ``status`` for the answer."""

    def __init__(self, message: str, code: str, status: int):
        self.code = code
        self.status = status
        super().__init__(message)


def source_key(name: str) -> str:
    """The form in which two source names are compared (module docstring)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def check_source_name(name: object) -> str:
    """A valid source name for a token, stripped; ``SourceTokenError`` (400 ``bad_source_name``) otherwise.

    Valid: a string of 1-``MAX_NAME_CHARS`` printable characters after
    stripping white space at both ends, without "/" or "\\".
    """
    if not isinstance(name, str):
        raise SourceTokenError("\"source\" must be a string", "bad_source_name", 400)
    name = name.strip()
    if not name:
        raise SourceTokenError("\"source\" must not be empty", "bad_source_name", 400)
    if len(name) > MAX_NAME_CHARS:
        raise SourceTokenError(f"a source name may be at most {MAX_NAME_CHARS} characters, this one has "
                               f"{len(name)}", "bad_source_name", 400)
    if not name.isprintable() or any(c in FORBIDDEN_NAME_CHARS for c in name):
        raise SourceTokenError("a source name may hold printable characters only, and no \"/\" or \"\\\"",
                               "bad_source_name", 400)
    return name


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TokenEntry:
    """One issued token, as stored: the source name, the token's SHA-256 (hex), when made and last used (UTC)."""

    source: str
    sha256: str
    created_at: str
    last_used_at: str | None = None

    def public(self) -> dict:
        """What the listing shows: everything but the hash."""
        return {"source": self.source, "created_at": self.created_at, "last_used_at": self.last_used_at}


class SourceTokens:
    """The registry of stream tokens (module docstring); used on the event loop only.

    path: the JSON file; entries: the tokens it holds; clock: wall-clock
    seconds (tests move it).
    """

    def __init__(self, path: Path, entries: Iterable[TokenEntry] = (), clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self._entries = {source_key(e.source): e for e in entries}
        self._saved_use: dict[str, float] = {}  # key -> clock() when its last_used_at was last written
        self._dirty = False  # a last_used_at newer than the file's

    @classmethod
    def load(cls, state_dir: Path, clock=time.time) -> SourceTokens:
        """The registry of a state folder (empty when it has no file); ``ConfigError`` for a malformed one."""
        path = Path(state_dir) / TOKENS_FILE
        if not path.exists():
            return cls(path, clock=clock)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = [TokenEntry(str(e["source"]), str(e["sha256"]), str(e["created_at"]),
                                  None if e.get("last_used_at") is None else str(e["last_used_at"]))
                       for e in data["tokens"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the stream tokens {path} ({exc}); fix or delete it (deleting it "
                              "revokes every stream token)") from None
        for e in entries:
            if len(e.sha256) != 64 or any(c not in "0123456789abcdef" for c in e.sha256):
                raise ConfigError(f"{path}: the token of source {e.source!r} is not a SHA-256 hex digest")
        return cls(path, entries, clock=clock)

    def entries(self) -> list[TokenEntry]:
        """Every token, sorted by source name."""
        return sorted(self._entries.values(), key=lambda e: source_key(e.source))

    def reserved(self, name: str) -> TokenEntry | None:
        """The token that protects ``name`` (compared by ``source_key``), or None."""
        return self._entries.get(source_key(name))

    def issue(self, name: str) -> tuple[TokenEntry, str]:
        """A new token for ``name`` (a valid name, ``check_source_name``); replaces the name's old token.

        Returns the stored entry and the token itself, which is kept nowhere.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        key = source_key(name)
        entry = TokenEntry(name, _digest(token), _utc(self._clock()))
        rotated = key in self._entries
        self._entries[key] = entry
        self._saved_use.pop(key, None)
        self._save()
        log.info("stream token %s for source %r", "rotated" if rotated else "issued", name)
        return entry, token

    def revoke(self, name: str) -> TokenEntry:
        """Remove the token of ``name``; ``SourceTokenError`` (404) when it has none."""
        entry = self._entries.pop(source_key(name), None)
        if entry is None:
            raise SourceTokenError(f"no stream token for source {name!r}", "unknown_source_token", 404)
        self._saved_use.pop(source_key(name), None)
        self._save()
        log.info("stream token of source %r revoked", entry.source)
        return entry

    def verify(self, token: str) -> TokenEntry | None:
        """The entry whose token ``token`` is, or None; records the use.

        Every stored hash is compared (constant time each), so the answer's
        time does not depend on which entry matched or how much of it did.
        """
        digest = _digest(token)
        found = None
        for key, entry in self._entries.items():
            if hmac.compare_digest(digest, entry.sha256):
                found = key
        if found is None:
            return None
        now = self._clock()
        entry = self._entries[found] = replace(self._entries[found], last_used_at=_utc(now))
        if now - self._saved_use.get(found, float("-inf")) >= LAST_USED_SAVE_S:
            self._saved_use[found] = now
            self._save()
        else:
            self._dirty = True
        return entry

    def flush(self) -> None:
        """Write use times not yet on disk (server shutdown)."""
        if self._dirty:
            self._save()

    def _save(self) -> None:
        atomic_write_json(self.path, {"version": FILE_VERSION, "tokens": [
            {"source": e.source, "sha256": e.sha256, "created_at": e.created_at, "last_used_at": e.last_used_at}
            for e in self.entries()]})
        self._dirty = False


#: The app's registry (``web.app`` fills it; ``web.ws`` and the handlers below read it).
SOURCE_TOKENS = web.AppKey("source_tokens", SourceTokens)


# --- admission of a /ws stream -------------------------------------------------

def authorise(start: protocol.StartRequest, tokens: SourceTokens, monitor_names: Iterable[str], *,
              required: bool) -> protocol.StartRequest:
    """The ``start`` a stream runs under, or ``ProtocolError`` (rules in the module docstring).

    start: the client's parsed ``start``; tokens: the registry;
    monitor_names: names of the URL monitors; required:
    ``--require-source-tokens``. The returned request never holds the token.
    """
    if start.source_token is not None:
        entry = tokens.verify(start.source_token)
        if entry is None:
            raise ProtocolError(protocol.FORBIDDEN_SOURCE_TOKEN, "this source token is not valid (revoked, "
                                "rotated or mistyped); ask the server's admin for the current one")
        return replace(start, source=entry.source, source_verified=True, source_token=None)
    if required:
        raise ProtocolError(protocol.SOURCE_TOKEN_REQUIRED, "this server accepts streams only with a source "
                            "token: send \"source_token\" in \"start\"")
    key = source_key(start.source)
    if tokens.reserved(start.source) is not None:
        raise ProtocolError(protocol.SOURCE_RESERVED, f"the source name {start.source!r} is protected by a "
                            "stream token: send it as \"source_token\", or stream under another name")
    if any(source_key(m) == key for m in monitor_names):
        raise ProtocolError(protocol.SOURCE_RESERVED, f"the source name {start.source!r} belongs to a URL "
                            "monitor of this server; stream under another name")
    return replace(start, source_verified=False, source_token=None)


# --- admin API -------------------------------------------------------------------

async def list_tokens(request: web.Request) -> web.Response:
    """GET /api/sources/tokens (admin token): sources with a token, when made and last used; no secrets."""
    require_admin(request)
    tokens = request.app[SOURCE_TOKENS]
    return web.json_response({"tokens": [e.public() for e in tokens.entries()],
                              "require_source_tokens": request.app[SETTINGS].require_source_tokens})


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/sources/tokens (admin token, JSON {"source"}): 201 {"source", "token", ...}, shown once.

    A second POST for the same source (by ``source_key``) rotates its token:
    the old one stops working at once. A URL monitor's name gets no token
    (409 ``source_is_monitor``): the monitor's own plays already carry it.
    """
    require_admin(request)
    try:
        body = await request.json()
    except ValueError:
        raise fail(400, "bad_json", "send a JSON object {\"source\": ...}") from None
    if not isinstance(body, dict) or "source" not in body:
        raise fail(400, "bad_request", "a stream token needs a \"source\" name")
    try:
        name = check_source_name(body["source"])
    except SourceTokenError as exc:
        raise fail(exc.status, exc.code, str(exc)) from None
    key = source_key(name)
    if any(source_key(m.name) == key for m in request.app[MONITORS].monitors.values()):
        raise fail(409, "source_is_monitor", f"{name!r} is a URL monitor's name; a stream token needs a name "
                   "of its own")
    tokens = request.app[SOURCE_TOKENS]
    rotated = tokens.reserved(name) is not None
    entry, token = tokens.issue(name)
    return web.json_response({**entry.public(), "token": token, "rotated": rotated}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    """DELETE /api/sources/tokens/{source} (admin token): the source's token stops working at once."""
    require_admin(request)
    try:
        entry = request.app[SOURCE_TOKENS].revoke(request.match_info["source"])
    except SourceTokenError as exc:
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"removed": entry.source})
