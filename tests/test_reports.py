"""Reports on the plays store: totals per track, source and rights owner, their CSV and JSON, and the day timeline.

The store-level tests run against both backends (the SQLite log, and a real
PostgreSQL server with ``pytest -m postgres``), with the fixtures of
test_plays.py, so the report SQL is held to the same answers in both. Every
store holds synthetic plays whose totals are known by construction.

The rule under test for date ranges: a play counts, with all of its
seconds, in the range where it starts; two adjacent ranges add up to the
range that holds both.
"""
from __future__ import annotations

import csv
import io
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401
from test_plays import backend, log  # noqa: F401
from test_web_fixtures import TOKEN, make_client, recognizer, settings  # noqa: F401

from audiocopy.decision.play import Play
from audiocopy.engines import metadata
from audiocopy.engines.metadata import TrackMeta
from audiocopy.plays import reports
from audiocopy.plays.reports import ReportError, day_plays, parse_day, totals, totals_csv
from audiocopy.plays.store import PlaysLog
from audiocopy.web.app import PLAYS_FILE
from audiocopy.web.timeline_svg import MAX_LANES, render_timeline

SVG = "{http://www.w3.org/2000/svg}"

META = {
    "alpha": TrackMeta("Alpha Song", "The As", rights_owner="Label One"),
    "beta": TrackMeta("Beta Song", "", rights_owner="Label One"),
    "gamma": TrackMeta("Gamma Song", "The Gs", rights_owner="Label Two"),
    # "delta" has no record at all; "epsilon" has one without an owner.
    "epsilon": TrackMeta("Epsilon", "E"),
}


def _play(track: str, source: str, started_at: str, seconds: float, *, ended_at: str | None = None,
          **kw) -> Play:
    return Play(track=track, source=source, start_s=5.0, end_s=5.0 + seconds, confidence=1.0, peak_score=2.0,
                windows=10, started_at=started_at, ended_at=ended_at or started_at, **kw)


def _fill(store) -> None:
    """Known plays: per track, per source and per owner totals below are computed by hand."""
    store.add(_play("alpha", "radio one", "2024-05-01T10:00:00.000Z", 30))
    store.add(_play("alpha", "radio two", "2024-05-02T10:00:00.000Z", 20))
    store.add(_play("beta", "radio one", "2024-05-02T11:00:00.000Z", 50))
    store.add(_play("gamma", "radio one", "2024-05-03T09:00:00.000Z", 40))
    store.add(_play("delta", "radio two", "2024-05-03T12:00:00.000Z", 15))
    store.add(_play("epsilon", "radio two", "2024-05-03T13:00:00.000Z", 5))
    store.add(_play("gamma", "radio one", "2024-05-03T14:00:00.000Z", 99, key="open-1", open=True))  # not counted


def _rows(report, *keys):
    return [tuple(row[k] for k in keys) for row in report.rows]


# --- totals --------------------------------------------------------------------------------------------------------

def test_totals_per_track_source_and_owner(log):
    _fill(log)
    by_track = totals(log, "track", metadata=META)
    assert _rows(by_track, "track", "plays", "seconds") == [("alpha", 2, 50.0), ("beta", 1, 50.0),
                                                             ("gamma", 1, 40.0), ("delta", 1, 15.0),
                                                             ("epsilon", 1, 5.0)]
    assert _rows(by_track, "track", "title", "artist")[:3] == [("alpha", "Alpha Song", "The As"),
                                                                ("beta", "Beta Song", None),
                                                                ("gamma", "Gamma Song", "The Gs")]
    assert _rows(by_track, "title")[3] == (None,)  # delta: no record, no title
    by_source = totals(log, "source")
    assert _rows(by_source, "source", "plays", "seconds") == [("radio one", 3, 120.0), ("radio two", 3, 40.0)]
    by_owner = totals(log, "owner", metadata=META)
    assert _rows(by_owner, "owner", "tracks", "plays", "seconds") == [("Label One", 2, 3, 100.0),
                                                                      ("Label Two", 1, 1, 40.0),
                                                                      (None, 2, 2, 20.0)]  # delta + epsilon
    assert by_owner.rows[0]["first_at"] == "2024-05-01T10:00:00.000Z"
    assert by_owner.rows[0]["last_at"] == "2024-05-02T11:00:00.000Z"
    assert not by_owner.truncated and by_owner.to_json()["count"] == 3


