"""The plays store's interface, and everything its two databases share: checks, filters and SQL.

Place in the pipeline: under the server (``web.state.PlaySink``, the API's
plays routes) and above the two implementations: ``plays.store.PlaysLog``
(SQLite, one file, the embedded default) and ``plays.postgres.PostgresStore``
(a PostgreSQL server, for a store that outlives one machine).
``plays.factory.open_store`` picks one from a path or a ``postgresql://`` URL.

Why one base class rather than two free-standing ones. The rules of the
store (an open update never reopens or shrinks a closed row, recovery closes
what a dead process left open, totals leave open plays out, filters take
``%`` and ``_`` literally) are written once, here, as SQL that both
databases run: ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE ...
RETURNING`` means the same in SQLite (3.35 and later) and PostgreSQL. A
backend supplies only its dialect (parameter marker, case-insensitive
``LIKE``, how text sorts) and how it runs one statement (``_run``). So the
same behavioural tests hold both to the same rules (tests/test_plays.py
runs each of them against each backend).

Times are kept as ISO 8601 text in UTC with a "Z" ("2024-05-01T10:00:00.000Z")
in both databases: the records carry that text, one format sorts by time
as text, and the bounds of a query are brought to it (``normalise_time``),
so the same filter selects the same rows in either.
"""
from __future__ import annotations

import abc
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone

from ..decision.play import Play, iso_utc
from ..errors import AudiocopyError
from .record import STATUSES, UNVERIFIED_WS, PlayOrigin, PlayRecord, SourceReport

log = logging.getLogger(__name__)


class PlaysLogError(AudiocopyError):
    """The plays store is unreachable or unreadable, or a query is invalid."""


#: Columns of a play row, in ``PlayRecord``'s names.
COLUMNS = ("id", "key", "status", "track", "source", "source_kind", "monitor_id", "source_verified", "start_s",
           "end_s", "confidence", "peak_score", "windows", "started_at", "ended_at", "updated_at", "track_start_s",
           "track_end_s", "time_scale", "pitch_semitones", "alteration", "worker_id")
_WRITTEN = COLUMNS[1:]  # everything but the row id
_UPDATED = tuple(c for c in _WRITTEN if c != "key")
#: Columns of a source row (``PlayStore.sources`` returns dicts with these keys).
SOURCE_COLUMNS = ("name", "kind", "monitor_id", "first_seen", "last_seen", "streams", "windows_answered",
                  "windows_dropped")
#: What ``totals`` can group by (column names, so never taken from a request as they are).
TOTAL_KEYS = ("track", "source")
#: Most rows one query returns: an unbounded export of a year-long log would
#: be built in memory; callers page with ``before_id`` instead.
MAX_QUERY_ROWS = 100_000


