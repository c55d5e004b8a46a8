"""HTTP side of the plays reports: totals per track, source or rights owner, and a day's timeline picture.

Place in the pipeline: the routes behind the Plays page's Reports section
(and scripts), over ``plays.reports`` (the SQL and the rules: a play
counts in the range where it starts, open plays are left out) and
``web.timeline_svg`` (the picture). Read-only, so no admin token, like the
rest of the plays API (``web.api``).

Titles, artists and rights owners are catalogue metadata
(``engines.metadata``), read from ``DB/metadata.json`` on each request: an
edit on the Catalog page shows in the next report without a reload. The
store and the file are read on the I/O pool, never on the event loop.

Errors: a bad argument (an unknown ``by`` or ``format``, a date that is not
ISO 8601, ``since`` after ``until``, a missing source, a day that is not
YYYY-MM-DD) is a 400 whose message names it; a store or a metadata file
that cannot be read is a 503.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from ..engines.metadata import read_metadata
from ..errors import ModelError
from ..plays.base import MAX_QUERY_ROWS, PlaysLogError
from ..plays.reports import REPORT_KEYS, ReportError, day_plays, parse_day, totals, totals_csv
from .keys import IO_EXECUTOR, PLAYS, SETTINGS
from .responses import fail
from .timeline_svg import render_timeline

#: Answer formats of ``/api/plays/totals``.
FORMATS = ("json", "csv")


async def _off_loop(request: web.Request, fn):
    """``fn()`` on the I/O pool; a bad argument is a 400, an unreadable store or metadata file a 503."""
    try:
        return await asyncio.get_running_loop().run_in_executor(request.app[IO_EXECUTOR], fn)
    except ReportError as exc:
        raise fail(400, "bad_query", str(exc)) from None
    except PlaysLogError as exc:
        raise fail(503, "store_unavailable", str(exc)) from None
    except ModelError as exc:
        raise fail(503, "metadata_unreadable", f"catalogue metadata: {exc}") from None


async def plays_totals(request: web.Request) -> web.Response:
    """GET /api/plays/totals?by=track|source|owner&since=&until=&format=json|csv&limit= : plays and seconds per group.

    A play counts in the range where it starts; open plays are left out.
    JSON: {"by", "since", "until", "totals": [...], "count", "truncated"};
    CSV: a download with the columns of ``plays.reports.CSV_FIELDS``.
    """
    q = request.query
    by, fmt = q.get("by", "track"), q.get("format", "json")
    since, until = q.get("since") or None, q.get("until") or None
    if by not in REPORT_KEYS:
        raise fail(400, "bad_query", f"by must be one of {', '.join(REPORT_KEYS)}; got {by[:40]!r}")
    if fmt not in FORMATS:
        raise fail(400, "bad_query", f"format must be one of {', '.join(FORMATS)}; got {fmt[:40]!r}")
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError:
        raise fail(400, "bad_query", "limit must be an integer") from None
    if not 1 <= limit <= MAX_QUERY_ROWS:
        raise fail(400, "bad_query", f"limit must be between 1 and {MAX_QUERY_ROWS}")
    store, db = request.app[PLAYS].log, request.app[SETTINGS].db

    def report():
        # Metadata only where the report shows it: per source needs no titles.
        metadata = read_metadata(db) if by != "source" else {}
        return totals(store, by, since=since, until=until, metadata=metadata, limit=limit)

    result = await _off_loop(request, report)
    if fmt == "csv":
        return web.Response(text=totals_csv(result), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="plays-totals-by-{by}.csv"'})
    return web.json_response(result.to_json())


async def plays_timeline_svg(request: web.Request) -> web.Response:
    """GET /api/plays/timeline.svg?source=NAME&day=YYYY-MM-DD : the source's plays on that UTC day (default today).

    An SVG picture (``web.timeline_svg``): at most
    ``plays.reports.MAX_TIMELINE_PLAYS`` plays, with a note when there were more.
    """
    q = request.query
    source = q.get("source", "")
    try:
        day = parse_day(q.get("day"))
    except ReportError as exc:
        raise fail(400, "bad_query", str(exc)) from None
    store, db = request.app[PLAYS].log, request.app[SETTINGS].db

    def picture():
        plays = day_plays(store, source, day)
        return render_timeline(plays, read_metadata(db))

    svg = await _off_loop(request, picture)
    # Short cache: today's picture changes as plays close; "no-store" would refetch on every scroll.
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8",
                        headers={"Cache-Control": "max-age=15"})
