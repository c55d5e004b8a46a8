"""Plays: the store (schema versions, open plays, recovery, sources, totals) and the exports.

Every behavioural test runs against both backends: the SQLite log (the
embedded default) and a real PostgreSQL server that ``postgres_server``
starts on loopback (parameter marked ``postgres``: run with
``pytest -m postgres``). The tests after those cover what only one backend
has (SQLite's WAL file, PostgreSQL's connections and login errors).

The stream decision is tested in test_stream_decision.py, the server's side of
open plays and a real crash in test_plays_crash.py.
"""
from __future__ import annotations

import csv
import io
import socket
import sqlite3
import sys
import threading
import time

import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401

from audiocopy.decision.play import Play
from audiocopy.plays.base import PlayStore
from audiocopy.plays.export import to_csv, to_json
from audiocopy.plays.factory import open_store, redact_url
from audiocopy.plays.record import PlayOrigin, PlayRecord, SourceReport
from audiocopy.plays.schema import MIGRATIONS, PG_MIGRATIONS, SCHEMA_VERSION
from audiocopy.plays.store import PlaysLog, PlaysLogError


class Backend:
    """One store location of either kind: open it (again), and reach under it with raw SQL."""

    def __init__(self, kind: str, where):
        self.kind, self.where, self.opened = kind, where, []

    def open(self) -> PlayStore:
        store = open_store(self.where)
        self.opened.append(store)
        return store

    def sql(self, *statements: str) -> list:
        """Run statements outside the store (autocommit); the last one's rows."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.where, isolation_level=None) as con:
                rows = [con.execute(st).fetchall() for st in statements]
            return rows[-1]
        import psycopg

        with psycopg.connect(self.where, autocommit=True) as con:
            rows = []
            for st in statements:
                cur = con.execute(st)
                rows = cur.fetchall() if cur.description else []
        return rows

    def version(self) -> int:
        if self.kind == "sqlite":
            return self.sql("PRAGMA user_version")[0][0]
        if self.sql("SELECT to_regclass('schema_version')") == [(None,)]:
            return 0
        rows = self.sql("SELECT version FROM schema_version WHERE component = 'plays'")
        return rows[0][0] if rows else 0

    def set_version(self, version: int) -> None:
        self.sql(f"PRAGMA user_version = {version}" if self.kind == "sqlite"
                 else f"UPDATE schema_version SET version = {version} WHERE component = 'plays'")

    def columns(self, table: str) -> list[str]:
        if self.kind == "sqlite":
            return [r[1] for r in self.sql(f"PRAGMA table_info({table})")]
        return [r[0] for r in self.sql("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                       f"'{table}' ORDER BY ordinal_position")]

    def v1_statements(self) -> tuple[str, ...]:
        """The first release's schema in this backend's SQL."""
        return tuple(s for s in _V1_SCHEMA.split(";") if s.strip()) if self.kind == "sqlite" else PG_MIGRATIONS[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    if request.param == "sqlite":
        where = tmp_path / "state" / "plays.sqlite"
        where.parent.mkdir()
    else:
        where = request.getfixturevalue("postgres_url")
    b = Backend(request.param, where)
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def log(backend) -> PlayStore:
    return backend.open()


def _play(track="a", source="radio", started_at="2024-05-01T10:00:00.000Z", **kw) -> Play:
    base = dict(track=track, source=source, start_s=1.0, end_s=11.0, confidence=1.5, peak_score=2.5, windows=17,
                started_at=started_at, ended_at=started_at)
    return Play(**{**base, **kw})


def test_store_survives_reopen(backend, log):
    stored = log.add(_play())
    assert stored.id == 1
    again = backend.open()  # a restart
    assert again.count() == 1
    assert again.query()[0] == stored
    assert backend.version() == SCHEMA_VERSION


def test_query_filters_newest_first(log):
    log.add(_play("Alpha", "radio one", "2024-05-01T10:00:00.000Z"))
    log.add(_play("Beta", "browser", "2024-05-02T10:00:00.000Z"))
    log.add(_play("alpha remix", "radio two", "2024-05-03T23:59:00.000Z"))
    assert [p.track for p in log.query()] == ["alpha remix", "Beta", "Alpha"]
    assert [p.track for p in log.query(track="ALPHA")] == ["alpha remix", "Alpha"]
    assert [p.track for p in log.query(source="radio")] == ["alpha remix", "Alpha"]
    assert [p.track for p in log.query(since="2024-05-02")] == ["alpha remix", "Beta"]
    assert [p.track for p in log.query(until="2024-05-03")] == ["alpha remix", "Beta", "Alpha"]  # whole day
    assert [p.track for p in log.query(until="2024-05-01T12:00:00Z")] == ["Alpha"]
    assert [p.track for p in log.query(limit=1)] == ["alpha remix"]
    assert [p.track for p in log.query(before_id=3)] == ["Beta", "Alpha"]
    assert log.query(track="100%") == []  # wildcards are literal


def test_query_rejects_bad_bounds(log):
    with pytest.raises(PlaysLogError):
        log.query(since="yesterday")
    with pytest.raises(PlaysLogError):
        log.query(limit=0)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "plays.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PlaysLogError, match="not usable"):
        PlaysLog(bad)


def test_csv_and_json_export(log):
    log.add(_play("=HYPERLINK(\"x\")", "radio, one"))
    rows = list(csv.DictReader(io.StringIO(to_csv(log.query()))))
    assert len(rows) == 1
    assert rows[0]["track"].startswith("'=")  # not run as a formula by spreadsheets
    assert rows[0]["source"] == "radio, one" and rows[0]["duration_s"] == "10.0" and rows[0]["windows"] == "17"
    (j,) = to_json(log.query())
    assert j["track"] == "=HYPERLINK(\"x\")" and j["duration_s"] == 10.0 and j["id"] == 1


# --- schema versions and migrations ------------------------------------------

_V1_SCHEMA = """
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


