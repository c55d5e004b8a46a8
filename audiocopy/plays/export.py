"""Plays as CSV and JSON, safe to open in a spreadsheet.

Place in the pipeline: after the plays store, under the web API and the CLI.
Track and source names come from users, so a cell a spreadsheet would run as
a formula (leading ``= + - @``) is prefixed with a quote.
"""
from __future__ import annotations

import csv
import io
from typing import Iterable

from ..decision.play import Play

EXPORT_FIELDS = ("id", "track", "source", "start_s", "end_s", "duration_s", "confidence", "peak_score",
                 "windows", "started_at", "ended_at")


def to_csv(plays: Iterable[Play]) -> str:
    """CSV text (header + one row per play) with ``EXPORT_FIELDS`` columns.

    Cells that a spreadsheet would run as a formula (leading = + - @) are
    prefixed with a quote: track and source names come from users.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for play in plays:
        row = play.to_json()
        writer.writerow([_csv_safe(row[f]) for f in EXPORT_FIELDS])
    return buf.getvalue()


def _csv_safe(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_json(plays: Iterable[Play]) -> list[dict]:
    """JSON-ready list of plays (``Play.to_json`` of each)."""
    return [p.to_json() for p in plays]