def test_owner_totals_sum_sql_aggregates_never_play_rows(log, monkeypatch):
    """300 plays of 3 tracks: the store hands back 3 aggregated rows, not 300 plays."""
    for i in range(300):
        log.add(_play(("alpha", "beta", "gamma")[i % 3], "radio one", f"2024-05-01T{i // 60:02d}:{i % 60:02d}:00.000Z",
                      2))
    fetched = []
    run = type(log)._run

    def spy(self, sql, args=(), *, fetch=None):
        rows = run(self, sql, args, fetch=fetch)
        if fetch == "all":
            fetched.append(len(rows))
        return rows

    monkeypatch.setattr(type(log), "_run", spy)
    report = totals(log, "owner", metadata=META)
    assert _rows(report, "owner", "plays", "seconds") == [("Label One", 200, 400.0), ("Label Two", 100, 200.0)]
    assert fetched == [3]


def test_a_play_counts_in_the_range_where_it_starts(log):
    # Starts on 31 May, ends on 1 June: all its 300 s belong to May.
    log.add(_play("alpha", "radio one", "2024-05-31T23:58:00.000Z", 300, ended_at="2024-06-01T00:03:00.000Z"))
    log.add(_play("beta", "radio one", "2024-06-01T00:00:00.000Z", 60))  # the first instant of June
    may = totals(log, "track", since="2024-05-01", until="2024-05-31")
    june = totals(log, "track", since="2024-06-01", until="2024-06-30")
    both = totals(log, "track", since="2024-05-01", until="2024-06-30")
    assert _rows(may, "track", "seconds") == [("alpha", 300.0)]
    assert _rows(june, "track", "seconds") == [("beta", 60.0)]
    assert sorted(_rows(may, "track", "seconds") + _rows(june, "track", "seconds")) == \
        sorted(_rows(both, "track", "seconds"))  # adjacent ranges add up
    # Times as bounds are inclusive and compared in UTC (+02:00 moved to Z).
    assert _rows(totals(log, "track", since="2024-06-01T02:00:00+02:00"), "track") == [("beta",)]
    assert _rows(totals(log, "track", until="2024-05-31T23:57:59Z"), "track") == []


@pytest.mark.parametrize("kwargs, message", [
    ({"by": "album"}, "totals are by one of track, source, owner"),
    ({"by": "track; DROP TABLE plays"}, "totals are by"),
    ({"by": "track", "since": "yesterday"}, "not an ISO 8601"),
    ({"by": "track", "until": "2024-13-01"}, "not an ISO 8601"),
    ({"by": "track", "since": "2024-05-02", "until": "2024-05-01"}, "since .* is after until"),
    ({"by": "owner", "since": "2024-05-02T10:00Z", "until": "2024-05-02T09:59Z"}, "is after until"),
    ({"by": "track", "limit": 0}, "limit must be between"),
    ({"by": "source", "limit": 10**9}, "limit must be between"),
])
def test_bad_report_arguments_are_clear_errors(log, kwargs, message):
    with pytest.raises(ReportError, match=message):
        totals(log, **kwargs)


def test_a_one_day_range_is_not_empty(log):
    log.add(_play("alpha", "radio one", "2024-05-02T23:59:59.000Z", 1))
    assert _rows(totals(log, "track", since="2024-05-02", until="2024-05-02"), "track") == [("alpha",)]


def test_limit_marks_the_report_truncated(log):
    _fill(log)
    report = totals(log, "track", metadata=META, limit=2)
    assert len(report.rows) == 2 and report.truncated and report.to_json()["truncated"] is True
    assert not totals(log, "track", limit=5).truncated  # exactly five tracks: nothing left out
    owners = totals(log, "owner", metadata=META, limit=1)
    assert _rows(owners, "owner") == [("Label One",)] and owners.truncated


# --- CSV and JSON --------------------------------------------------------------------------------------------------