class PlayStore(abc.ABC):
    """The plays store: open plays upserted by key, recovery, sources, queries and totals.

    Every method may be called from any thread (the server calls them from
    its I/O executor, never on the event loop) and raises ``PlaysLogError``
    for an invalid argument or a database that cannot be used.

    A backend sets ``location`` (where the store is, with no secret in it:
    for logs and errors), the dialect attributes below, and implements
    ``_run`` and ``close``.
    """

    #: Where the store is, safe to log (a file path, or a URL without its password).
    location: str = ""
    #: The server worker whose writes go through this instance (``web.workers``): every play it
    #: writes without a ``worker_id`` of its own gets this one. None: a single process, no worker.
    worker_id: str | None = None
    #: The parameter marker of the driver ("?" for sqlite3, "%s" for psycopg).
    _param = "?"
    #: Case-insensitive LIKE (SQLite's LIKE already is, for ASCII; PostgreSQL's is not).
    _ilike = "LIKE"
    #: Appended to a text column in ORDER BY, so ties sort the same in both (byte order).
    _bytewise = ""

    @abc.abstractmethod
    def _run(self, sql: str, args: Sequence = (), *, fetch: str | None = None):
        """Run one statement on its own (autocommit); fetch: None, "one", "all" or "rowcount"."""

    def close(self) -> None:
        """Let go of the store's connections (a store used after this reconnects)."""

    # --- the store's other tables ---------------------------------------------------

    @property
    def param(self) -> str:
        """The driver's parameter marker, for SQL written by the store's other tables.

        Those are kept by ``plays.monitor_rows``, ``plays.token_rows``,
        ``plays.outbox_rows`` and ``plays.leases``.
        """
        return self._param

    def run(self, sql: str, args: Sequence = (), *, fetch: str | None = None):
        """Run one statement on its own connection, autocommit (one statement is atomic on its own).

        For the modules that keep the store's other tables (monitors, stream
        tokens, the webhook outbox, workers and their leases) in the same
        database as the plays, through the same connections and errors.
        fetch: None (returns the row count), "one" or "all". Raises
        ``PlaysLogError``.
        """
        return self._run(sql, args, fetch=fetch)

    # --- writing plays ------------------------------------------------------------

    def add(self, play: Play, origin: PlayOrigin = UNVERIFIED_WS) -> PlayRecord:
        """Store one play (open or closed, as ``play.open`` says); returns it as stored, ``id`` set.

        origin: where its stream came from (default: an unverified WebSocket
        stream); a ``PlayRecord`` keeps its own. A play without a ``key``
        gets a fresh one. Raises ``PlaysLogError`` for an open play whose
        row is already closed.
        """
        record = play if isinstance(play, PlayRecord) else PlayRecord.of(play, origin)
        stored = self.write(record)
        if stored is None:
            raise PlaysLogError(f"play {record.key} is no longer open; an open update cannot replace it")
        return stored

    def write(self, record: PlayRecord) -> PlayRecord | None:
        """Insert ``record`` or update the row of its key; returns it as stored (``id``, ``updated_at``).

        A closed (or recovered) record always replaces the row. An open one
        only updates a row that is still open and has no more windows:
        writes run on a thread pool, so an older checkpoint can arrive after
        a newer one or after the close, and must not undo them. None when it
        was ignored for that.
        """
        if record.status not in STATUSES:
            raise PlaysLogError(f"play status must be one of {STATUSES}, got {record.status!r}")
        record = replace(record, key=record.key or uuid.uuid4().hex, updated_at=iso_utc(time.time()),
                         worker_id=record.worker_id or self.worker_id)
        values = asdict(record)
        sets = ", ".join(f"{c} = excluded.{c}" for c in _UPDATED)
        sql = (f"INSERT INTO plays ({', '.join(_WRITTEN)}) VALUES ({', '.join([self._param] * len(_WRITTEN))}) "
               f"ON CONFLICT (key) DO UPDATE SET {sets}")
        if record.status == "open":
            sql += " WHERE plays.status = 'open' AND excluded.windows >= plays.windows"
        sql += " RETURNING id"
        row = self._run(sql, [self._to_sql(c, values[c]) for c in _WRITTEN], fetch="one")
        if row is None:
            return None
        if record.status != "open":
            log.info("play %s on %s: %.1f-%.1f s (%.2f, %s)", record.track, record.source, record.start_s,
                     record.end_s, record.confidence, record.status)
        return replace(record, id=int(row[0]))

    def _to_sql(self, column: str, value):
        """A record's value as this database stores it (SQLite keeps booleans as 0/1)."""
        return int(value) if isinstance(value, bool) else value

    # --- plays left open by a dead process ------------------------------------------

    def recover(self, worker_ids: Sequence[str] | None = None, *, unowned: bool = True,
                kind: str | None = None) -> int:
        """``recover_records`` when only how many matters (its arguments); returns how many were closed."""
        return len(self.recover_records(worker_ids, unowned=unowned, kind=kind))

    def recover_records(self, worker_ids: Sequence[str] | None = None, *, unowned: bool = True,
                        kind: str | None = None) -> list[PlayRecord]:
        """Close plays left open by a process that died, as "recovered"; returns them as they are now stored.

        The records are what the server's listeners (webhooks, metrics) are
        told: a recovered play is a closed play too, it only ended with its
        process.

        Their end stays where their last update put it.
        worker_ids: None closes every open play (one server on the store,
            called once at its start before any stream writes: a row still
            open then belongs to the process that ran before). A list closes
            only the open plays written by those workers (``plays.worker_id``)
            and, with ``unowned``, those written by no worker (an older
            release): a worker at its start passes its own id; a worker that
            found others dead passes theirs (``web.workers``).
        kind: only plays of this source kind ("ws" for the reaper: a dead
            worker's monitor plays are adopted by the monitor's next holder,
            ``web.handover``).
        """
        p = self._param
        where, args = ["status = 'open'"], []
        if worker_ids is not None:
            ids = list(worker_ids)
            owned = [f"worker_id IN ({', '.join([p] * len(ids))})"] if ids else []
            owned += ["worker_id IS NULL"] if unowned else []
            if not owned:
                return []
            where.append("(" + " OR ".join(owned) + ")")
            args += ids
        if kind is not None:
            where.append(f"source_kind = {p}")
            args.append(kind)
        records = self._recovering(f"WHERE {' AND '.join(where)}", args)
        if records:
            log.warning("plays store %s: %d play(s) left open by a process that died closed as recovered",
                        self.location, len(records))
        return records

    def _recovering(self, where: str, args: Sequence) -> list[PlayRecord]:
        """``UPDATE`` the open plays ``where`` selects to "recovered", returning their rows (one statement)."""
        rows = self._run(f"UPDATE plays SET status = 'recovered' {where} RETURNING {', '.join(COLUMNS)}", args,
                         fetch="all")
        return [_record(row) for row in rows]

    def recover_keys(self, keys: Sequence[str]) -> list[PlayRecord]:
        """Close the plays of these keys as "recovered" where they are still open; returns those it closed."""
        keys = list(keys)
        if not keys:
            return []
        marks = ", ".join([self._param] * len(keys))
        return self._recovering(f"WHERE status = 'open' AND key IN ({marks})", keys)

    def open_plays(self, *, monitor_id: str, worker_ids: Sequence[str]) -> list[PlayRecord]:
        """Open plays of one monitor written by any of ``worker_ids`` (a dead worker's, for handover), oldest first."""
        ids = list(worker_ids)
        if not ids:
            return []
        p = self._param
        rows = self._run(f"SELECT {', '.join(COLUMNS)} FROM plays WHERE status = 'open' AND monitor_id = {p} "
                         f"AND worker_id IN ({', '.join([p] * len(ids))}) ORDER BY id", [monitor_id, *ids],
                         fetch="all")
        return [_record(row) for row in rows]

    # --- sources --------------------------------------------------------------------

    def note_source(self, report: SourceReport) -> None:
        """Add a stream's counts to the row of its source (name and kind), creating the row."""
        now = iso_utc(time.time())
        o = report.origin
        p = self._param
        self._run(
            f"INSERT INTO sources (name, kind, monitor_id, first_seen, last_seen, streams, windows_answered, "
            f"windows_dropped) VALUES ({', '.join([p] * 8)}) ON CONFLICT (name, kind) DO UPDATE SET "
            "monitor_id = coalesce(excluded.monitor_id, sources.monitor_id), last_seen = excluded.last_seen, "
            "streams = sources.streams + excluded.streams, "
            "windows_answered = sources.windows_answered + excluded.windows_answered, "
            "windows_dropped = sources.windows_dropped + excluded.windows_dropped",
            (report.name, o.kind, o.monitor_id, now, now, int(report.started), report.answered, report.dropped))

    def sources(self) -> list[dict]:
        """Every source seen, most recently seen first (``SOURCE_COLUMNS`` as keys)."""
        rows = self._run(f"SELECT {', '.join(SOURCE_COLUMNS)} FROM sources ORDER BY last_seen DESC, "
                         f"name{self._bytewise}, kind", fetch="all")
        return [dict(zip(SOURCE_COLUMNS, row)) for row in rows]

    # --- reading plays -------------------------------------------------------------

    def query(self, *, track: str | None = None, source: str | None = None, since: str | None = None,
              until: str | None = None, limit: int = 1000, before_id: int | None = None,
              status: str | None = None) -> list[PlayRecord]:
        """Plays, newest first, filtered.

        track, source: case-insensitive substring (``%`` and ``_`` are
            taken literally).
        since, until: ISO 8601 bounds on ``started_at`` (a date such as
            "2024-05-01" works too, as the stored strings sort by time).
        limit: at most this many rows (1..MAX_QUERY_ROWS); before_id: only
            rows older than this id, for paging.
        status: only plays in this state (one of ``STATUSES``).
        """
        _check_limit(limit)
        p = self._param
        where, args = self._time_bounds(since, until)
        for column, value in (("track", track), ("source", source)):
            if value:
                where.append(f"{column} {self._ilike} {p} ESCAPE '\\'")
                args.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if before_id is not None:
            where.append(f"id < {p}")
            args.append(int(before_id))
        if status is not None:
            if status not in STATUSES:
                raise PlaysLogError(f"status must be one of {STATUSES}, got {status!r}")
            where.append(f"status = {p}")
            args.append(status)
        sql = f"SELECT {', '.join(COLUMNS)} FROM plays"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id DESC LIMIT {p}"
        return [_record(row) for row in self._run(sql, [*args, limit], fetch="all")]

    def totals(self, by: str, *, since: str | None = None, until: str | None = None,
               limit: int = 1000) -> list[dict]:
        """Plays and seconds played per track or per source, most played first (SQL aggregation).

        by: "track" or "source". since, until: bounds on ``started_at`` as
        in ``query``. Plays still open are left out (their length is not
        known yet); recovered ones count as far as their last update.
        Returns [{by: name, "plays": n, "seconds": total, "first_at", "last_at"}].
        """
        if by not in TOTAL_KEYS:
            raise PlaysLogError(f"totals are by one of {TOTAL_KEYS}, got {by!r}")
        _check_limit(limit)
        where, args = self._time_bounds(since, until)
        where.insert(0, "status != 'open'")
        sql = (f"SELECT {by}, COUNT(*), SUM(end_s - start_s), MIN(started_at), MAX(ended_at) FROM plays "
               f"WHERE {' AND '.join(where)} GROUP BY {by} "
               f"ORDER BY SUM(end_s - start_s) DESC, {by}{self._bytewise} LIMIT {self._param}")
        rows = self._run(sql, [*args, limit], fetch="all")
        return [{by: name, "plays": int(n), "seconds": round(float(seconds), 3), "first_at": first, "last_at": last}
                for name, n, seconds, first, last in rows]

    def count(self, status: str | None = None) -> int:
        """Number of stored plays (in ``status`` only, when given)."""
        if status is None:
            return int(self._run("SELECT COUNT(*) FROM plays", fetch="one")[0])
        return int(self._run(f"SELECT COUNT(*) FROM plays WHERE status = {self._param}", (status,),
                             fetch="one")[0])

    def overlapping(self, source: str, *, started_from: str, started_before: str, ended_from: str,
                    columns: Sequence[str], limit: int) -> tuple[int, list[dict]]:
        """Plays of ``source`` (exact name) with ``started_from <= started_at < started_before`` and
        ``ended_at >= ended_from`` (stored UTC text, which sorts by time), oldest first.

        columns: which of ``COLUMNS`` each row carries. limit: at most this
        many rows. Returns (how many plays match in all, the rows as dicts).
        """
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise PlaysLogError(f"unknown plays column(s) {unknown}; known: {', '.join(COLUMNS)}")
        _check_limit(limit)
        p = self._param
        where = f"source = {p} AND started_at >= {p} AND started_at < {p} AND ended_at >= {p}"
        args = [source, started_from, started_before, ended_from]
        total = int(self._run(f"SELECT COUNT(*) FROM plays WHERE {where}", args, fetch="one")[0])
        rows = self._run(f"SELECT {', '.join(columns)} FROM plays WHERE {where} ORDER BY started_at, id LIMIT {p}",
                         [*args, limit], fetch="all")
        return total, [dict(zip(columns, row)) for row in rows]

    def _time_bounds(self, since: str | None, until: str | None) -> tuple[list[str], list]:
        where, args = [], []
        if since:
            where.append(f"started_at >= {self._param}")
            args.append(normalise_time(since))
        if until:
            where.append(f"started_at <= {self._param}")
            args.append(normalise_time(until, end=True))
        return where, args


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_QUERY_ROWS:
        raise PlaysLogError(f"limit must be between 1 and {MAX_QUERY_ROWS}, got {limit}")


def _record(row: tuple) -> PlayRecord:
    values = dict(zip(COLUMNS, row))
    values["id"] = int(values["id"])
    values["source_verified"] = bool(values["source_verified"])
    values["open"] = values["status"] == "open"
    return PlayRecord(**values)


def normalise_time(text: str, *, end: bool = False) -> str:
    """Validate an ISO date/time bound and bring it to the stored format (UTC, "Z").

    end: the bound is an upper one, so a bare date means the end of that day.
    Raises ``PlaysLogError`` for text that is not ISO 8601.
    """
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PlaysLogError(f"not an ISO 8601 date or time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if end and len(text.strip()) == 10:  # a bare date as an upper bound means "that whole day"
        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999000)
    return iso_utc(parsed.timestamp())
