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

Storage: the plays store's ``source_tokens`` table (``plays.token_rows``:
the SQLite file by default, PostgreSQL with ``--store postgresql://...``),
shared by every server worker. It holds only the SHA-256 of each token,
never the token: the token is shown once, in the answer that issued it.
A ``STATE/source-tokens.json`` left by an older release is imported into
the store on start, once, and renamed ``source-tokens.json.imported``.

Lookup: every stream ``start`` that carries a token asks the store (one
indexed SELECT by the token's SHA-256, in the I/O pool, never on the event
loop), and one without a token asks whether its name is reserved (by name
key) and reads the monitors' names. A stream start is rare next to the
windows it then sends, so a query per start costs nothing that matters, and
it is always current: a token issued on one worker works at once on every
other, and a revoked or rotated one stops at once everywhere, which an
in-memory cache refreshed every few seconds could not promise. Tokens are
256-bit random strings, so a hash without salt or stretching is enough. The
index lookup's time depends only on the SHA-256 of the guess, which tells
nothing about a stored token (finding a token from its hash is a preimage
attack); the row found is compared once more with ``hmac.compare_digest``.

``last_used_at`` is kept exactly in memory and written at most once a
minute per source (and at shutdown), so stream starts do not each cost a
write. With several workers each writes its own uses under that rule; the
store keeps the latest.

A damaged table (a digest that is not SHA-256 hex), an unusable store or a
malformed legacy file stops the server (``ConfigError`` or
``PlaysLogError``) instead of being ignored: ignoring it would silently
unprotect every reserved name.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from ..errors import AudiocopyError, ProtocolError
from ..plays.token_rows import TokenRow, TokenRows
from . import protocol
from .admin_api import require_admin
from .keys import IO_EXECUTOR, MONITORS, SETTINGS
from .responses import fail

log = logging.getLogger(__name__)

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


#: A stored token (``plays.token_rows.TokenRow``): source name, SHA-256, when made and last used.
TokenEntry = TokenRow


class SourceTokens:
    """The registry of stream tokens (module docstring).

    rows: the store's ``source_tokens`` table; clock: wall-clock seconds
    (tests move it). Every method runs blocking SQL: call it from an
    executor (it is thread-safe), never on the event loop. Store failures
    raise ``plays.base.PlaysLogError``.
    """

    def __init__(self, rows: TokenRows, clock=time.time):
        self.rows = rows
        self._clock = clock
        self._lock = threading.Lock()  # the I/O pool's threads verify at once
        self._saved_use: dict[str, float] = {}  # key -> clock() when its last_used_at was last written
        self._unsaved: dict[str, tuple[str, str]] = {}  # key -> (sha256, last_used_at) not written yet

    @classmethod
    def load(cls, rows: TokenRows, state_dir: Path | None = None, clock=time.time) -> SourceTokens:
        """The registry of the store, after importing ``state_dir``'s legacy ``source-tokens.json`` (once).

        Raises ``ConfigError`` for a malformed legacy file or a damaged
        table, ``PlaysLogError`` for a store that cannot be read.
        """
        if state_dir is not None:
            rows.import_legacy(Path(state_dir), source_key)
        n = rows.check()
        log.info("stream tokens: %d source(s) protected", n)
        return cls(rows, clock=clock)

    def entries(self) -> list[TokenEntry]:
        """Every token, sorted by source name, with the use times not written yet."""
        with self._lock:
            unsaved = dict(self._unsaved)
        out = []
        for e in self.rows.all():
            sha, used = unsaved.get(source_key(e.source), (None, None))
            out.append(replace(e, last_used_at=used) if sha == e.sha256 else e)
        return sorted(out, key=lambda e: source_key(e.source))

    def reserved(self, name: str) -> TokenEntry | None:
        """The token that protects ``name`` (compared by ``source_key``), or None."""
        return self.rows.by_key(source_key(name))

    def issue(self, name: str) -> tuple[TokenEntry, str]:
        """A new token for ``name`` (a valid name, ``check_source_name``); replaces the name's old token.

        Returns the stored entry and the token itself, which is kept nowhere.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        key = source_key(name)
        entry = TokenEntry(name, _digest(token), _utc(self._clock()))
        self.rows.put(key, entry)
        with self._lock:
            self._saved_use.pop(key, None)
            self._unsaved.pop(key, None)
        log.info("stream token issued for source %r", name)
        return entry, token

    def revoke(self, name: str) -> TokenEntry:
        """Remove the token of ``name``; ``SourceTokenError`` (404) when it has none."""
        key = source_key(name)
        entry = self.rows.remove(key)
        if entry is None:
            raise SourceTokenError(f"no stream token for source {name!r}", "unknown_source_token", 404)
        with self._lock:
            self._saved_use.pop(key, None)
            self._unsaved.pop(key, None)
        log.info("stream token of source %r revoked", entry.source)
        return entry

    def verify(self, token: str) -> TokenEntry | None:
        """The entry whose token ``token`` is, or None; records the use (module docstring: lookup)."""
        digest = _digest(token)
        found = self.rows.by_digest(digest)
        if found is None or not hmac.compare_digest(digest, found.sha256):
            return None
        key, now = source_key(found.source), self._clock()
        entry = replace(found, last_used_at=_utc(now))
        with self._lock:
            write = now - self._saved_use.get(key, float("-inf")) >= LAST_USED_SAVE_S
            if write:
                self._saved_use[key] = now
                self._unsaved.pop(key, None)
            else:
                self._unsaved[key] = (entry.sha256, entry.last_used_at)
        if write:
            self.rows.touch(key, entry.sha256, entry.last_used_at)
        return entry

    def flush(self) -> None:
        """Write use times not yet in the store (server shutdown)."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
        for key, (sha256, used) in unsaved.items():
            self.rows.touch(key, sha256, used)


