"""The webhook outbox: configured receivers and the deliveries still owed to them, in SQLite.

Place in the pipeline: under ``web.webhooks``. A closed play becomes one
delivery row per configured webhook *before* any attempt is made, so a
receiver that is down, a timeout or a server restart never loses a play:
the dispatcher works from this table, not from memory, and on start it
simply resumes with the rows still ``pending``.

A delivery row holds the exact bytes of the body (signatures are computed
over them at each attempt), how many attempts were made, when the next one
is due and the last error. Its life:

* ``pending``: waiting for its next attempt (``next_at``, epoch seconds);
* delivered: the row is deleted at once, so the table stays small however
  many plays the server logs;
* ``failed``: the dispatcher gave up after ``webhook_max_attempts``. The
  newest ``KEEP_FAILED`` of those stay for the admin to inspect
  (``GET /api/webhooks``); older ones are deleted.

Removing a webhook deletes its pending deliveries too: an admin who removes
a receiver expects the server to stop calling it.

Storage: one SQLite file (``STATE/webhooks.sqlite``) in WAL mode with
``synchronous=FULL`` (a delivery that was accepted must survive a power
cut; the write rate is one row per closed play and receiver). Each call
opens its own short connection, so the class is safe from any thread; the
server calls it in its I/O executor, never on the event loop.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiocopyError

#: Given-up deliveries kept for inspection; older ones are deleted.
KEEP_FAILED = 200
PENDING, FAILED = "pending", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
"""


class OutboxError(AudiocopyError):
    """The webhook outbox file is unreadable or not an outbox."""


@dataclass(frozen=True)
class Webhook:
    """A configured receiver: every closed play is POSTed to ``url``."""

    id: str
    url: str
    created_at: float


@dataclass(frozen=True)
class Delivery:
    """One body owed to one receiver (see the module docstring for ``status``).

    attempts: attempts made so far; next_at: epoch seconds of the next one.
    """

    id: str
    webhook_id: str
    url: str
    event: str
    body: bytes
    status: str
    attempts: int
    next_at: float
    last_error: str | None
    created_at: float


class WebhookOutbox:
    """SQLite store of webhooks and deliveries (one connection per call, any thread).

    path: the database file; its folder is created. Raises ``OutboxError``
    when the file exists but is not a usable outbox.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = self._connect()
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open the webhook outbox {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        con.execute("PRAGMA synchronous=FULL")
        return con

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        con = self._connect()
        try:
            with con:  # one transaction
                return con.execute(sql, args).fetchall()
        finally:
            con.close()

    # --- webhooks ------------------------------------------------------------------

    def add_webhook(self, url: str) -> Webhook:
        """Store a receiver URL (already checked by the caller); ``OutboxError`` if it is there already."""
        hook = Webhook(uuid.uuid4().hex[:12], url, time.time())
        try:
            self._run("INSERT INTO webhooks (id, url, created_at) VALUES (?, ?, ?)",
                      (hook.id, hook.url, hook.created_at))
        except sqlite3.IntegrityError:
            raise OutboxError("this webhook URL is configured already") from None
        return hook

    def remove_webhook(self, webhook_id: str) -> bool:
        """Forget a receiver and its pending deliveries; False when there was no such webhook."""
        con = self._connect()
        try:
            with con:
                gone = con.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount
                con.execute("DELETE FROM deliveries WHERE webhook_id = ? AND status = ?", (webhook_id, PENDING))
        finally:
            con.close()
        return gone > 0

    def webhooks(self) -> list[Webhook]:
        """Every receiver, oldest first."""
        return [Webhook(*row) for row in self._run("SELECT id, url, created_at FROM webhooks ORDER BY created_at")]

    # --- deliveries ----------------------------------------------------------------

    def enqueue(self, hooks: list[Webhook], event: str, body: bytes, now: float | None = None) -> list[str]:
        """One pending delivery of ``body`` per receiver, due at once; returns the ids of those queued.

        A receiver removed meanwhile gets none: the row is only inserted while
        its webhook exists (one statement, so a removal cannot slip between
        the check and the insert).
        """
        now = time.time() if now is None else now
        rows = [(uuid.uuid4().hex, h.id, h.url, event, body, PENDING, 0, now, None, now, now, h.id) for h in hooks]
        con = self._connect()
        try:
            with con:
                queued = [r[0] for r in rows if con.execute(
                    "INSERT INTO deliveries (id, webhook_id, url, event, body, status, attempts, next_at, last_error, "
                    "created_at, updated_at) SELECT ?,?,?,?,?,?,?,?,?,?,? "
                    "WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = ?)", r).rowcount]
        finally:
            con.close()
        return queued

    def due(self, now: float, limit: int) -> list[Delivery]:
        """Up to ``limit`` pending deliveries whose next attempt is due at ``now``, oldest due first."""
        rows = self._run(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = ? AND next_at <= ? "
                         "ORDER BY next_at LIMIT ?", (PENDING, now, limit))
        return [Delivery(*row) for row in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending delivery is due (epoch seconds); None when none is pending."""
        return self._run("SELECT MIN(next_at) FROM deliveries WHERE status = ?", (PENDING,))[0][0]

    def delivered(self, delivery_id: str) -> None:
        """The receiver answered 2xx: the row is done and deleted."""
        self._run("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    def retry_later(self, delivery_id: str, attempts: int, next_at: float, error: str) -> None:
        """A failed attempt that will be tried again at ``next_at``."""
        self._run("UPDATE deliveries SET attempts = ?, next_at = ?, last_error = ?, updated_at = ? "
                  "WHERE id = ? AND status = ?", (attempts, next_at, error, time.time(), delivery_id, PENDING))

    def give_up(self, delivery_id: str, attempts: int, error: str) -> None:
        """The last allowed attempt failed: mark the row failed and trim old failures."""
        con = self._connect()
        try:
            with con:
                con.execute("UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, updated_at = ? "
                            "WHERE id = ?", (FAILED, attempts, error, time.time(), delivery_id))
                con.execute("DELETE FROM deliveries WHERE status = ? AND id NOT IN (SELECT id FROM deliveries "
                            "WHERE status = ? ORDER BY updated_at DESC LIMIT ?)", (FAILED, FAILED, KEEP_FAILED))
        finally:
            con.close()

    def counts(self) -> dict[str, int]:
        """Rows per status: {"pending": n, "failed": n}."""
        out = dict.fromkeys((PENDING, FAILED), 0)
        for status, n in self._run("SELECT status, COUNT(*) FROM deliveries GROUP BY status"):
            out[status] = n
        return out

    def failures(self, limit: int = 20) -> list[Delivery]:
        """The newest given-up deliveries (for the admin)."""
        rows = self._run(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = ? ORDER BY updated_at DESC "
                         "LIMIT ?", (FAILED, limit))
        return [Delivery(*row) for row in rows]


_DELIVERY_COLUMNS = "id, webhook_id, url, event, body, status, attempts, next_at, last_error, created_at"
