"""The plays store on a PostgreSQL server (psycopg 3), for a plays log that outlives one machine.

Place in the pipeline: one of the two ``plays.base.PlayStore`` backends,
chosen by ``--store postgresql://user@host:port/db`` (``plays.factory``).
The rules of the store and the SQL of every query are ``plays.base``'s, the
same that the SQLite log runs; this module supplies PostgreSQL's dialect
(``%s`` parameters, ``ILIKE``, byte-order ties), its migrations and its
connections.

Migrations. ``plays.schema.PG_MIGRATIONS`` holds the same steps as the
SQLite ones, in PostgreSQL's SQL. The version is a row of a
``schema_version`` table (component "plays"). Opening a store runs the
missing steps in one transaction (PostgreSQL's DDL is transactional, so a
failed step leaves the database as it was) under an advisory lock, so two
servers starting on one old database at once do not both migrate it. A
database written by a newer release is refused.

Connections. One connection per statement would cost a TCP and
authentication round trip (a few ms, a forked backend on the server) per
write; one shared connection would make a long export hold up every
checkpoint. So each call borrows a connection from a small idle list
guarded by a lock and gives it back afterwards: at most one connection per
thread using the store at once (the server's I/O pool has 4 threads), at
most ``max_idle`` kept open between calls. This needs nothing beyond psycopg
(no ``psycopg_pool``). A connection that failed is closed, never given back;
a statement that fails on a connection that was idle (the server restarted
since) is run once more on a fresh one.

No hang. ``connect_timeout`` bounds connecting, ``statement_timeout`` (set on
the server for each connection) bounds a statement, and ``tcp_user_timeout``
bounds waiting on a server that vanished mid-call. Every failure is a
``PlaysLogError`` naming the store (never its password) and the cause: the
server unreachable, the login refused, the database missing.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .base import PlaysLogError, PlayStore
from .factory import redact_url
from .schema import PG_MIGRATIONS, SCHEMA_VERSION, SchemaError, too_new

log = logging.getLogger(__name__)

#: The row of ``schema_version`` that holds this store's version.
COMPONENT = "plays"
#: Key of the advisory lock held while migrating (any constant unique to this store).
_MIGRATION_LOCK = 0x61756463_706C6179  # "audc" "play"


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise PlaysLogError("a PostgreSQL plays store needs psycopg: pip install 'audiocopy[postgres]'") from None
    return psycopg


class PostgresStore(PlayStore):
    """Plays in a PostgreSQL database (see the module docstring).

    url: ``postgresql://user[:password]@host[:port]/dbname`` (libpq's URL,
        its parameters such as ``sslmode`` allowed; a password may also come
        from ``PGPASSWORD`` or ``~/.pgpass``). The user must be allowed to
        create tables in the database (on PostgreSQL 15 and later: own it).
    connect_timeout_s: longest wait for a connection (the URL's own
        ``connect_timeout`` wins). statement_timeout_s: longest statement.
    max_idle: connections kept open between calls.
    Raises ``PlaysLogError`` when the server cannot be reached, refuses the
    login, or holds a schema newer than this release's.
    """

    _param = "%s"
    _ilike = "ILIKE"
    _bytewise = ' COLLATE "C"'

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0, statement_timeout_s: float = 60.0,
                 max_idle: int = 4):
        self._pg = _psycopg()
        self.location = redact_url(url)
        if connect_timeout_s <= 0 or statement_timeout_s <= 0 or max_idle < 0:
            raise PlaysLogError("timeouts must be positive and max_idle at least 0")
        try:
            params = self._pg.conninfo.conninfo_to_dict(url)
        except self._pg.Error as exc:
            raise PlaysLogError(f"plays store {self.location}: not a valid PostgreSQL URL ({_first_line(exc)})") \
                from None
        params.setdefault("connect_timeout", str(max(2, round(connect_timeout_s))))
        # The server ends a statement running longer (milliseconds); the kernel gives up on
        # data the server stopped acknowledging (a host gone mid-call) after as long.
        timeout_ms = int(statement_timeout_s * 1000)
        params["options"] = f"{params.get('options', '')} -c statement_timeout={timeout_ms}".strip()
        params.setdefault("tcp_user_timeout", str(timeout_ms))
        params.setdefault("application_name", "audiocopy")
        self._params = params
        self._idle: list = []
        self._lock = threading.Lock()
        self.max_idle = max_idle
        try:
            with self._connection() as (con, _):
                was = migrate(con, name=f"plays store {self.location}")
        except SchemaError as exc:
            raise PlaysLogError(str(exc)) from None
        except self._pg.Error as exc:
            raise self._error(exc) from None
        if was != SCHEMA_VERSION:
            log.info("plays store %s: schema version %d -> %d", self.location, was, SCHEMA_VERSION)

    # --- connections ------------------------------------------------------------------

    @contextmanager
    def _connection(self, *, fresh: bool = False) -> Iterator[tuple]:
        """(connection in autocommit mode, whether it was idle before); given back when the block succeeds."""
        con = None
        if not fresh:
            with self._lock:
                while self._idle and con is None:
                    con = self._idle.pop()
                    if con.closed:
                        con = None
        reused = con is not None
        if con is None:
            con = self._pg.connect(**self._params, autocommit=True)
        try:
            yield con, reused
        except BaseException:
            con.close()  # its state is unknown after a failure: never reuse it
            raise
        with self._lock:
            if len(self._idle) < self.max_idle and not con.closed:
                self._idle.append(con)
                return
        con.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for con in idle:
            con.close()

    def _run(self, sql: str, args: Sequence = (), *, fetch: str | None = None):
        for attempt in (0, 1):
            reused = False
            try:
                with self._connection(fresh=attempt > 0) as (con, reused):
                    cur = con.execute(sql, list(args) or None)
                    if fetch == "one":
                        return cur.fetchone()
                    if fetch == "all":
                        return cur.fetchall()
                    return cur.rowcount
            except self._pg.OperationalError as exc:
                # An idle connection may have died with a server restart: once more on a new one
                # (not a statement the server cancelled: that would only double the wait).
                if not reused or attempt or isinstance(exc, self._pg.errors.QueryCanceled):
                    raise self._error(exc) from None
                log.warning("plays store %s: connection lost (%s); reconnecting", self.location,
                            _first_line(exc))
            except self._pg.Error as exc:
                raise self._error(exc) from None
        raise AssertionError("unreachable")

    def _error(self, exc: Exception) -> PlaysLogError:
        """``exc`` as a ``PlaysLogError`` that says what went wrong, the password left out."""
        text = _first_line(exc)
        state = getattr(exc, "sqlstate", None)
        low = str(exc).lower()
        if state in ("28P01", "28000") or "authentication failed" in low or "no password supplied" in low:
            why = "the server refused the login (authentication failed)"
        elif state == "3D000" or ("database" in low and "does not exist" in low):
            why = "the database does not exist (create it with createdb -O USER DB)"
        elif "timeout expired" in low:
            why = f"the server did not answer within {self._params['connect_timeout']} s"
        elif state == "57014":
            why = "a statement ran past statement_timeout"
        elif isinstance(exc, self._pg.OperationalError):
            why = "the server is unreachable or closed the connection"
        else:
            why = "the statement failed"
        return PlaysLogError(f"plays store {self.location}: {why}: {text}")

    # --- writing ----------------------------------------------------------------------

    def _to_sql(self, column: str, value):
        return value  # booleans are BOOLEAN here


def schema_version(con) -> int:
    """The plays schema version in the database of ``con`` (0: no plays schema yet)."""
    exists = con.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT version FROM schema_version WHERE component = %s", (COMPONENT,)).fetchone()
    return int(row[0]) if row else 0


def migrate(con, *, name: str = "plays store") -> int:
    """Bring the database of ``con`` (autocommit) to ``SCHEMA_VERSION``; returns the version it had.

    Runs in one transaction under an advisory lock (another server opening
    the same database waits, then finds it migrated). Raises ``SchemaError``
    for a database newer than this code, or a failed step (everything is
    rolled back).
    """
    pg = _psycopg()
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = schema_version(con)
        if found > SCHEMA_VERSION:
            raise too_new(name, found)
        if found == SCHEMA_VERSION:
            return found
        try:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, "
                        "version INTEGER NOT NULL)")
            for version in range(found, SCHEMA_VERSION):
                for statement in PG_MIGRATIONS[version]:
                    con.execute(statement)
            con.execute("INSERT INTO schema_version (component, version) VALUES (%s, %s) ON CONFLICT (component) "
                        "DO UPDATE SET version = excluded.version", (COMPONENT, SCHEMA_VERSION))
        except pg.errors.OperationalError:
            raise  # the connection, not a step: reported as such by the caller
        except pg.Error as exc:
            raise SchemaError(f"could not upgrade {name} from schema version {found} to {SCHEMA_VERSION}: "
                              f"{_first_line(exc)}") from None
    return found


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
