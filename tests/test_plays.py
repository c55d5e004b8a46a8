"""Plays: windows -> play events (gaps, minimum length), the SQLite log, exports."""
from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from audiocopy.decision.plays import Play, PlayTracker
from audiocopy.plays.export import to_csv, to_json
from audiocopy.plays.store import PlaysLog, PlaysLogError

HOP = 0.5


def feed(tracker: PlayTracker, labels: list[str | None], score: float = 2.0) -> list[Play]:
    """One window per label, every hop; returns the plays closed on the way and at the end."""
    out = []
    for i, label in enumerate(labels):
        out += tracker.update(i * HOP, label, score if label else -1.0)
    return out + tracker.flush()


def tracker(**kw) -> PlayTracker:
    return PlayTracker("radio", window_s=2.5, wall_start=1_700_000_000.0, **kw)


def test_consecutive_windows_make_one_play():
    plays = feed(tracker(), [None, "a", "a", "a", "a", None, None])
    assert len(plays) == 1
    p = plays[0]
    assert (p.track, p.source, p.start_s, p.end_s, p.windows) == ("a", "radio", 0.5, 2.0 + 2.5, 4)
    assert p.confidence == pytest.approx(2.0) and p.peak_score == pytest.approx(2.0)
    assert p.started_at == "2023-11-14T22:13:20.500Z" and p.ended_at == "2023-11-14T22:13:24.500Z"


def test_short_gap_does_not_split_a_play_but_a_long_one_does():
    # one missed window (0.5 s) is bridged; four (2 s > gap 1.5 s) close the play
    plays = feed(tracker(gap_s=1.5), ["a", "a", None, "a", "a", None, None, None, None, "a", "a"])
    assert [(p.start_s, p.windows) for p in plays] == [(0.0, 4), (4.5, 2)]


def test_play_closes_when_gap_passes_even_while_another_track_plays():
    t = tracker(gap_s=1.0)
    closed = []
    for i, label in enumerate(["a", "a", "b", "b", "b", "b"]):
        closed += t.update(i * HOP, label, 1.0)
    assert [p.track for p in closed] == ["a"]  # closed at 2.0 s, 1.5 s after its last window
    assert t.open_tracks == ["b"]


def test_single_window_is_not_a_play_by_default():
    assert feed(tracker(), [None, "a", None, None, None, None]) == []
    assert len(feed(tracker(min_windows=1), [None, "a", None])) == 1


def test_confidence_is_mean_and_peak_is_max():
    t = tracker()
    t.update(0.0, "a", 1.0)
    t.update(0.5, "a", 3.0)
    (p,) = t.flush()
    assert p.confidence == pytest.approx(2.0) and p.peak_score == pytest.approx(3.0)


def test_tracker_rejects_bad_parameters():
    with pytest.raises(ValueError):
        tracker(gap_s=0)
    with pytest.raises(ValueError):
        tracker(min_windows=0)


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