def _v1_database(backend: Backend) -> None:
    """A plays log as the first release wrote it (no schema version), with two plays."""
    rows = ", ".join(f"('{track}', 'radio', 2.0, 32.5, 1.25, 3.0, 40, '{start}', '{start}')"
                     for track, start in (("old one", "2024-01-01T10:00:00.000Z"),
                                          ("old two", "2024-01-02T10:00:00.000Z")))
    backend.sql(*backend.v1_statements(), "INSERT INTO plays (track, source, start_s, end_s, confidence, peak_score, "
                f"windows, started_at, ended_at) VALUES {rows}")


def test_v1_database_is_migrated_in_place_rows_kept(backend):
    _v1_database(backend)
    assert backend.version() == 0
    log = backend.open()
    assert backend.version() == SCHEMA_VERSION
    assert set(backend.columns("sources")) >= {"windows_dropped", "kind"}
    old = log.query()
    assert [(p.track, p.start_s, p.end_s, p.windows, p.confidence) for p in old] == \
        [("old two", 2.0, 32.5, 40, 1.25), ("old one", 2.0, 32.5, 40, 1.25)]
    assert all(p.status == "closed" and p.key and p.updated_at == p.ended_at for p in old)
    assert all(p.source_kind == "ws" and not p.source_verified and p.time_scale is None for p in old)
    # New plays go on after the old ones, with their evidence.
    new = log.add(_play("new", key="k1", time_scale=1.06, pitch_semitones=1.01, alteration="speed",
                        track_start_s=10.0, track_end_s=20.6))
    assert new.id == 3 and log.query(limit=1)[0] == new
    assert backend.open().count() == 3  # opening again migrates nothing


def test_newer_database_is_refused_clearly(backend, log):
    backend.set_version(SCHEMA_VERSION + 1)
    with pytest.raises(PlaysLogError, match=f"schema version {SCHEMA_VERSION + 1}, newer .*upgrade audiocopy"):
        backend.open()


def test_failed_migration_leaves_the_old_database(backend):
    _v1_database(backend)
    backend.sql("CREATE TABLE sources (x TEXT)")  # a v1 database that already has a table the next step creates
    with pytest.raises(PlaysLogError, match="could not upgrade .* from schema version 0 to .*sources.? already"):
        backend.open()
    # Every step is rolled back together.
    assert backend.version() == 0
    assert backend.columns("plays")[-1] == "ended_at"
    assert backend.sql("SELECT COUNT(*) FROM plays") == [(2,)]


def test_migrations_are_one_step_per_version():
    assert SCHEMA_VERSION == len(MIGRATIONS) == len(PG_MIGRATIONS) >= 2
    for steps in (*MIGRATIONS, *PG_MIGRATIONS):
        assert steps and all(isinstance(s, str) for s in steps)
    # The same steps in each SQL: the same tables, indexes and columns added per version.
    for sqlite_steps, pg_steps in zip(MIGRATIONS, PG_MIGRATIONS):
        assert [s.split("(")[0].split()[:5] for s in sqlite_steps] == [s.split("(")[0].split()[:5] for s in pg_steps]


# --- open plays, closing, recovery -------------------------------------------

def _open(key="k", windows=10, end_s=6.0, **kw) -> Play:
    return _play(key=key, windows=windows, end_s=end_s, open=True, **kw)


