"""Plays as CSV and JSON, safe to open in a spreadsheet.

Place in the pipeline: after the plays store, under the web API and the CLI.
Track and source names come from users, so a cell a spreadsheet would run as
a formula (leading ``= + - @``) is prefixed with a quote. The columns of the
first plays log come first, in their old order, so a spreadsheet or script
built on them still reads its columns; the evidence of alteration, the
play's status and its provenance follow.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ..decision.play import Play

EXPORT_FIELDS = ("id", "track", "source", "start_s", "end_s", "duration_s", "confidence", "peak_score",
                 "windows", "started_at", "ended_at",
                 "status", "key", "track_start_s", "track_end_s", "time_scale", "pitch_semitones", "alteration",
                 "source_kind", "monitor_id", "source_verified", "updated_at")


def to_csv(plays: Iterable[Play]) -> str:
    """CSV text (header + one row per play) with ``EXPORT_FIELDS`` columns.

    plays: stored plays (``plays.record.PlayRecord``); a bare ``Play`` leaves
    the store's columns empty. Unknown values (None) are empty cells.

    Cells that a spreadsheet would run as a formula (leading = + - @) are
    prefixed with a quote: track and source names come from users.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for play in plays:
        row = play.to_json()
        writer.writerow([csv_safe(row.get(f)) for f in EXPORT_FIELDS])
    return buf.getvalue()


def csv_safe(value):
    """``value`` as a CSV cell a spreadsheet shows as text (a leading = + - @ tab or CR gets a quote)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_json(plays: Iterable[Play]) -> list[dict]:
    """JSON-ready list of plays (``Play.to_json`` of each)."""
    return [p.to_json() for p in plays]
