"""Talking to a Milvus server without ever hanging: one shared connection, timeouts, retries.

Place in the pipeline: under ``engines.fingerprint.index``, used only by
``milvus_index``. A recognizer that cannot reach its vector index must say so
in one line and stop waiting, whether the server is down (connection
refused), restarting (calls fail for a few seconds) or stuck (calls never
answer). Three rules give that:

* every call carries a deadline (``IndexParams.milvus_timeout_s``), and a
  whole number of seconds: pymilvus bounds its own internal retry loop only
  by an ``int`` timeout; with none, or a float, it retries an unreachable
  server 75 times, which is minutes;
* a transient failure (gRPC UNAVAILABLE, DEADLINE_EXCEEDED, a failed
  connect, a rate limit) is tried again ``milvus_retries`` times with
  doubling waits; every write the index makes is idempotent (upsert, delete
  by filter), so a try that timed out but landed does no harm when repeated;
* then one ``MilvusUnavailable`` (a ``ConfigError``) names the URI, what was
  being done and what to check. Any other server answer (a malformed
  request, a missing collection) is a ``ModelError`` at once.

Connections are shared per (URI, token) and reference-counted: the engine
loads a fresh snapshot of a database before it closes the old one, so a
search still running on the old snapshot keeps its channel.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ....errors import ConfigError, ModelError

log = logging.getLogger(__name__)

#: The environment variable holding the Milvus token ("user:password" or an API key).
TOKEN_ENV = "MILVUS_TOKEN"

#: gRPC status codes worth another try: the server is down, restarting, slow or busy.
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
#: The same situations as pymilvus words them once it has wrapped the gRPC error.
TRANSIENT_WORDS = ("fail connecting", "retry timeout", "deadline exceeded", "unavailable", "connection refused",
                   "rate limit")
AUTH_WORDS = ("unauthenticated", "permission_denied", "auth check failure", "authentication")
#: The longest wait between two tries (s): long enough to ride out a restart, short enough to notice it ended.
MAX_BACKOFF_S = 8.0


class MilvusUnavailable(ConfigError):
    """The Milvus server did not answer in time, after the retries, or refused the credentials."""


def import_pymilvus():
    """The ``pymilvus`` module, or a ``ConfigError`` saying how to install it."""
    try:
        import pymilvus
    except (ImportError, AttributeError) as exc:  # AttributeError: marshmallow 4 under environs 9
        raise ConfigError(f"the milvus index backend needs the 'milvus' extra ({exc}): "
                          "pip install -e '.[milvus]' or bash tools/setup_env.sh milvus") from None
    # pymilvus logs every failed try in ANSI colours; this module logs each
    # retry once in plain words and raises one clear error instead.
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    return pymilvus


def _codes(exc: BaseException) -> set[str]:
    """gRPC status code names found along an exception's cause chain."""
    names, seen, visited = set(), exc, set()
    # pymilvus re-raises inside its own handlers, so a chain can loop back on itself: walk each link once.
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        code = getattr(seen, "code", None)
        if callable(code):
            try:
                code = code()
            except Exception:  # noqa: BLE001 - a foreign object's code(); only the name matters
                code = None
        name = getattr(code, "name", None)
        if isinstance(name, str):
            names.add(name)
        seen = seen.__cause__ or seen.__context__
    return names


def is_transient(exc: BaseException) -> bool:
    """True for a failure another try may cure (server down, restarting, slow, busy)."""
    if _codes(exc) & TRANSIENT_CODES:
        return True
    text = str(exc).lower()
    return any(word in text for word in TRANSIENT_WORDS)


def _is_auth(exc: BaseException) -> bool:
    return bool(_codes(exc) & {"UNAUTHENTICATED", "PERMISSION_DENIED"}) or any(
        word in str(exc).lower() for word in AUTH_WORDS)


