"""Plays as CSV and JSON, safe to open in a spreadsheet.

Place in the pipeline: after the plays store, under the web API and the CLI.
Track and source names come from users, so a cell a spreadsheet would run as
a formula (leading ``= + - @``) is prefixed with a quote. The columns of the
first plays log come first, in their old order, so a spreadsheet or script
built on them still reads its columns; the evidence of alteration, the
play's status and its provenance follow, then the track's title and artist
(looked up by the caller in the catalogue's metadata: the store keeps the
track id, the stable key, and a title edited later shows in every export).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable

from ..decision.play import Play

EXPORT_FIELDS = ("id", "track", "source", "start_s", "end_s", "duration_s", "confidence", "peak_score",
                 "windows", "started_at", "ended_at",
                 "status", "key", "track_start_s", "track_end_s", "time_scale", "pitch_semitones", "alteration",
                 "source_kind", "monitor_id", "source_verified", "updated_at", "title", "artist")

#: ``track id -> {"title", "artist"}`` (``engines.metadata.describe``); None: no titles known.
Titles = Callable[[str], dict] | None


def to_csv(plays: Iterable[Play], titles: Titles = None) -> str:
    """CSV text (header + one row per play) with ``EXPORT_FIELDS`` columns.

    plays: stored plays (``plays.record.PlayRecord``); a bare ``Play`` leaves
    the store's columns empty. Unknown values (None) are empty cells.
    titles: the title and artist of a track id (empty cells without it).

    Cells that a spreadsheet would run as a formula (leading = + - @) are
    prefixed with a quote: track and source names come from users.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for row in to_json(plays, titles):
        writer.writerow([csv_safe(row.get(f)) for f in EXPORT_FIELDS])
    return buf.getvalue()


def csv_safe(value):
    """``value`` as a CSV cell a spreadsheet shows as text (a leading = + - @ tab or CR gets a quote)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_json(plays: Iterable[Play], titles: Titles = None) -> list[dict]:
    """JSON-ready list of plays (``Play.to_json`` of each, with "title" and "artist" from ``titles``)."""
    return [{**p.to_json(), **(titles(p.track) if titles else {"title": None, "artist": None})} for p in plays]
