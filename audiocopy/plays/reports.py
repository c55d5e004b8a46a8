"""Reports on the plays store: totals per track, source and rights owner over a date range, and a day's plays.

Place in the pipeline: beside ``plays.export``, above the store
(``plays.base.PlayStore``, either backend) and under the web API
(``web.reports_api``) and the Plays page. It only reads the store.

The rules, the same wherever a report is shown:

* **A play counts in the range where it starts.** ``since`` and ``until``
  bound ``started_at`` (a bare date as ``until`` means the whole of that
  day), as in ``PlayStore.query``; a play that starts on 31 May and ends on
  1 June is counted, all of its seconds, in a report on May. A play is
  never split between two reports, so two adjacent ranges add up to the
  range that holds both.
* **Seconds are stream seconds** (``end_s - start_s``), what was heard,
  not wall-clock time.
* **Open plays are left out** (their length is not known yet); plays
  recovered after a crash count as far as their last update.

SQL aggregation. Per track and per source, the database groups and sums
(``PlayStore.totals``): a report over a year of plays reads back one row
per track or source, never the plays. Per rights owner, the owner of a
track is catalogue metadata (``DB/metadata.json``, ``engines.metadata``),
not a column of the plays store, so the database cannot group by it. The
report asks the database for the totals per track (still one aggregated
row per track) and adds those rows up per owner in Python. That last step
is proportional to the number of distinct tracks played, which is bounded
by the catalogue (thousands), not by the number of plays (millions): no
play row is ever loaded. A join in SQL would need a copy of the metadata
inside each database, kept in step with every edit; summing a few thousand
rows costs less than that copy would.

The day's plays for the timeline picture (``day_plays``) are the one query
here that reads plays themselves, so it is bounded: at most ``max_plays``
rows (the picture says when there were more), and only plays that started
at most ``LOOKBACK_S`` before the day (so the query can use the index on
``started_at``).

Dialect. Every query is the store's own (``PlayStore.totals``,
``PlayStore.overlapping``), written once for SQLite and PostgreSQL; this
module only shapes and sums what they return.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone

from ..decision.play import iso_utc
from ..engines.metadata import TrackMeta
from .base import MAX_QUERY_ROWS, PlaysLogError, PlayStore, normalise_time
from .export import csv_safe

#: What a totals report can be grouped by.
REPORT_KEYS = ("track", "source", "owner")
#: Most plays one timeline picture draws (a busy source has a few hundred a day).
MAX_TIMELINE_PLAYS = 2000
#: How long before a day a play may have started and still be drawn on it (the query's index bound).
LOOKBACK_S = 24 * 3600.0
#: Columns a timeline needs of each play.
TIMELINE_COLUMNS = ("id", "track", "status", "start_s", "end_s", "started_at", "ended_at", "confidence",
                    "alteration", "time_scale", "pitch_semitones")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportError(PlaysLogError):
    """A report was asked for with an invalid argument (the API answers 400 with this message)."""


@dataclass(frozen=True)
class TotalsReport:
    """Totals of one report.

    by: one of ``REPORT_KEYS``. since, until: the bounds as given (None: open).
    rows: one dict per group, most seconds first, with keys ``by`` (the
        name; None for tracks without a rights owner when by="owner"),
        "plays", "seconds", "first_at" (earliest start), "last_at" (latest
        end); per track also "title" and "artist" (None when unknown); per
        owner also "tracks" (distinct tracks played).
    truncated: there were more groups than the report's limit.
    """

    by: str
    since: str | None
    until: str | None
    rows: list[dict]
    truncated: bool

    def to_json(self) -> dict:
        return {"by": self.by, "since": self.since, "until": self.until, "totals": self.rows,
                "count": len(self.rows), "truncated": self.truncated}


def check_range(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``since`` and ``until`` in the store's format (None stays None); ``ReportError`` when since > until.

    Each is an ISO 8601 date or time (a bare ``until`` date is the end of that day).
    """
    try:
        lo = normalise_time(since) if since else None
        hi = normalise_time(until, end=True) if until else None
    except PlaysLogError as exc:  # a bad bound is the caller's error, not the store's
        raise ReportError(str(exc)) from None
    if lo is not None and hi is not None and lo > hi:
        raise ReportError(f"the range is empty: since ({since}) is after until ({until})")
    return lo, hi


def totals(store: PlayStore, by: str, *, since: str | None = None, until: str | None = None,
           metadata: Mapping[str, TrackMeta] | None = None, limit: int = 1000) -> TotalsReport:
    """Plays and seconds played per track, source or rights owner between ``since`` and ``until``.

    store: either backend. by: one of ``REPORT_KEYS``. since, until: ISO
    8601 bounds on a play's start (see the module docstring). metadata:
    track id -> ``TrackMeta`` (``engines.metadata.read_metadata``): titles
    and artists per track, the owner per track for by="owner"; tracks
    without a record have no title and no owner. limit: most rows returned
    (1..``MAX_QUERY_ROWS``). Raises ``ReportError`` (or the store's
    ``PlaysLogError``) for a bad argument or an unreadable store.
    """
    if by not in REPORT_KEYS:
        raise ReportError(f"totals are by one of {', '.join(REPORT_KEYS)}; got {by!r}")
    if not 1 <= limit <= MAX_QUERY_ROWS:
        raise ReportError(f"limit must be between 1 and {MAX_QUERY_ROWS}, got {limit}")
    check_range(since, until)
    metadata = metadata or {}
    if by == "owner":
        return _owner_totals(store, since, until, metadata, limit)
    # One row more than asked: whether there were more groups, without counting them all.
    rows = store.totals(by, since=since, until=until, limit=min(limit + 1, MAX_QUERY_ROWS))
    truncated = len(rows) > limit
    rows = rows[:limit]
    if by == "track":
        rows = [_with_title(row, metadata.get(row["track"])) for row in rows]
    return TotalsReport(by, since, until, rows, truncated)