def test_open_play_is_upserted_then_closed_in_place(log):
    origin = PlayOrigin("monitor", monitor_id="abc123", verified=True)
    first = log.write(PlayRecord.of(_open(windows=10, end_s=6.0), origin))
    assert first.status == "open" and first.open and first.updated_at
    grown = log.write(PlayRecord.of(_open(windows=20, end_s=11.0), origin))
    assert grown.id == first.id and log.count() == 1
    (row,) = log.query()
    assert row.status == "open" and row.end_s == 11.0 and row.windows == 20 and row.monitor_id == "abc123"
    # An older checkpoint that arrives late (writes run on a pool) changes nothing.
    assert log.write(PlayRecord.of(_open(windows=15, end_s=8.0), origin)) is None
    assert log.query()[0].end_s == 11.0
    closed = log.write(PlayRecord.of(_play(key="k", windows=25, end_s=13.5, time_scale=1.02), origin))
    assert closed.id == first.id and log.count() == 1 and log.count("open") == 0
    (row,) = log.query()
    assert (row.status, row.end_s, row.windows, row.time_scale, row.source_kind, row.source_verified) == \
        ("closed", 13.5, 25, 1.02, "monitor", True)
    # A checkpoint that arrives after the close cannot reopen it.
    assert log.write(PlayRecord.of(_open(windows=30, end_s=20.0), origin)) is None
    assert log.query()[0].status == "closed" and log.query()[0].end_s == 13.5


def test_recovery_closes_open_plays_at_their_last_update(backend, log):
    log.add(_play(key="done"))
    log.add(_open(key="a", end_s=7.5, ended_at="2024-05-01T10:00:07.500Z"))
    log.add(_open(key="b", end_s=3.0))
    assert log.count("open") == 2
    again = backend.open()  # the next process
    assert again.recover() == 2
    rows = {p.key: p for p in again.query()}
    assert {k: p.status for k, p in rows.items()} == {"done": "closed", "a": "recovered", "b": "recovered"}
    assert rows["a"].end_s == 7.5 and rows["a"].ended_at == "2024-05-01T10:00:07.500Z" and not rows["a"].open
    assert [p.key for p in again.query(status="recovered")] == ["b", "a"]
    assert again.recover() == 0
    # A stale write of the dead process' play cannot reopen it.
    assert again.write(PlayRecord.of(_open(key="a", windows=99), PlayOrigin())) is None
    with pytest.raises(PlaysLogError, match="status"):
        again.query(status="lost")


def test_play_record_rejects_bad_values(log):
    with pytest.raises(ValueError, match="source kind"):
        PlayOrigin("radio")
    with pytest.raises(ValueError, match="negative"):
        SourceReport("x", PlayOrigin(), answered=-1)
    with pytest.raises(PlaysLogError, match="status must be"):
        log.write(PlayRecord(**{**_play().__dict__, "status": "gone"}))


def test_sources_count_streams_and_windows(log):
    ws, mon = PlayOrigin(), PlayOrigin("monitor", monitor_id="m1", verified=True)
    log.note_source(SourceReport("radio", mon, started=True))
    log.note_source(SourceReport("radio", mon, answered=100, dropped=0))
    log.note_source(SourceReport("radio", ws, answered=10, dropped=4, started=True))  # a browser using the name
    log.note_source(SourceReport("radio", ws, answered=5, dropped=3))
    rows = {(r["name"], r["kind"]): r for r in log.sources()}
    assert rows[("radio", "monitor")]["windows_answered"] == 100 and rows[("radio", "monitor")]["monitor_id"] == "m1"
    assert rows[("radio", "ws")]["windows_dropped"] == 7 and rows[("radio", "ws")]["streams"] == 1
    assert rows[("radio", "ws")]["first_seen"] <= rows[("radio", "ws")]["last_seen"]


def test_exports_carry_the_title_and_artist_the_caller_looks_up(log):
    log.add(_play(key="x"), PlayOrigin("ws"))
    track = log.query()[0].track
    titles = {track: {"title": "=Song", "artist": "The Band"}}.get
    (row,) = csv.DictReader(io.StringIO(to_csv(log.query(), lambda t: titles(t) or {"title": None, "artist": None})))
    assert (row["title"], row["artist"]) == ("'=Song", "The Band")  # a formula-looking title stays text
    (j,) = to_json(log.query(), lambda t: titles(t))
    assert (j["track"], j["title"], j["artist"]) == (track, "=Song", "The Band")  # the id stays the key
    (bare,) = to_json(log.query())
    assert bare["title"] is None and bare["artist"] is None