def test_totals_csv_columns_and_spreadsheet_guard(log):
    log.add(_play("=HYPERLINK(\"http://x\")", "@radio", "2024-05-01T10:00:00.000Z", 12))
    log.add(_play("alpha", "radio one", "2024-05-01T11:00:00.000Z", 30))
    meta = {**META, "=HYPERLINK(\"http://x\")": TrackMeta("+cmd", "-artist", rights_owner="=owner")}
    rows = list(csv.DictReader(io.StringIO(totals_csv(totals(log, "track", metadata=meta)))))
    assert list(rows[0]) == ["track", "title", "artist", "plays", "seconds", "first_at", "last_at"]
    assert (rows[0]["track"], rows[0]["title"], rows[0]["artist"], rows[0]["plays"], rows[0]["seconds"]) == \
        ("alpha", "Alpha Song", "The As", "1", "30.0")
    assert (rows[1]["track"], rows[1]["title"], rows[1]["artist"]) == ("'=HYPERLINK(\"http://x\")", "'+cmd", "'-artist")
    sources = list(csv.DictReader(io.StringIO(totals_csv(totals(log, "source")))))
    assert [r["source"] for r in sources] == ["radio one", "'@radio"]
    owners = list(csv.DictReader(io.StringIO(totals_csv(totals(log, "owner", metadata=meta)))))
    assert list(owners[0]) == ["owner", "tracks", "plays", "seconds", "first_at", "last_at"]
    assert [(r["owner"], r["tracks"]) for r in owners] == [("Label One", "1"), ("'=owner", "1")]
    empty = totals_csv(totals(log, "owner", since="2030-01-01"))
    assert empty == "owner,tracks,plays,seconds,first_at,last_at\n"


# --- a day's plays and its picture ---------------------------------------------------------------------------------

def _day_store(log):
    log.add(_play("alpha", "radio", "2024-04-30T23:50:00.000Z", 900, ended_at="2024-05-01T00:05:00.000Z"))  # crosses
    log.add(_play("beta", "radio", "2024-05-01T10:00:00.000Z", 200, ended_at="2024-05-01T10:03:20.000Z",
                  alteration="speed", time_scale=1.06, pitch_semitones=1.0))
    log.add(_play("<script>", "radio", "2024-05-01T12:00:00.000Z", 60, ended_at="2024-05-01T12:01:00.000Z",
                  key="open-now", open=True))
    log.add(_play("alpha", "radio", "2024-05-01T23:59:00.000Z", 120, ended_at="2024-05-02T00:01:00.000Z",
                  key="crashed", open=True))
    log.add(_play("beta", "radio two", "2024-05-01T11:00:00.000Z", 60, ended_at="2024-05-01T11:01:00.000Z"))
    log.add(_play("beta", "radio", "2024-05-02T00:00:00.000Z", 60, ended_at="2024-05-02T00:01:00.000Z"))  # next day
    log.add(_play("beta", "radio", "2024-04-30T23:00:00.000Z", 60, ended_at="2024-04-30T23:01:00.000Z"))  # day before
    log.recover()  # "crashed" (and "open-now") become recovered...
    log.add(_play("<script>", "radio", "2024-05-01T12:00:00.000Z", 61, ended_at="2024-05-01T12:01:01.000Z",
                  key="open-again", open=True))  # ...and one stays open


def test_day_plays_are_the_exact_source_overlapping_the_day(log):
    _day_store(log)
    day = day_plays(log, "radio", date(2024, 5, 1))
    assert [(p["track"], p["started_at"][11:16], p["status"]) for p in day.plays] == [
        ("alpha", "23:50", "closed"), ("beta", "10:00", "closed"), ("<script>", "12:00", "recovered"),
        ("<script>", "12:00", "open"), ("alpha", "23:59", "recovered")]
    assert day.total == 5 and not day.truncated
    assert day.start == datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp() and day.end == day.start + 86400
    assert day_plays(log, "RADIO", date(2024, 5, 1)).plays == []  # exact name, not a substring filter
    assert [p["track"] for p in day_plays(log, "radio two", date(2024, 5, 1)).plays] == ["beta"]
    cut = day_plays(log, "radio", date(2024, 5, 1), max_plays=2)
    assert len(cut.plays) == 2 and cut.total == 5 and cut.truncated
    with pytest.raises(ReportError, match="source is required"):
        day_plays(log, " ", date(2024, 5, 1))
    with pytest.raises(ReportError, match="max_plays"):
        day_plays(log, "radio", date(2024, 5, 1), max_plays=0)


@pytest.mark.parametrize("text", ["2024-13-01", "2024-02-30", "2024-5-1", "yesterday", "2024-05-01T00:00",
                                  "20240501", "2024-05-01; DROP"])
def test_bad_days_are_refused(text):
    with pytest.raises(ReportError, match="day"):
        parse_day(text)


