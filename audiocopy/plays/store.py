"""Plays: per-window detections become play events, kept in a SQLite log.

Place in the pipeline: the last stage, after ``recognizer``. A stream (a
browser microphone, a radio monitor, an uploaded file) yields one
``Detection`` every hop (0.5 s). What an operator wants to know is coarser:
"track X was on source S from 12:00:03 to 12:03:41". ``PlayTracker`` turns
the window stream into those plays, and ``PlaysLog`` stores them.

Rules (``PlayTracker``):

* Windows that match the same track extend one play. Windows overlap (2.5 s
  every 0.5 s), so a play of a 10 s excerpt is seen by ~16 windows.
* A play closes when its track has not been matched for ``gap_s`` seconds of
  stream time. A gap (rather than "the next window disagrees") keeps one
  noisy or silent window in the middle of a song from splitting it in two.
* A play needs ``min_windows`` matching windows before it is reported: a
  single window above the calibrated threshold is far more often a false
  positive than a real play, whose overlapping windows agree.

Times: ``start_s``/``end_s`` are seconds of *stream* time (from the first
sample the source sent), which is what a client sees in its own messages.
``started_at``/``ended_at`` are wall-clock UTC timestamps derived from them,
which is what a log read days later needs.

The log (``PlaysLog``) is a SQLite database in WAL mode: readers (the Plays
page, exports) never block the writer, and a play is committed the moment
it closes, so it survives a crash or restart. Each call opens its own short
connection, which makes the class safe to use from any thread (the server
calls it from an executor, never on the event loop).
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ..decision.play import Play, iso_utc
from ..errors import AudiocopyError

log = logging.getLogger(__name__)


class PlaysLogError(AudiocopyError):
    """The plays database is unreadable or a query is invalid."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS plays (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    track TEXT NOT NULL,
    source TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    confidence REAL NOT NULL,
    peak_score REAL NOT NULL,
    windows INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plays_started ON plays (started_at);
CREATE INDEX IF NOT EXISTS plays_track ON plays (track);
"""
_COLUMNS = ("id", "track", "source", "start_s", "end_s", "confidence", "peak_score", "windows",
            "started_at", "ended_at")
#: Most rows one query returns: an unbounded export of a year-long log would
#: be built in memory; callers page with ``before_id`` instead.
MAX_QUERY_ROWS = 100_000


class PlaysLog:
    """Append-only SQLite log of closed plays (WAL mode, one connection per call).

    path: the database file; its folder is created. Raises ``PlaysLogError``
    when the file exists but is not a usable plays database.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = self._connect()
            try:
                # WAL: the Plays page and exports read while streams write.
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise PlaysLogError(f"plays log {self.path} is not usable ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10.0)
        # NORMAL is durable across application crashes in WAL mode and avoids
        # an fsync per play; only a power loss can lose the last commits.
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def add(self, play: Play) -> Play:
        """Store one closed play; returns it with its ``id`` set."""
        values = (play.track, play.source, play.start_s, play.end_s, play.confidence, play.peak_score,
                  play.windows, play.started_at, play.ended_at)
        con = self._connect()
        try:
            with con:  # one transaction, committed on exit
                cur = con.execute(f"INSERT INTO plays ({', '.join(_COLUMNS[1:])}) VALUES (?,?,?,?,?,?,?,?,?)",
                                  values)
            row_id = cur.lastrowid
        finally:
            con.close()
        log.info("play %s on %s: %.1f-%.1f s (%.2f)", play.track, play.source, play.start_s, play.end_s,
                 play.confidence)
        return Play(**{**asdict(play), "id": row_id})

    def query(self, *, track: str | None = None, source: str | None = None, since: str | None = None,
              until: str | None = None, limit: int = 1000, before_id: int | None = None) -> list[Play]:
        """Plays, newest first, filtered.

        track, source: case-insensitive substring (``%`` and ``_`` are
            taken literally).
        since, until: ISO 8601 bounds on ``started_at`` (a date such as
            "2024-05-01" works too, as the stored strings sort by time).
        limit: at most this many rows (1..MAX_QUERY_ROWS); before_id: only
            rows older than this id, for paging.
        """
        if not 1 <= limit <= MAX_QUERY_ROWS:
            raise PlaysLogError(f"limit must be between 1 and {MAX_QUERY_ROWS}, got {limit}")
        where, args = [], []
        for column, value in (("track", track), ("source", source)):
            if value:
                where.append(f"{column} LIKE ? ESCAPE '\\'")
                args.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if since:
            where.append("started_at >= ?")
            args.append(_normalise_time(since))
        if until:
            where.append("started_at <= ?")
            args.append(_normalise_time(until, end=True))
        if before_id is not None:
            where.append("id < ?")
            args.append(int(before_id))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM plays"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        con = self._connect()
        try:
            rows = con.execute(sql, args).fetchall()
        finally:
            con.close()
        return [Play(**dict(zip(_COLUMNS, row))) for row in rows]

    def count(self) -> int:
        """Number of stored plays."""
        con = self._connect()
        try:
            return int(con.execute("SELECT COUNT(*) FROM plays").fetchone()[0])
        finally:
            con.close()


def _normalise_time(text: str, *, end: bool = False) -> str:
    """Validate an ISO date/time bound and bring it to the stored format."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PlaysLogError(f"not an ISO 8601 date or time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if end and len(text.strip()) == 10:  # a bare date as an upper bound means "that whole day"
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999000)
    return iso_utc(parsed.timestamp())