def test_exports_carry_status_evidence_and_origin(log):
    log.add(_play(key="x", time_scale=0.97, pitch_semitones=-0.5, alteration="speed+pitch", track_start_s=3.0,
                  track_end_s=12.7), PlayOrigin("monitor", monitor_id="m9", verified=True))
    (row,) = csv.DictReader(io.StringIO(to_csv(log.query())))
    assert list(row)[:11] == ["id", "track", "source", "start_s", "end_s", "duration_s", "confidence",
                              "peak_score", "windows", "started_at", "ended_at"]  # the old columns first
    assert (row["status"], row["time_scale"], row["pitch_semitones"], row["alteration"], row["monitor_id"],
            row["source_kind"], row["source_verified"]) == ("closed", "0.97", "-0.5", "speed+pitch", "m9",
                                                             "monitor", "True")
    (j,) = to_json(log.query())
    assert j["status"] == "closed" and j["open"] is False and j["track_start_s"] == 3.0 and j["updated_at"]


def test_totals_per_track_and_source_in_sql(log):
    log.add(_play("a", "one", "2024-05-01T10:00:00.000Z", end_s=31.0))  # 30 s
    log.add(_play("a", "two", "2024-05-02T10:00:00.000Z"))  # 10 s
    log.add(_play("b", "one", "2024-05-02T11:00:00.000Z", end_s=51.0))  # 50 s
    log.add(_open(key="still", track="b", started_at="2024-05-02T12:00:00.000Z"))  # not counted yet
    assert [(r["track"], r["plays"], r["seconds"]) for r in log.totals("track")] == [("b", 1, 50.0), ("a", 2, 40.0)]
    assert [(r["source"], r["plays"], r["seconds"]) for r in log.totals("source")] == [("one", 2, 80.0),
                                                                                       ("two", 1, 10.0)]
    assert [(r["track"], r["plays"]) for r in log.totals("track", since="2024-05-02", until="2024-05-02")] == \
        [("b", 1), ("a", 1)]
    assert log.totals("track", since="2030-01-01") == []
    with pytest.raises(PlaysLogError, match="totals are by"):
        log.totals("track; DROP TABLE plays")
    with pytest.raises(PlaysLogError):
        log.totals("track", until="soon")


def test_writes_from_many_threads_at_once(log):
    """The server writes from a pool of threads: no write is lost and every count adds up."""
    errors = []

    def worker(n: int):
        try:
            for i in range(10):
                key = f"t{n}-{i}"
                log.write(PlayRecord.of(_open(key=key, windows=5), PlayOrigin()))
                log.write(PlayRecord.of(_play(key=key, windows=9), PlayOrigin()))
                log.note_source(SourceReport("radio", PlayOrigin(), answered=3, dropped=1, started=i == 0))
        except Exception as exc:  # noqa: BLE001 (collected: an error in a thread would pass unseen)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert log.count() == 60 and log.count("closed") == 60
    (src,) = log.sources()
    assert (src["streams"], src["windows_answered"], src["windows_dropped"]) == (6, 180, 60)


# --- choosing a backend -------------------------------------------------------------

def test_open_store_picks_the_backend_by_url_or_path(tmp_path):
    assert isinstance(open_store(tmp_path / "p.sqlite"), PlaysLog)
    assert isinstance(open_store(str(tmp_path / "q.sqlite")), PlaysLog)
    with pytest.raises(PlaysLogError, match="unknown URL scheme"):
        open_store("mysql://user:secret@host/db")
    with pytest.raises(PlaysLogError, match="PostgreSQL store only"):
        open_store(tmp_path / "p.sqlite", connect_timeout_s=1)
    assert redact_url("postgresql://u:secret@h:5432/db?password=x&sslmode=require") == \
        "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_postgres_url_without_psycopg_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the postgres extra were not installed
    with pytest.raises(PlaysLogError, match=r"needs psycopg: pip install 'audiocopy\[postgres\]'"):
        open_store("postgresql://u@127.0.0.1:1/db")


# --- SQLite only ----------------------------------------------------------------------

def test_sqlite_log_is_wal(tmp_path):
    path = tmp_path / "plays.sqlite"
    PlaysLog(path).add(_play())
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- PostgreSQL only: connections and their failures -----------------------------------

@pytest.fixture
def pg_backend(postgres_url):
    b = Backend("postgres", postgres_url)
    yield b
    for store in b.opened:
        store.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.postgres
def test_postgres_unreachable_server_is_a_quick_clear_error():
    pytest.importorskip("psycopg")
    t0 = time.monotonic()
    with pytest.raises(PlaysLogError, match=r"plays store postgresql://u:\*\*\*@127\.0\.0\.1:\d+/db: "
                                            r"the server is unreachable") as info:
        open_store(f"postgresql://u:secret@127.0.0.1:{_closed_port()}/db")
    assert time.monotonic() - t0 < 5 and "secret" not in str(info.value)