def test_a_day_defaults_to_today_in_utc():
    assert parse_day("2024-02-29") == date(2024, 2, 29)
    assert parse_day(None, today=date(2020, 1, 2)) == date(2020, 1, 2)
    assert parse_day("") == datetime.now(timezone.utc).date()


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def test_timeline_svg_draws_one_bar_per_play_and_escapes_names(log):
    _day_store(log)
    meta = {"beta": TrackMeta("Beta & <b>bold</b>", "Band \"Q\"")}
    svg = render_timeline(day_plays(log, "radio", date(2024, 5, 1)), meta)
    root = _parse(svg)
    bars = root.findall(f".//{SVG}rect[@data-id]")
    assert len(bars) == 5
    assert sorted(b.get("class") for b in bars) == ["play closed", "play closed", "play open", "play recovered",
                                                    "play recovered"]
    # Each status is drawn differently (dashed outline for open plays).
    styles = {b.get("class"): (b.get("fill"), b.get("stroke-dasharray")) for b in bars}
    assert len(set(styles.values())) == 3 and styles["play open"][1] is not None
    lanes = root.findall(f".//{SVG}g[@class='lane']")
    assert [g.get("data-track") for g in lanes] == ["alpha", "beta", "<script>"]  # first heard first
    assert lanes[1].find(f"{SVG}text").text == "Band \"Q\" – Beta & <b>bold</b>"
    assert "<script>" not in svg and "<b>" not in svg  # only ever escaped
    assert "&lt;script&gt;" in svg
    tips = [b.find(f"{SVG}title").text for b in bars]
    assert any("alteration speed" in t and "time scale 1.060" in t and "pitch +1.00 st" in t for t in tips)
    # Bars stay inside the day: the play from the night before starts at the left edge.
    xs = [float(b.get("x")) for b in bars]
    widths = [float(b.get("width")) for b in bars]
    assert min(xs) == pytest.approx(230.0) and max(x + w for x, w in zip(xs, widths)) <= 230.0 + 800.0 + 1e-6
    assert root.findall(f".//{SVG}text[@class='note']") == []


def test_timeline_svg_notes_truncation_and_empty_days_and_strips_control_characters(log):
    _day_store(log)
    cut = render_timeline(day_plays(log, "radio", date(2024, 5, 1), max_plays=2), {})
    notes = [n.text for n in _parse(cut).findall(f".//{SVG}text[@class='note']")]
    assert notes == ["Showing the first 2 of 5 plays of this day."]
    assert len(_parse(cut).findall(f".//{SVG}rect[@data-id]")) == 2
    empty = render_timeline(day_plays(log, "radio", date(2023, 1, 1)), {})
    assert [n.text for n in _parse(empty).findall(f".//{SVG}text[@class='note']")] == \
        ["No plays on this source on this day."]
    log.add(_play("bell\x07\x1b[31m", "ctl\x01radio", "2024-05-01T10:00:00.000Z", 5))  # (PostgreSQL refuses NUL)
    svg = render_timeline(day_plays(log, "ctl\x01radio", date(2024, 5, 1)), {})
    assert "\x07" not in svg and "\x01" not in svg and len(_parse(svg).findall(f".//{SVG}rect[@data-id]")) == 1


def test_timeline_lanes_are_bounded(log):
    for i in range(MAX_LANES + 5):
        log.add(_play(f"t{i:03d}", "busy", f"2024-05-01T{i // 60:02d}:{i % 60:02d}:00.000Z", 30,
                      ended_at=f"2024-05-01T{i // 60:02d}:{i % 60:02d}:30.000Z"))
    root = _parse(render_timeline(day_plays(log, "busy", date(2024, 5, 1)), {}))
    lanes = root.findall(f".//{SVG}g[@class='lane']")
    assert len(lanes) == MAX_LANES and lanes[-1].get("data-track") == "6 other tracks"
    assert len(root.findall(f".//{SVG}rect[@data-id]")) == MAX_LANES + 5  # every play is still drawn


# --- the HTTP API --------------------------------------------------------------------------------------------------

@pytest.fixture
def report_settings(settings, tiny_db, tmp_path):
    """A copy of the tiny catalogue with metadata, and a plays log holding the known plays."""
    db = tmp_path / "db"
    shutil.copytree(tiny_db, db, ignore=shutil.ignore_patterns("dataset", "server"))
    metadata.update_metadata(db, {**META, "<script>": TrackMeta("<img src=x onerror=alert(1)>")})
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    _fill(store)
    _day_store(store)  # (the app closes the plays still open as recovered when it starts: they count)
    return replace(settings, db=db)


