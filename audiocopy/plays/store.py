"""The plays log in SQLite: the embedded default store, one file next to the server's other state.

Place in the pipeline: the last stage, after the stream decision
(``decision.stream``) and the transports that know where the audio came
from (``web.session`` hands plays over as ``plays.record.PlayRecord``).
The web API, the exports (``plays.export``) and the CLI read it. It is one
of the two ``plays.base.PlayStore`` backends (the other is
``plays.postgres``); the rules of the store, and the SQL that both run,
are in ``plays.base``.

A play is written three ways, always to the row of its ``key``:

* **open**: when the decision opens it, then again as it grows (the
  server checkpoints open plays every few seconds of stream time). An
  update of an open play is ignored once its row is closed or recovered,
  or when it carries fewer windows than the row: writes run on a thread
  pool, so an older checkpoint can arrive after a newer one or after the
  close, and must not undo them;
* **closed**: when the decision ends it; this replaces the open row;
* **recovered**: ``recover`` closes rows still open whose process died (a
  crash, ``kill -9``, a power cut) before the play ended: at start-up the
  worker's own previous run's (``plays.base.PlayStore.recover``,
  ``web.workers``). The play is kept as far as its last update: its end is
  the latest support the server had written.

``totals`` sums plays and seconds per track or source in SQL, so a report
over a year of plays never loads its rows into Python.

The ``sources`` table keeps, per source name and kind, when it was first and
last seen and how many windows were answered and dropped, so a loss of
windows under load is on record next to the plays it could have hidden.

Storage: one SQLite file in WAL mode, so readers (the Plays page, exports)
never block the writer. Each thread has its own connection, opened on its
first call and kept (``sqlite3`` connections belong to one thread), which
makes the class safe to use from any thread; the server calls it from an
executor, never on the event loop. Opening a connection per call cost as
much as the write itself: with 300 live streams checkpointing their plays,
the store's threads spent a third of their time connecting. The schema is
versioned and migrated in place on open (``plays.schema``).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from .base import MAX_QUERY_ROWS, TOTAL_KEYS, PlaysLogError, PlayStore
from .schema import SCHEMA_VERSION, SchemaError, migrate

__all__ = ["MAX_QUERY_ROWS", "TOTAL_KEYS", "PlaysLog", "PlaysLogError"]

log = logging.getLogger(__name__)


class PlaysLog(PlayStore):
    """SQLite log of plays, open and closed (WAL mode, one connection per thread).

    path: the database file; its folder is created, and an older schema is
    migrated in place. Raises ``PlaysLogError`` when the file exists but is
    not a usable plays database, or was written by a newer release.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            con = self._connect()
            try:
                # WAL: the Plays page and exports read while streams write.
                con.execute("PRAGMA journal_mode=WAL")
                was = migrate(con, name=f"plays log {self.path}")
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise PlaysLogError(f"plays log {self.path} is not usable ({exc})") from None
        except SchemaError as exc:
            raise PlaysLogError(str(exc)) from None
        if was != SCHEMA_VERSION:
            log.info("plays log %s: schema version %d -> %d", self.path, was, SCHEMA_VERSION)

    def _connect(self) -> sqlite3.Connection:
        # Autocommit: every write is one statement, atomic on its own.
        con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        # NORMAL is durable across application crashes in WAL mode and avoids
        # an fsync per write; only a power loss can lose the last commits.
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _connection(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on its first call (module docstring)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def _run(self, sql: str, args: Sequence = (), *, fetch: str | None = None):
        try:
            cur = self._connection().execute(sql, args)
            try:
                if fetch == "one":
                    return cur.fetchone()
                if fetch == "all":
                    return cur.fetchall()
                return cur.rowcount
            finally:
                cur.close()  # ends the statement, and with it the read snapshot, before the next call
        except sqlite3.DatabaseError as exc:
            # A broken connection is not reused: the next call opens a fresh one.
            con = getattr(self._local, "con", None)
            self._local.con = None
            if con is not None:
                con.close()
            raise PlaysLogError(f"plays log {self.path}: {exc}") from None
