"""The webhook outbox in the store: configured receivers and the deliveries still owed to them.

Place in the pipeline: under ``web.webhooks``. A closed play becomes one
delivery row per configured webhook *before* any attempt is made, so a
receiver that is down, a timeout or a server restart never loses a play:
the dispatcher works from this table, not from memory, and on start it
simply resumes with the rows still ``pending``. The tables are ``webhooks``
and ``deliveries`` of the plays store's schema (version 3,
``plays.schema``), in the same SQLite file or PostgreSQL database as the
plays, so every server worker shares one outbox.

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

Several dispatchers (one per worker) share the table, so a delivery is
*claimed* before it is attempted: one statement moves the ``next_at`` of
up to ``limit`` due rows ``claim_s`` into the future and returns them
(``UPDATE ... WHERE id IN (SELECT ... LIMIT n) AND <still due> RETURNING``).
SQLite runs writes one at a time, so two claims never overlap; in
PostgreSQL the sub-select takes ``FOR UPDATE SKIP LOCKED`` (a second
dispatcher takes other rows instead of waiting) and the outer condition is
re-checked on the row a concurrent claim just changed, so it is skipped.
Each due delivery is thus attempted by one dispatcher at a time. A worker
that dies mid-attempt leaves its claim to expire: the delivery is due again
``claim_s`` later and another worker retries it, so delivery is at least
once, and a receiver drops a repeat by its delivery id (the same on every
attempt).

Every statement is atomic on its own (``PlayStore.run``), and every method
runs blocking SQL: the server calls them in its I/O executor, never on the
event loop. Store failures raise ``plays.base.PlaysLogError``.
"""
from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiocopyError
from .base import PlayStore
from .legacy import mark_imported

log = logging.getLogger(__name__)

#: Given-up deliveries kept for inspection; older ones are deleted.
KEEP_FAILED = 200
PENDING, FAILED = "pending", "failed"
#: The file older releases kept the outbox in (``STATE/webhooks.sqlite``), imported once.
LEGACY_FILE = "webhooks.sqlite"
_DELIVERY_COLUMNS = "id, webhook_id, url, event, body, status, attempts, next_at, last_error, created_at"
_ALL_COLUMNS = _DELIVERY_COLUMNS + ", updated_at"
#: Rows per statement when importing a legacy outbox (SQLite allows 32,766 parameters in one statement).
_IMPORT_ROWS = 500


class OutboxError(AudiocopyError):
    """A webhook cannot be stored (its URL is configured already), or a legacy outbox is unreadable."""


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


def _delivery(row: tuple) -> Delivery:
    values = list(row)
    values[4] = bytes(values[4])  # a driver may hand a blob over as a memoryview
    return Delivery(*values)