@pytest.mark.asyncio
async def test_totals_api_json_and_csv(make_client, report_settings):
    client = await make_client(db=report_settings.db)
    r = await client.get("/api/plays/totals?by=owner&since=2024-05-02&until=2024-05-03")
    assert r.status == 200
    body = await r.json()
    assert (body["by"], body["since"], body["until"], body["truncated"]) == ("owner", "2024-05-02", "2024-05-03", False)
    assert [(t["owner"], t["plays"], t["seconds"]) for t in body["totals"]] == [
        ("Label Two", 2, 139.0), ("Label One", 3, 130.0), (None, 2, 20.0)]  # gamma's 99 s recovered at start
    r = await client.get("/api/plays/totals?by=track&since=2024-05-01&until=2024-05-01")
    rows = (await r.json())["totals"]
    assert ("alpha", "Alpha Song", "The As", 2) in [(t["track"], t["title"], t["artist"], t["plays"]) for t in rows]
    r = await client.get("/api/plays/totals?by=source&format=csv&since=2024-05-01&until=2024-05-03")
    assert r.status == 200 and r.content_type == "text/csv"
    assert 'filename="plays-totals-by-source.csv"' in r.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(await r.text())))
    # radio one: 30 + 50 + 40 + 99 (recovered); radio two: 20 + 15 + 5 + 60; radio: 200 + 60 + 120 + 60 + 61 (the
    # plays that start on 30 April are out).
    assert {t["source"]: (t["plays"], t["seconds"]) for t in table} == {
        "radio one": ("4", "219.0"), "radio two": ("4", "100.0"), "radio": ("5", "501.0")}
    default = await (await client.get("/api/plays/totals")).json()
    assert default["by"] == "track" and default["count"] == 6  # alpha, beta, gamma, delta, epsilon, <script>


@pytest.mark.asyncio
@pytest.mark.parametrize("query, message", [
    ("by=album", "by must be one of track, source, owner"),
    ("format=xml", "format must be one of json, csv"),
    ("since=yesterday", "not an ISO 8601"),
    ("since=2024-05-03&until=2024-05-01", "is after until"),
    ("limit=x", "limit must be an integer"),
    ("limit=0", "limit must be between"),
])
async def test_totals_api_bad_query_is_400(make_client, report_settings, query, message):
    client = await make_client(db=report_settings.db)
    r = await client.get(f"/api/plays/totals?{query}")
    assert r.status == 400
    error = (await r.json())["error"]
    assert error["code"] == "bad_query" and message in error["message"]


@pytest.mark.asyncio
async def test_timeline_api_answers_an_svg(make_client, report_settings):
    client = await make_client(db=report_settings.db)
    r = await client.get("/api/plays/timeline.svg?source=radio&day=2024-05-01")
    assert r.status == 200 and r.content_type == "image/svg+xml"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    text = await r.text()
    root = _parse(text)
    assert len(root.findall(f".//{SVG}rect[@data-id]")) == 5
    assert "<img" not in text and "<script>" not in text
    assert [g.find(f"{SVG}text").text for g in root.findall(f".//{SVG}g[@class='lane']")][2] == \
        "<img src=x onerror=alert(1)>"  # the title, as text
    today = await client.get("/api/plays/timeline.svg?source=radio")  # no day: today (UTC)
    assert today.status == 200
    assert datetime.now(timezone.utc).date().isoformat() in _parse(await today.text()).find(f"{SVG}title").text


@pytest.mark.asyncio
@pytest.mark.parametrize("query, message", [
    ("source=radio&day=2024-02-30", "is not a calendar date"),
    ("source=radio&day=01/05/2024", "day must be a date as YYYY-MM-DD"),
    ("day=2024-05-01", "source is required"),
    ("source=&day=2024-05-01", "source is required"),
])
async def test_timeline_api_bad_query_is_400(make_client, report_settings, query, message):
    client = await make_client(db=report_settings.db)
    r = await client.get(f"/api/plays/timeline.svg?{query}")
    assert r.status == 400 and r.content_type == "application/json"
    assert message in (await r.json())["error"]["message"]


@pytest.mark.asyncio
async def test_unreadable_metadata_is_503_not_a_wrong_report(make_client, report_settings):
    (report_settings.db / metadata.METADATA_FILE).write_text("{not json", encoding="utf-8")
    client = await make_client(db=report_settings.db)
    r = await client.get("/api/plays/totals?by=owner")
    assert r.status == 503 and (await r.json())["error"]["code"] == "metadata_unreadable"
    assert (await client.get("/api/plays/totals?by=source")).status == 200  # needs no metadata


def test_reports_module_names_its_limits():
    assert reports.MAX_TIMELINE_PLAYS == 2000 and reports.REPORT_KEYS == ("track", "source", "owner")
