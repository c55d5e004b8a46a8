"""The URL monitors' definitions in the store: one row per monitor, shared by every server worker.

Place in the pipeline: under ``web.monitors``, which keeps each running
monitor's live state (connection, counts, recent plays) in memory and only
its definition here: ``id``, ``name``, ``url`` and ``created_at``. The table
is ``monitors`` of the plays store's schema (version 3, ``plays.schema``),
in the same SQLite file or PostgreSQL database as the plays, so a monitor
added on one worker is known to every worker.

Names are unique case-insensitively: plays are logged under the monitor's
name, so two monitors with one name could not be told apart. ``name_key``
(the name stripped and case folded) is UNIQUE in the table, so the database
decides between two workers adding the same name at once: the insert is
one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` statement, and exactly
one of them gets its row back. Ids are random and never change, so plays
and leases that name a monitor by id keep naming it.

Every method runs blocking SQL (call it from an executor, never on the
event loop) and raises ``plays.base.PlaysLogError`` when the store fails.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..decision.play import iso_utc
from .base import PlayStore
from .legacy import mark_imported

log = logging.getLogger(__name__)

#: The file older releases kept monitors in (``STATE/monitors.json``), imported once.
LEGACY_FILE = "monitors.json"
_COLUMNS = "id, name, url, created_at"


def name_key(name: str) -> str:
    """The form in which two monitor names are compared (stripped, case folded)."""
    return name.strip().casefold()


@dataclass(frozen=True)
class MonitorRow:
    """A monitor's definition as stored. created_at: ISO 8601 UTC text."""

    id: str
    name: str
    url: str
    created_at: str


class MonitorRows:
    """The ``monitors`` table of ``store`` (see the module docstring)."""

    def __init__(self, store: PlayStore):
        self.store = store

    def all(self) -> list[MonitorRow]:
        """Every monitor, oldest first (ties by id, so every worker lists them in one order)."""
        rows = self.store.run(f"SELECT {_COLUMNS} FROM monitors ORDER BY created_at, id", fetch="all")
        return [MonitorRow(*row) for row in rows]

    def get(self, monitor_id: str) -> MonitorRow | None:
        """The monitor with this id, or None."""
        row = self.store.run(f"SELECT {_COLUMNS} FROM monitors WHERE id = {self.store.param}", (monitor_id,),
                             fetch="one")
        return None if row is None else MonitorRow(*row)

    def names(self) -> list[str]:
        """Every monitor's name (the names that streams may not claim, ``web.source_tokens``)."""
        return [row[0] for row in self.store.run("SELECT name FROM monitors", fetch="all")]

    def count(self) -> int:
        """How many monitors the store holds."""
        return int(self.store.run("SELECT COUNT(*) FROM monitors", fetch="one")[0])

    def add(self, monitor_id: str, name: str, url: str, created_at: str | None = None) -> MonitorRow | None:
        """Store a new monitor; None when its name (compared by ``name_key``) or id is taken.

        One statement: of two workers adding one name at once, exactly one
        gets the row.
        """
        row = MonitorRow(monitor_id, name, url, created_at or iso_utc(time.time()))
        p = self.store.param
        got = self.store.run(f"INSERT INTO monitors (id, name, name_key, url, created_at) VALUES ({p}, {p}, {p}, "
                             f"{p}, {p}) ON CONFLICT DO NOTHING RETURNING id",
                             (row.id, row.name, name_key(row.name), row.url, row.created_at), fetch="one")
        return row if got is not None else None

    def remove(self, monitor_id: str) -> bool:
        """Delete a monitor; False when there was none with this id."""
        return self.store.run(f"DELETE FROM monitors WHERE id = {self.store.param}", (monitor_id,)) > 0

    def import_legacy(self, state_dir: Path) -> int:
        """Import ``STATE/monitors.json`` of an older release, once; returns the rows it added.

        The file is a JSON list of {"id", "name", "url"}. A name that an
        earlier entry of the file holds already is renamed "NAME (ID)" (old
        releases allowed duplicates; the loader renamed them the same way).
        Entries whose id or name the store has already are kept as stored.
        All rows go in one statement, then the file becomes
        ``monitors.json.imported``. An unreadable file is logged and left in
        place, untouched: its monitors do not start, and nothing is lost.
        """
        path = Path(state_dir) / LEGACY_FILE
        if not path.exists():
            return 0
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(saved, list):
                raise TypeError(f"a list of monitors was expected, not {type(saved).__name__}")
            entries = [(str(m["id"]), str(m["name"]), str(m["url"])) for m in saved]
            base = path.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot import the monitors of %s (%s); the file is left as it is", path, exc)
            return 0
        rows, keys = [], set()
        for i, (mid, name, url) in enumerate(entries):
            if name_key(name) in keys:
                log.error("monitor %s: the name %r is taken; renamed to %r", mid, name, f"{name} ({mid})")
                name = f"{name} ({mid})"
            keys.add(name_key(name))
            # One millisecond apart, so the file's order stays the listing's order.
            rows.append((mid, name, name_key(name), url, iso_utc(base + i / 1000)))
        added = 0
        if rows:
            p = self.store.param
            values = ", ".join([f"({p}, {p}, {p}, {p}, {p})"] * len(rows))
            added = len(self.store.run(f"INSERT INTO monitors (id, name, name_key, url, created_at) VALUES {values} "
                                       "ON CONFLICT DO NOTHING RETURNING id", [v for r in rows for v in r],
                                       fetch="all"))
            if added < len(rows):
                log.warning("%s: %d monitor(s) already in the store (same id or name) kept as stored", path,
                            len(rows) - added)
        mark_imported(path, added)
        return added