class WebhookOutbox:
    """The ``webhooks`` and ``deliveries`` tables of ``store`` (see the module docstring)."""

    def __init__(self, store: PlayStore):
        self.store = store
        self._p = store.param
        # PostgreSQL ("%s" is its driver's marker) locks the rows a claim picks; SQLite has no row locks and
        # needs none (it runs one write at a time).
        self._skip_locked = " FOR UPDATE SKIP LOCKED" if store.param == "%s" else ""

    # --- webhooks ------------------------------------------------------------------

    def add_webhook(self, url: str) -> Webhook:
        """Store a receiver URL (already checked by the caller); ``OutboxError`` if it is there already."""
        hook = Webhook(uuid.uuid4().hex[:12], url, time.time())
        p = self._p
        got = self.store.run(f"INSERT INTO webhooks (id, url, created_at) VALUES ({p}, {p}, {p}) "
                             "ON CONFLICT DO NOTHING RETURNING id", (hook.id, hook.url, hook.created_at), fetch="one")
        if got is None:
            raise OutboxError("this webhook URL is configured already")
        return hook

    def remove_webhook(self, webhook_id: str) -> bool:
        """Forget a receiver and its pending deliveries; False when there was no such webhook.

        The webhook goes first: from then on ``enqueue`` adds no row for it,
        so the second statement leaves none behind.
        """
        gone = self.store.run(f"DELETE FROM webhooks WHERE id = {self._p}", (webhook_id,))
        self.store.run(f"DELETE FROM deliveries WHERE webhook_id = {self._p} AND status = {self._p}",
                       (webhook_id, PENDING))
        return gone > 0

    def webhooks(self) -> list[Webhook]:
        """Every receiver, oldest first."""
        return [Webhook(*row) for row in self.store.run("SELECT id, url, created_at FROM webhooks "
                                                        "ORDER BY created_at, id", fetch="all")]

    # --- deliveries ----------------------------------------------------------------

    def enqueue(self, hooks: list[Webhook], event: str, body: bytes, now: float | None = None) -> list[str]:
        """One pending delivery of ``body`` per receiver, due at once; returns the ids of those queued.

        One statement for every receiver (all rows or none). A receiver
        removed meanwhile gets none: a row is only inserted while its
        webhook exists, checked in the same statement, so a removal cannot
        slip between the check and the insert.
        """
        if not hooks:
            return []
        now = time.time() if now is None else now
        p = self._p
        values = ", ".join([f"({', '.join([p] * 11)})"] * len(hooks))
        args = [v for h in hooks for v in (uuid.uuid4().hex, h.id, h.url, event, body, PENDING, 0, now, None, now, now)]
        cols = ", ".join(f"v.column{i}" for i in range(1, 12))
        rows = self.store.run(f"INSERT INTO deliveries ({_ALL_COLUMNS}) SELECT {cols} FROM (VALUES {values}) AS v "
                              "WHERE EXISTS (SELECT 1 FROM webhooks WHERE webhooks.id = v.column2) RETURNING id",
                              args, fetch="all")
        return [r[0] for r in rows]

    def claim(self, now: float, limit: int, claim_s: float) -> list[Delivery]:
        """Take up to ``limit`` deliveries due at ``now``, oldest due first, for ``claim_s`` seconds.

        Their ``next_at`` moves to ``now + claim_s``, so no other dispatcher
        takes them meanwhile; the caller then records the attempt's result
        (``delivered``, ``retry_later`` or ``give_up``). Rows come back
        with the ``next_at`` they were due at.
        """
        p = self._p
        rows = self.store.run(
            f"UPDATE deliveries SET next_at = {p} WHERE id IN (SELECT id FROM deliveries WHERE status = {p} "
            f"AND next_at <= {p} ORDER BY next_at, id LIMIT {p}{self._skip_locked}) "
            f"AND status = {p} AND next_at <= {p} RETURNING {_DELIVERY_COLUMNS}",
            (now + claim_s, PENDING, now, limit, PENDING, now), fetch="all")
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.created_at, d.id))

    def due(self, now: float, limit: int) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due at ``now``, oldest due first (a look, claiming nothing)."""
        p = self._p
        rows = self.store.run(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = {p} AND next_at <= {p} "
                              f"ORDER BY next_at, id LIMIT {p}", (PENDING, now, limit), fetch="all")
        return [_delivery(r) for r in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending delivery is due (epoch seconds); None when none is pending."""
        return self.store.run(f"SELECT MIN(next_at) FROM deliveries WHERE status = {self._p}", (PENDING,),
                              fetch="one")[0]

    def delivered(self, delivery_id: str) -> None:
        """The receiver answered 2xx: the row is done and deleted."""
        self.store.run(f"DELETE FROM deliveries WHERE id = {self._p}", (delivery_id,))

    def retry_later(self, delivery_id: str, attempts: int, next_at: float, error: str) -> None:
        """A failed attempt that will be tried again at ``next_at``."""
        p = self._p
        self.store.run(f"UPDATE deliveries SET attempts = {p}, next_at = {p}, last_error = {p}, updated_at = {p} "
                       f"WHERE id = {p} AND status = {p}", (attempts, next_at, error, time.time(), delivery_id,
                                                            PENDING))

    def give_up(self, delivery_id: str, attempts: int, error: str) -> None:
        """The last allowed attempt failed: mark the row failed and trim old failures."""
        p = self._p
        self.store.run(f"UPDATE deliveries SET status = {p}, attempts = {p}, last_error = {p}, updated_at = {p} "
                       f"WHERE id = {p}", (FAILED, attempts, error, time.time(), delivery_id))
        self.store.run(f"DELETE FROM deliveries WHERE status = {p} AND id NOT IN (SELECT id FROM deliveries "
                       f"WHERE status = {p} ORDER BY updated_at DESC, id LIMIT {p})", (FAILED, FAILED, KEEP_FAILED))

    def counts(self) -> dict[str, int]:
        """Rows per status: {"pending": n, "failed": n}."""
        out = dict.fromkeys((PENDING, FAILED), 0)
        for status, n in self.store.run("SELECT status, COUNT(*) FROM deliveries GROUP BY status", fetch="all"):
            out[status] = int(n)
        return out

    def failures(self, limit: int = 20) -> list[Delivery]:
        """The newest given-up deliveries (for the admin)."""
        p = self._p
        rows = self.store.run(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status = {p} "
                              f"ORDER BY updated_at DESC, id LIMIT {p}", (FAILED, limit), fetch="all")
        return [_delivery(r) for r in rows]

    # --- an older release's outbox ---------------------------------------------------

    def import_legacy(self, state_dir: Path) -> tuple[int, int]:
        """Import ``STATE/webhooks.sqlite`` of an older release, once; returns (webhooks, deliveries) added.

        Webhooks first, then the deliveries (pending and failed, with their
        attempts and due times, so pending ones resume where they were),
        each table in one statement (deliveries in batches of
        ``_IMPORT_ROWS``); rows whose id (or webhook URL) the store has
        already are kept as stored. Then the file becomes
        ``webhooks.sqlite.imported``. Raises ``OutboxError`` for a file that
        is not a readable outbox (left in place).
        """
        path = Path(state_dir) / LEGACY_FILE
        if not path.exists():
            return 0, 0
        try:
            con = sqlite3.connect(path, timeout=10.0)
            try:
                hooks = con.execute("SELECT id, url, created_at FROM webhooks").fetchall()
                deliveries = con.execute(f"SELECT {_ALL_COLUMNS} FROM deliveries").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot import the webhook outbox {path}: {exc}; fix or move it away (its pending "
                              "deliveries would be lost)") from None
        added = [self._insert_all("webhooks", "id, url, created_at", hooks)]
        added.append(sum(self._insert_all("deliveries", _ALL_COLUMNS, deliveries[i:i + _IMPORT_ROWS])
                         for i in range(0, len(deliveries), _IMPORT_ROWS)))
        mark_imported(path, sum(added))
        return added[0], added[1]

    def _insert_all(self, table: str, columns: str, rows: list[tuple]) -> int:
        """Insert ``rows`` in one statement, keeping rows already stored; returns how many were added."""
        if not rows:
            return 0
        width = len(rows[0])
        values = ", ".join([f"({', '.join([self._p] * width)})"] * len(rows))
        return len(self.store.run(f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT DO NOTHING "
                                  "RETURNING id", [v for r in rows for v in r], fetch="all"))