def _short(exc: BaseException) -> str:
    """The first line of an error, without gRPC's debug dump."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(exc).__name__


class MilvusLink:
    """A shared, reference-counted pymilvus connection with bounded calls.

    uri: "http://host:19530" (or "https://..."). timeout_s: deadline of one
    call in seconds (rounded up to whole seconds, see the module docstring).
    retries: tries per call on transient failures; backoff_s: the wait
    before the second try, doubled before each next one up to
    ``MAX_BACKOFF_S``. Worst case, a call gives up after about
    ``retries * (timeout_s + 3)`` seconds plus the waits (the 3 s is
    pymilvus' last internal back-off within one try).
    """

    _lock = threading.Lock()
    _shared: dict[tuple[str, str], list] = {}  # (uri, token) -> [alias, references]

    def __init__(self, uri: str, *, timeout_s: float, retries: int, backoff_s: float):
        if not uri:
            raise ConfigError("the milvus index backend needs a server URI (--milvus-uri http://HOST:19530, "
                              "or 'milvus_uri' in the database's fingerprint.json)")
        self.pymilvus = import_pymilvus()
        self.uri = uri
        self.timeout_s = max(1, math.ceil(timeout_s))
        self.retries, self.backoff_s = max(1, int(retries)), max(0.0, float(backoff_s))
        self._key = (uri, os.environ.get(TOKEN_ENV, ""))
        self._errors = (self.pymilvus.MilvusException, *self._grpc_errors())
        self.alias = self._acquire()
        self._closed = False

    @staticmethod
    def _grpc_errors() -> tuple[type, ...]:
        import grpc

        return (grpc.RpcError, grpc.FutureTimeoutError)

    def _acquire(self) -> str:
        with self._lock:
            entry = self._shared.get(self._key)
            if entry is not None:
                entry[1] += 1
                return entry[0]
            alias = f"audiocopy-{uuid.uuid4().hex[:8]}"
            self.call("connect", self._connect, alias)
            self._shared[self._key] = [alias, 1]
            return alias

    def _connect(self, alias: str, *, timeout: int) -> None:
        conns = self.pymilvus.connections
        kwargs = {"token": self._key[1]} if self._key[1] else {}
        try:
            conns.connect(alias, uri=self.uri, timeout=timeout, **kwargs)
        except BaseException:
            conns.remove_connection(alias)  # a half-made alias must not be taken for a live one
            raise
        # A proxy that accepts connections but never answers fails here, within the deadline.
        self.pymilvus.utility.get_server_version(using=alias, timeout=timeout)

    def call(self, what: str, fn: Callable[..., Any], *args, timeout_s: float | None = None, **kwargs) -> Any:
        """``fn(*args, timeout=..., **kwargs)``, tried again on transient failures.

        what: the operation in words, for the log and the error. timeout_s:
        this call's deadline when it needs longer than the link's (index
        building, loading). Raises ``MilvusUnavailable`` after the last try
        or on refused credentials, ``ModelError`` on any other refusal.
        """
        timeout = max(1, math.ceil(timeout_s)) if timeout_s else self.timeout_s
        wait = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                return fn(*args, timeout=timeout, **kwargs)
            except self._errors as exc:
                if _is_auth(exc):
                    raise MilvusUnavailable(f"the Milvus server at {self.uri} refused the credentials ({_short(exc)}); "
                                            f"set {TOKEN_ENV} to 'user:password' or an API key") from None
                if not is_transient(exc):
                    raise ModelError(f"Milvus at {self.uri}: {what} failed: {_short(exc)}") from None
                if attempt == self.retries:
                    raise MilvusUnavailable(
                        f"the Milvus server at {self.uri} did not answer ({what}: {_short(exc)}) after {attempt} "
                        f"tries of {timeout} s; check that it is running and reachable from here (the URI is "
                        "--milvus-uri, stored as 'milvus_uri' in DB/fingerprint.json) and that its proxy "
                        "port is open") from None
                log.warning("Milvus at %s: %s failed (%s); try %d of %d in %.1f s", self.uri, what, _short(exc),
                            attempt + 1, self.retries, wait)
                time.sleep(wait)
                wait = min(2 * wait, MAX_BACKOFF_S)
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        """Drop this reference; the last one disconnects."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        with self._lock:
            entry = self._shared.get(self._key)
            if entry is None or entry[0] != self.alias:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._shared[self._key]
                try:
                    self.pymilvus.connections.disconnect(self.alias)
                    self.pymilvus.connections.remove_connection(self.alias)
                except self._errors as exc:  # closing a dead server's channel must not fail a shutdown
                    log.debug("closing the Milvus connection to %s: %s", self.uri, exc)
