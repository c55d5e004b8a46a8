"""Catalogue metadata to and from CSV: all-or-nothing imports with every bad row named by its line.

Place in the pipeline: beside ``engines.metadata``, under ``audiocopy
metadata import|export``. A rights team keeps its catalogue in a
spreadsheet; the CSV is the bridge. Columns (a header row, any order, no
others)::

    track_id,title,artist,album,isrc,owner_id,rights_owner

Import is all-or-nothing. Every row is checked first (header, field count,
a known track id given once, a title, a well-formed ISRC, field lengths);
if any row is bad nothing is written, and the error lists each bad row by
its line number in the file (line 1 is the header), so one pass fixes them
all. Then the listed tracks' records are replaced in one atomic write;
tracks not in the file keep theirs.

Export lists every enrolled track (one without a record gets its id as the
title, as enrolment gives an untagged file its name). A cell that a
spreadsheet would run as a formula (leading ``= + - @``) is written with a
leading apostrophe, which the import removes again, so an export imports
back unchanged.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from . import catalog
from .metadata import FIELDS, MetadataError, TrackMeta, make_meta, read_metadata, update_metadata

CSV_COLUMNS = ("track_id", *FIELDS)
#: Bad rows listed in one error at most (the rest are counted).
MAX_LISTED_ERRORS = 20
_FORMULA_START = ("=", "+", "-", "@")


@dataclass(frozen=True)
class ImportReport:
    """rows: data rows read; changed: records that differ from before (the rest were already so)."""

    rows: int
    changed: int


def _enrolled_ids(db: Path) -> set[str]:
    catalog.open_db(db)  # a clear error when ``db`` is not a database
    return {r["track_id"] for r in catalog.track_records(db)}


def _unquote(value: str) -> str:
    """Undo the export's formula guard ("'=x" -> "=x")."""
    return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA_START else value


def _check_header(header: list[str] | None) -> list[str]:
    if header is None:
        raise MetadataError(f"line 1: the file is empty; expected the header {','.join(CSV_COLUMNS)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [h for h in names if h not in CSV_COLUMNS]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if missing or unknown or repeated:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"repeated {', '.join(repeated)}"] if repeated else [])
        raise MetadataError(f"line 1: wrong columns ({'; '.join(parts)}); expected {','.join(CSV_COLUMNS)}")
    return names


def parse_csv(text: str, known_ids: set[str]) -> dict[str, TrackMeta]:
    """Check every row of a metadata CSV; the records by track id, or ``MetadataError`` listing every bad line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        names = _check_header(next(reader, None))
        out: dict[str, TrackMeta] = {}
        first_line: dict[str, int] = {}
        errors: list[str] = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines (a trailing newline in a spreadsheet export) carry nothing
            problem = _row_problem(row, names, known_ids, first_line, line)
            if isinstance(problem, str):
                errors.append(f"line {line}: {problem}")
            else:
                out[problem[0]] = problem[1]
                first_line[problem[0]] = line
    except csv.Error as exc:
        raise MetadataError(f"line {reader.line_num}: not valid CSV ({exc}); nothing was imported") from None
    if errors:
        more = len(errors) - MAX_LISTED_ERRORS
        listed = errors[:MAX_LISTED_ERRORS] + ([f"... and {more} more bad rows"] if more > 0 else [])
        raise MetadataError(f"{len(errors)} bad row(s), nothing was imported:\n  " + "\n  ".join(listed))
    return out


def _row_problem(row: list[str], names: list[str], known_ids: set[str], first_line: dict[str, int],
                 line: int) -> str | tuple[str, TrackMeta]:
    """What is wrong with one data row (a message), or its (track id, record)."""
    if len(row) != len(names):
        return f"{len(row)} fields, expected {len(names)} ({','.join(names)})"
    values = {name: _unquote(cell) for name, cell in zip(names, row)}
    track_id = values.pop("track_id").strip()
    if not track_id:
        return "track_id is missing"
    if track_id not in known_ids:
        return f"unknown track id {track_id!r} (not enrolled in this database)"
    if track_id in first_line:
        return f"track id {track_id!r} is already given on line {first_line[track_id]}"
    try:
        return track_id, make_meta(values, origin="csv")
    except MetadataError as exc:
        return f"{track_id!r}: {exc}"


def import_csv(db: Path, path: Path) -> ImportReport:
    """``audiocopy metadata import DB FILE``: replace the listed tracks' metadata, all rows or none.

    Raises ``MetadataError`` (bad file or rows: nothing is written) or
    ``ModelError`` (``db`` is not a database).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # spreadsheets write a byte-order mark
    except FileNotFoundError:
        raise MetadataError(f"CSV file not found: {path}") from None
    except IsADirectoryError:
        raise MetadataError(f"{path} is a folder, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    records = parse_csv(text, _enrolled_ids(Path(db)))
    changed = update_metadata(Path(db), records)
    return ImportReport(rows=len(records), changed=changed)


def export_csv(db: Path) -> str:
    """``audiocopy metadata export DB``: every enrolled track's metadata as CSV text (header first)."""
    ids = sorted(_enrolled_ids(Path(db)))
    entries = read_metadata(Path(db))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for track_id in ids:
        meta = entries.get(track_id) or TrackMeta(title=track_id)
        row = [track_id, *(getattr(meta, name) for name in FIELDS)]
        writer.writerow(["'" + v if v[:1] in _FORMULA_START else v for v in row])
    return buf.getvalue()
