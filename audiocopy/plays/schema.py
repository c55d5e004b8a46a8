"""The plays database's schema, versioned, and the steps that bring an older database up to date.

Place in the pipeline: under ``plays.store`` (SQLite), which calls
``migrate`` when it opens a database, and ``plays.postgres``, which runs
``PG_MIGRATIONS`` the same way (``plays.postgres.migrate``).

Why versions. A plays log is kept for years and is the evidence a
rights-holder acts on, so a new release must never ask for it to be
deleted or rebuilt. The schema's version is SQLite's own ``PRAGMA
user_version``; ``MIGRATIONS`` is the list of steps, step ``i`` taking a
database from version ``i`` to ``i + 1``. Opening a database runs the steps
it lacks, in one transaction, rows kept. A database written by a newer
release (a version beyond ``SCHEMA_VERSION``) is refused: this code would
not know what its columns mean.

Version 0 is ambiguous: an empty file, or a log written before versions
existed (which never set ``user_version``). The first step creates the
original table only if it is missing, so both end at version 1.

Versions:

1. ``plays``: track, source, stream times, confidence, windows and wall
   clock times of closed plays.
2. Plays that survive a crash, with their evidence and provenance:
   ``key`` (unique: an open play is updated in place), ``status`` (open,
   closed, recovered), ``updated_at``; the evidence of alteration
   (``track_start_s``, ``track_end_s``, ``time_scale``,
   ``pitch_semitones``, ``alteration``); where the audio came from
   (``source_kind``, ``monitor_id``, ``source_verified``). Plays already
   logged become closed plays with a key made from their row id. A
   ``sources`` table counts, per source name and kind, the windows answered
   and dropped.

3. What several server workers share through the store (one database
   serves every worker, on one machine or several): ``monitors`` (the URL
   monitors, one row each, ``name_key`` unique so names stay unique
   case-insensitively), ``source_tokens`` (the SHA-256 of each stream
   token, never the token), the webhook outbox (``webhooks`` and
   ``deliveries``), ``workers`` (one row per running server process, with
   its heartbeat) and ``monitor_leases`` (which worker runs which monitor,
   until when). ``plays.worker_id`` names the worker that wrote an open
   play, so only a dead worker's open plays are recovered. Times used in
   comparisons (heartbeats, leases, deliveries' next attempt) are epoch
   seconds (``REAL``), the rest ISO 8601 text as in ``plays``.

PostgreSQL (``PG_MIGRATIONS``) goes through the same versions with the same
steps, written in its SQL: ``DOUBLE PRECISION`` where SQLite says ``REAL``
(PostgreSQL's ``REAL`` is 4 bytes), ``BOOLEAN`` for ``source_verified``, an
identity column for the row id. Its version is a row of a
``schema_version`` table (component "plays"), since PostgreSQL has no
``user_version``; a database may later hold other components' tables, each
with its own row.
"""
from __future__ import annotations

import sqlite3

from ..errors import AudiocopyError


class SchemaError(AudiocopyError):
    """The plays database cannot be brought to this code's schema (too new, or a failed step)."""


_V1 = (
    """CREATE TABLE IF NOT EXISTS plays (
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
    )""",
    "CREATE INDEX IF NOT EXISTS plays_started ON plays (started_at)",
    "CREATE INDEX IF NOT EXISTS plays_track ON plays (track)",
)

_V2 = (
    "ALTER TABLE plays ADD COLUMN key TEXT",
    "ALTER TABLE plays ADD COLUMN status TEXT NOT NULL DEFAULT 'closed'",
    "ALTER TABLE plays ADD COLUMN updated_at TEXT",
    "ALTER TABLE plays ADD COLUMN track_start_s REAL",
    "ALTER TABLE plays ADD COLUMN track_end_s REAL",
    "ALTER TABLE plays ADD COLUMN time_scale REAL",
    "ALTER TABLE plays ADD COLUMN pitch_semitones REAL",
    "ALTER TABLE plays ADD COLUMN alteration TEXT NOT NULL DEFAULT 'unknown'",
    "ALTER TABLE plays ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'ws'",
    "ALTER TABLE plays ADD COLUMN monitor_id TEXT",
    "ALTER TABLE plays ADD COLUMN source_verified INTEGER NOT NULL DEFAULT 0",
    # Rows logged before keys existed were all closed plays; their row id
    # makes a key no live play can have (live keys are hex strings).
    "UPDATE plays SET key = 'v1-' || id, updated_at = ended_at WHERE key IS NULL",
    "CREATE UNIQUE INDEX plays_key ON plays (key)",
    "CREATE INDEX plays_status ON plays (status)",
    """CREATE TABLE sources (
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        monitor_id TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        streams INTEGER NOT NULL DEFAULT 0,
        windows_answered INTEGER NOT NULL DEFAULT 0,
        windows_dropped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, kind)
    )""",
)