def _with_title(row: dict, meta: TrackMeta | None) -> dict:
    out = {"track": row["track"], "title": meta.title if meta else None,
           "artist": (meta.artist or None) if meta else None}
    out.update((k, v) for k, v in row.items() if k != "track")
    return out


def _owner_totals(store: PlayStore, since, until, metadata: Mapping[str, TrackMeta], limit: int) -> TotalsReport:
    """The per-track totals (aggregated in SQL), added up per rights owner."""
    per_track = store.totals("track", since=since, until=until, limit=MAX_QUERY_ROWS)
    if len(per_track) >= MAX_QUERY_ROWS:
        # Never a silent undercount: an owner's total missing some tracks would be wrong evidence.
        raise ReportError(f"more than {MAX_QUERY_ROWS} distinct tracks in the range; narrow the dates")
    owners: dict[str | None, dict] = {}
    for row in per_track:
        meta = metadata.get(row["track"])
        owner = (meta.rights_owner or None) if meta else None
        acc = owners.setdefault(owner, {"owner": owner, "tracks": 0, "plays": 0, "seconds": 0.0,
                                        "first_at": row["first_at"], "last_at": row["last_at"]})
        acc["tracks"] += 1
        acc["plays"] += row["plays"]
        acc["seconds"] += row["seconds"]
        acc["first_at"] = min(acc["first_at"], row["first_at"])
        acc["last_at"] = max(acc["last_at"], row["last_at"])
    for acc in owners.values():
        acc["seconds"] = round(acc["seconds"], 3)
    # Most seconds first, like the store's totals; the tracks without an owner last among equals.
    rows = sorted(owners.values(), key=lambda r: (-r["seconds"], r["owner"] is None, r["owner"] or ""))
    return TotalsReport("owner", since, until, rows[:limit], len(rows) > limit)


#: CSV columns per report kind (a track's title and artist beside its id; an owner's count of tracks).
CSV_FIELDS = {
    "track": ("track", "title", "artist", "plays", "seconds", "first_at", "last_at"),
    "source": ("source", "plays", "seconds", "first_at", "last_at"),
    "owner": ("owner", "tracks", "plays", "seconds", "first_at", "last_at"),
}


def totals_csv(report: TotalsReport) -> str:
    """The report as CSV text (header + one row per group; None is an empty cell).

    Names come from users (track ids, sources, metadata), so a cell a
    spreadsheet would run as a formula is quoted (``plays.export.csv_safe``).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = CSV_FIELDS[report.by]
    writer.writerow(fields)
    for row in report.rows:
        writer.writerow([csv_safe(row.get(f)) for f in fields])
    return buf.getvalue()


# --- a day's plays on one source -------------------------------------------------------


@dataclass(frozen=True)
class DayPlays:
    """The plays of one source that overlap one UTC day, oldest first.

    day: the day. start, end: its bounds as epoch seconds (end exclusive).
    plays: up to ``max_plays`` dicts with ``TIMELINE_COLUMNS`` (open plays
        included: a timeline shows what is being played too).
    total: how many plays overlap the day in all (> len(plays) when cut).
    """

    source: str
    day: date
    start: float
    end: float
    plays: list[dict]
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.plays)


def parse_day(text: str | None, *, today: date | None = None) -> date:
    """A UTC day from "YYYY-MM-DD"; None or "" is ``today`` (default: today in UTC).

    Raises ``ReportError`` naming the expected form.
    """
    if not text:
        return today or datetime.now(timezone.utc).date()
    text = text.strip()
    if not _DAY.fullmatch(text):
        raise ReportError(f"day must be a date as YYYY-MM-DD, got {text[:40]!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"day {text!r} is not a calendar date") from None


def day_plays(store: PlayStore, source: str, day: date, *, max_plays: int = MAX_TIMELINE_PLAYS) -> DayPlays:
    """The plays of ``source`` (exact name) that overlap the UTC ``day``: bounded (see ``DayPlays``).

    A play overlaps the day when it starts before the day's end and ends at
    or after its start; only plays that started at most ``LOOKBACK_S``
    before the day are looked at. Raises ``ReportError`` for an empty
    source or a bad ``max_plays``.
    """
    if not source or not source.strip():
        raise ReportError("source is required (the name of a source, as /api/plays/sources lists them)")
    if not 1 <= max_plays <= MAX_QUERY_ROWS:
        raise ReportError(f"max_plays must be between 1 and {MAX_QUERY_ROWS}, got {max_plays}")
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    end = start + 86400.0
    # Text bounds in the stored format ("...T00:00:00.000Z"), which sorts by time.
    lo, hi, back = iso_utc(start), iso_utc(end), iso_utc(start - LOOKBACK_S)
    total, plays = store.overlapping(source, started_from=back, started_before=hi, ended_from=lo,
                                     columns=TIMELINE_COLUMNS, limit=max_plays)
    return DayPlays(source, day, start, end, plays, max(total, len(plays)))


def epoch_of(stamp: str) -> float:
    """Epoch seconds of a stored UTC time ("2024-05-01T10:00:00.000Z")."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()  # (3.10 cannot read "Z")

