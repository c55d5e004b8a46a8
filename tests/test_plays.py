"""Plays: the SQLite log and the exports (the stream decision is tested in test_stream_decision.py)."""
from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from audiocopy.decision.play import Play
from audiocopy.plays.export import to_csv, to_json
from audiocopy.plays.store import PlaysLog, PlaysLogError


def _play(track="a", source="radio", started_at="2024-05-01T10:00:00.000Z", **kw) -> Play:
    base = dict(track=track, source=source, start_s=1.0, end_s=11.0, confidence=1.5, peak_score=2.5, windows=17,
                started_at=started_at, ended_at=started_at)
    return Play(**{**base, **kw})


def test_log_is_wal_and_survives_reopen(tmp_path):
    path = tmp_path / "state" / "plays.sqlite"
    log = PlaysLog(path)
    stored = log.add(_play())
    assert stored.id == 1
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = PlaysLog(path)  # a restart
    assert again.count() == 1
    assert again.query()[0] == stored


def test_query_filters_newest_first(tmp_path):
    log = PlaysLog(tmp_path / "p.sqlite")
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


def test_query_rejects_bad_bounds(tmp_path):
    log = PlaysLog(tmp_path / "p.sqlite")
    with pytest.raises(PlaysLogError):
        log.query(since="yesterday")
    with pytest.raises(PlaysLogError):
        log.query(limit=0)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "plays.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PlaysLogError, match="not usable"):
        PlaysLog(bad)


def test_csv_and_json_export(tmp_path):
    log = PlaysLog(tmp_path / "p.sqlite")
    log.add(_play("=HYPERLINK(\"x\")", "radio, one"))
    rows = list(csv.DictReader(io.StringIO(to_csv(log.query()))))
    assert len(rows) == 1
    assert rows[0]["track"].startswith("'=")  # not run as a formula by spreadsheets
    assert rows[0]["source"] == "radio, one" and rows[0]["duration_s"] == "10.0" and rows[0]["windows"] == "17"
    (j,) = to_json(log.query())
    assert j["track"] == "=HYPERLINK(\"x\")" and j["duration_s"] == 10.0 and j["id"] == 1