def _v3(real: str, blob: str) -> tuple[str, ...]:
    """Version 3 in either dialect: ``real`` is the 8-byte float type, ``blob`` the bytes type."""
    return (
        "ALTER TABLE plays ADD COLUMN worker_id TEXT",
        "CREATE INDEX plays_open_worker ON plays (status, worker_id)",
        """CREATE TABLE monitors (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE source_tokens (
            name_key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT
        )""",
        f"""CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            created_at {real} NOT NULL
        )""",
        f"""CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            webhook_id TEXT NOT NULL,
            url TEXT NOT NULL,
            event TEXT NOT NULL,
            body {blob} NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at {real} NOT NULL,
            last_error TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        )""",
        "CREATE INDEX deliveries_due ON deliveries (status, next_at)",
        f"""CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            address TEXT NOT NULL,
            started_at {real} NOT NULL,
            heartbeat_at {real} NOT NULL,
            stopped_at {real}
        )""",
        f"""CREATE TABLE monitor_leases (
            monitor_id TEXT PRIMARY KEY,
            worker_id TEXT NOT NULL,
            acquired_at {real} NOT NULL,
            expires_at {real} NOT NULL
        )""",
    )


#: Step i takes a database from version i to i + 1 (statements run in order).
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _v3("REAL", "BLOB"))
#: The version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)

_PG_V1 = (
    """CREATE TABLE IF NOT EXISTS plays (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        track TEXT NOT NULL,
        source TEXT NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        confidence DOUBLE PRECISION NOT NULL,
        peak_score DOUBLE PRECISION NOT NULL,
        windows INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS plays_started ON plays (started_at)",
    "CREATE INDEX IF NOT EXISTS plays_track ON plays (track)",
)

_PG_V2 = (
    "ALTER TABLE plays ADD COLUMN key TEXT",
    "ALTER TABLE plays ADD COLUMN status TEXT NOT NULL DEFAULT 'closed'",
    "ALTER TABLE plays ADD COLUMN updated_at TEXT",
    "ALTER TABLE plays ADD COLUMN track_start_s DOUBLE PRECISION",
    "ALTER TABLE plays ADD COLUMN track_end_s DOUBLE PRECISION",
    "ALTER TABLE plays ADD COLUMN time_scale DOUBLE PRECISION",
    "ALTER TABLE plays ADD COLUMN pitch_semitones DOUBLE PRECISION",
    "ALTER TABLE plays ADD COLUMN alteration TEXT NOT NULL DEFAULT 'unknown'",
    "ALTER TABLE plays ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'ws'",
    "ALTER TABLE plays ADD COLUMN monitor_id TEXT",
    "ALTER TABLE plays ADD COLUMN source_verified BOOLEAN NOT NULL DEFAULT false",
    "UPDATE plays SET key = 'v1-' || id, updated_at = ended_at WHERE key IS NULL",
    "CREATE UNIQUE INDEX plays_key ON plays (key)",
    "CREATE INDEX plays_status ON plays (status)",
    """CREATE TABLE sources (
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        monitor_id TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        streams BIGINT NOT NULL DEFAULT 0,
        windows_answered BIGINT NOT NULL DEFAULT 0,
        windows_dropped BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (name, kind)
    )""",
)

#: The same steps in PostgreSQL's SQL: one per version, as ``MIGRATIONS``.
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (_PG_V1, _PG_V2, _v3("DOUBLE PRECISION", "BYTEA"))


def too_new(name: str, found: int) -> SchemaError:
    """The error for a database written by a newer release (both backends raise it)."""
    return SchemaError(f"{name} has schema version {found}, newer than this release's {SCHEMA_VERSION}: "
                       f"it was written by a newer audiocopy; upgrade audiocopy to read it")


def user_version(con: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 for a new file or a log older than versions)."""
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, *, name: str = "plays database") -> int:
    """Bring the database of ``con`` to ``SCHEMA_VERSION``; returns the version it had.

    Runs the missing steps in one write transaction (``BEGIN IMMEDIATE``:
    two processes opening the same old file at once do not both migrate it;
    the second sees the new version). A failure rolls everything back.
    ``con`` must be in autocommit mode (``isolation_level=None``). Raises
    ``SchemaError`` for a database newer than this code, or a failed step.
    """
    found = user_version(con)
    if found == SCHEMA_VERSION:
        return found
    if found > SCHEMA_VERSION:
        raise too_new(name, found)
    con.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(con)  # another process may have migrated it while this one waited
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {version + 1}")
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        if con.in_transaction:  # SQLite rolls back by itself after some errors (disk full, I/O)
            con.execute("ROLLBACK")
        raise SchemaError(f"could not upgrade {name} from schema version {found} to {SCHEMA_VERSION}: {exc}") \
            from None
    return found