#: The app's registry (``web.app`` fills it; ``web.ws`` and the handlers below read it).
SOURCE_TOKENS = web.AppKey("source_tokens", SourceTokens)


# --- admission of a /ws stream -------------------------------------------------

def authorise(start: protocol.StartRequest, tokens: SourceTokens, monitor_names: Iterable[str], *,
              required: bool) -> protocol.StartRequest:
    """The ``start`` a stream runs under, or ``ProtocolError`` (rules in the module docstring).

    start: the client's parsed ``start``; tokens: the registry;
    monitor_names: names of the URL monitors; required:
    ``--require-source-tokens``. The returned request never holds the token.
    Blocking (the registry asks the store): ``web.ws`` calls it in the I/O pool.
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

async def _io(request: web.Request, fn, *args):
    """``fn(*args)`` in the app's I/O pool: the registry's calls are SQL."""
    return await asyncio.get_running_loop().run_in_executor(request.app[IO_EXECUTOR], fn, *args)


async def list_tokens(request: web.Request) -> web.Response:
    """GET /api/sources/tokens (admin token): sources with a token, when made and last used; no secrets."""
    require_admin(request)
    entries = await _io(request, request.app[SOURCE_TOKENS].entries)
    return web.json_response({"tokens": [e.public() for e in entries],
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
    if any(source_key(m) == key for m in await request.app[MONITORS].stored_names()):
        raise fail(409, "source_is_monitor", f"{name!r} is a URL monitor's name; a stream token needs a name "
                   "of its own")
    tokens = request.app[SOURCE_TOKENS]
    rotated = await _io(request, tokens.reserved, name) is not None
    entry, token = await _io(request, tokens.issue, name)
    return web.json_response({**entry.public(), "token": token, "rotated": rotated}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    """DELETE /api/sources/tokens/{source} (admin token): the source's token stops working at once."""
    require_admin(request)
    try:
        entry = await _io(request, request.app[SOURCE_TOKENS].revoke, request.match_info["source"])
    except SourceTokenError as exc:
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"removed": entry.source})