@pytest.mark.postgres
def test_postgres_silent_server_times_out_instead_of_hanging():
    pytest.importorskip("psycopg")
    with socket.socket() as silent:  # accepts TCP connections (the kernel does) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        with pytest.raises(PlaysLogError, match="did not answer within 2 s"):
            open_store(f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db", connect_timeout_s=2)
        assert time.monotonic() - t0 < 10  # libpq may try twice (with and without SSL)


@pytest.mark.postgres
def test_postgres_wrong_password_and_missing_database_are_named(postgres_server, postgres_url):
    with pytest.raises(PlaysLogError, match="refused the login .authentication failed") as info:
        open_store(postgres_server.url("postgres", password="wrong-password"))
    assert "wrong-password" not in str(info.value)
    with pytest.raises(PlaysLogError, match="database does not exist"):
        open_store(postgres_server.url("no_such_db"))


@pytest.mark.postgres
def test_postgres_store_reconnects_after_its_connections_are_cut(pg_backend):
    backend, log = pg_backend, pg_backend.open()
    log.add(_play(key="before"))
    # The server drops every connection of the store (as in a restart or a failover).
    cut = backend.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE application_name = 'audiocopy' AND pid <> pg_backend_pid()")
    assert cut[0][0] >= 1
    log.add(_play(key="after"))  # the idle connection is dead; the store opens a new one
    assert [p.key for p in log.query()] == ["after", "before"]


@pytest.mark.postgres
def test_postgres_types_keep_full_precision_and_booleans(pg_backend):
    backend, log = pg_backend, pg_backend.open()
    stored = log.add(_play(key="p", start_s=1234.123456789, time_scale=1.0123456789),
                     PlayOrigin("monitor", monitor_id="m", verified=True))
    (row,) = log.query()
    assert row == stored and row.start_s == 1234.123456789 and row.source_verified is True
    types = dict(backend.sql("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'plays'"))
    assert types["start_s"] == types["time_scale"] == "double precision" and types["source_verified"] == "boolean"


@pytest.mark.postgres
def test_postgres_statement_stuck_on_a_lock_times_out(postgres_url):
    import psycopg

    store = open_store(postgres_url, statement_timeout_s=0.5)
    try:
        with psycopg.connect(postgres_url) as holder:  # another client holds the table, as a stuck migration would
            holder.execute("LOCK TABLE plays IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            with pytest.raises(PlaysLogError, match="ran past statement_timeout"):
                store.count()
            assert time.monotonic() - t0 < 3  # cancelled by the server, and not retried
        assert store.count() == 0  # the lock gone, the store works again
    finally:
        store.close()


def test_overlapping_names_only_columns_of_the_plays_table(log):
    with pytest.raises(PlaysLogError, match="unknown plays column"):
        log.overlapping("radio", started_from="2024-01-01T00:00:00.000Z", started_before="2024-01-02T00:00:00.000Z",
                        ended_from="2024-01-01T00:00:00.000Z", columns=("track", "1; DROP TABLE plays"), limit=5)
    with pytest.raises(PlaysLogError):
        log.overlapping("radio", started_from="a", started_before="b", ended_from="a", columns=("track",), limit=0)


def test_sqlite_store_keeps_one_connection_per_thread_and_drops_a_broken_one(tmp_path, monkeypatch):
    """Opening a connection per call cost as much as the write: each thread now opens one and keeps it."""
    from audiocopy.plays import store as store_mod

    log_ = PlaysLog(tmp_path / "plays.sqlite")
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting_connect(*a, **kw):
        opened.append(threading.current_thread().name)
        return real_connect(*a, **kw)

    monkeypatch.setattr(store_mod.sqlite3, "connect", counting_connect)
    for k in range(20):
        log_.add(_play(started_at=f"2024-05-01T10:00:{k:02d}.000Z"))
    threads = [threading.Thread(target=lambda: [log_.add(_play(track="b")) for _ in range(5)], name=f"w{i}")
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log_.query(limit=100)) == 35
    assert sorted(opened) == sorted([threading.current_thread().name, "w0", "w1", "w2"])
    # A statement that fails drops the thread's connection; the next call opens a fresh one and works.
    with pytest.raises(PlaysLogError, match="no such table"):
        log_._run("SELECT * FROM no_such_table")
    assert len(log_.query(limit=100)) == 35 and opened.count(threading.current_thread().name) == 2
