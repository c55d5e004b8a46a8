"""Catalogue metadata: who and what each track id stands for (title, artist, rights owner).

Place in the pipeline: the storage layer beside ``catalog``, shared by both
engines. Recognition only ever deals in track ids (the stable key: plays,
exports and indexes keep them); people read titles. So the metadata is kept
apart from everything the engines load, and is resolved at the edge: the
CLI's ``identify`` and ``scan``, the web API and pages look a track id up
here, the recognizer and the stream decision never do.

On disk: one file, ``DB/metadata.json``::

    {"format_version": 1,
     "tracks": {"<track id>": {"title", "artist", "album", "isrc", "owner_id", "rights_owner", "origin"}}}

written atomically (``atomic_files``) under an advisory lock
(``DB/.metadata.lock``), so a CLI import and an edit on the Catalog page
never lose each other's change and a reader never sees half a file. The
file is not part of the catalogue's generation stamp: a changed title does
not change any score, so a server must not reload its recognizer for it;
it reads the file where it needs a title (an Identify answer, a lookup).

Where a record comes from (``origin``): ``tags`` (the audio file's own tags,
read with mutagen at enrolment), ``filename`` (no title tag: the file name
is the title), ``csv`` (``audiocopy metadata import``) or ``admin`` (the
Catalog page). Enrolment only fills tracks that have no record yet, so a
re-enrolment never overwrites what somebody imported or edited.

ISRC: 12 characters, country code (2 letters), registrant (3 letters or
digits), year (2 digits), designation (5 digits); accepted with or without
the usual hyphens, stored upper-case without them.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic_files import atomic_write_json, read_json
from ..errors import AudiocopyError, ModelError

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
LOCK_FILE = ".metadata.lock"
FORMAT_VERSION = 1
#: The editable fields, in the order of the CSV columns after ``track_id``.
FIELDS = ("title", "artist", "album", "isrc", "owner_id", "rights_owner")
ORIGINS = ("tags", "filename", "csv", "admin")
#: Longest value of one field: a title is not a document (and the file stays small).
MAX_FIELD_CHARS = 300
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MetadataError(AudiocopyError):
    """Metadata that cannot be stored: a bad value, an unknown track, a malformed CSV."""


@dataclass(frozen=True)
class TrackMeta:
    """What one track is. Every field is a string, "" when unknown; ``title`` is never empty."""

    title: str
    artist: str = ""
    album: str = ""
    isrc: str = ""
    owner_id: str = ""
    rights_owner: str = ""
    origin: str = "filename"

    def to_json(self) -> dict:
        return asdict(self)


def normalize_isrc(text: str) -> str:
    """``text`` as a canonical ISRC ("" stays ""); ``ValueError`` naming the expected form otherwise."""
    value = text.strip().upper().replace("-", "")
    if value and not _ISRC.fullmatch(value):
        raise ValueError(f"ISRC {text.strip()!r} is not of the form CC-XXX-YY-NNNNN (e.g. USRC17607839)")
    return value


def make_meta(values: Mapping[str, object], *, origin: str) -> TrackMeta:
    """A checked ``TrackMeta`` from user input (CSV row, JSON body).

    values: any of ``FIELDS`` (missing ones are ""); strings only, at most
    ``MAX_FIELD_CHARS`` each, no control characters, a non-empty title and
    a well-formed ISRC. Raises ``MetadataError`` naming the field at fault.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    out = {}
    for name in FIELDS:
        raw = values.get(name, "")
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise MetadataError(f"{name} must be text, got {type(raw).__name__}")
        value = " ".join(raw.split()) if name != "isrc" else raw  # one line, single spaces
        if len(value) > MAX_FIELD_CHARS:
            raise MetadataError(f"{name} is longer than {MAX_FIELD_CHARS} characters")
        if _CONTROL.search(value):
            raise MetadataError(f"{name} contains control characters")
        out[name] = value
    if not out["title"]:
        raise MetadataError("title is empty (every track needs a title)")
    try:
        out["isrc"] = normalize_isrc(out["isrc"])
    except ValueError as exc:
        raise MetadataError(str(exc)) from None
    return TrackMeta(**out, origin=origin)


# --------------------------------------------------------------------------
# the file


def read_metadata(db: Path) -> dict[str, TrackMeta]:
    """Every track's metadata in ``db`` (track id -> record); {} when there is no metadata file yet.

    Raises ``ModelError`` when the file exists but is unreadable or malformed.
    """
    path = Path(db) / METADATA_FILE
    if not path.exists():
        return {}
    raw = read_json(path, "catalogue metadata")
    try:
        if int(raw["format_version"]) != FORMAT_VERSION:
            raise ModelError(f"{path}: metadata format {raw['format_version']} is not supported")
        known = {f.name for f in fields(TrackMeta)}
        return {str(tid): TrackMeta(**{k: str(v) for k, v in rec.items() if k in known})
                for tid, rec in raw["tracks"].items()}
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path} is malformed ({exc})") from None


def _write(db: Path, entries: Mapping[str, TrackMeta]) -> None:
    tracks = {tid: entries[tid].to_json() for tid in sorted(entries)}
    atomic_write_json(Path(db) / METADATA_FILE, {"format_version": FORMAT_VERSION, "tracks": tracks})


@contextlib.contextmanager
def _locked(db: Path):
    """Hold the metadata lock of ``db``: read-modify-write cycles of two processes never interleave."""
    db = Path(db)
    if not db.is_dir():
        raise ModelError(f"recognizer database not found: {db}")
    with open(db / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def same_fields(a: TrackMeta | None, b: TrackMeta | None) -> bool:
    """Whether two records say the same (their origins aside)."""
    return a is not None and b is not None and all(getattr(a, k) == getattr(b, k) for k in FIELDS)


def update_metadata(db: Path, changes: Mapping[str, TrackMeta | None], *, only_missing: bool = False) -> int:
    """Apply ``changes`` (track id -> new record, or None to drop it) in one atomic write; returns how many changed.

    only_missing: keep every existing record (enrolment fills gaps only).
    """
    if not changes:
        return 0
    with _locked(db):
        entries = read_metadata(db)
        changed = 0
        for tid, meta in changes.items():
            if only_missing and tid in entries:
                continue
            if meta is None:
                changed += entries.pop(tid, None) is not None
            elif not same_fields(entries.get(tid), meta):  # the same values again keep their origin
                entries[tid] = meta
                changed += 1
        if changed:
            _write(db, entries)
    return changed


def edit_metadata(db: Path, track_id: str, values: Mapping[str, object], *, origin: str = "admin") -> TrackMeta:
    """Change some fields of one track's record (the others are kept) and store it; returns the new record.

    values: any of ``FIELDS``; unknown keys are refused. A track without a
    record starts from its id as the title. The read, the merge and the
    write happen under the lock, so two edits of different fields never
    undo each other. Raises ``MetadataError``.
    """
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise MetadataError(f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
    with _locked(db):
        entries = read_metadata(db)
        current = entries.get(track_id) or TrackMeta(title=track_id[:MAX_FIELD_CHARS])
        meta = make_meta({**{k: getattr(current, k) for k in FIELDS}, **values}, origin=origin)
        if not same_fields(meta, entries.get(track_id)):
            entries[track_id] = meta
            _write(db, entries)
    return entries[track_id]


def describe(entries: Mapping[str, TrackMeta], track_id: str | None) -> dict:
    """{"title", "artist"} of a track for output beside its id; None for each when unknown."""
    meta = entries.get(track_id) if track_id is not None else None
    return {"title": meta.title if meta else None, "artist": (meta.artist or None) if meta else None}


# --------------------------------------------------------------------------
# tags

#: ID3 frames (WAV, AIFF: mutagen gives raw ID3 there) for the easy keys used below.
_ID3_FRAMES = {"title": "TIT2", "artist": "TPE1", "album": "TALB", "isrc": "TSRC", "organization": "TPUB",
               "copyright": "TCOP"}
#: Tag keys that name a rights owner, best first (label/publisher, then the copyright line).
_OWNER_KEYS = ("organization", "label", "publisher", "copyright")


def _tag_values(path: Path) -> dict[str, str]:
    """Lower-case tag key -> text (several values joined by "; "); {} when the file has no readable tags."""
    import mutagen
    from mutagen.id3 import ID3

    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError) as exc:
        log.debug("no readable tags in %s: %s", path, exc)
        return {}
    tags = getattr(audio, "tags", None)
    if tags is None:
        return {}
    out = {}
    if isinstance(tags, ID3):  # containers without an "easy" mapping expose raw ID3 frames
        for key, frame in _ID3_FRAMES.items():
            if frame in tags:
                out[key] = "; ".join(str(t) for t in tags[frame].text)
        return out
    for key in tags.keys():  # noqa: SIM118 (iterating a Vorbis comment yields pairs, not keys)
        values = tags[key]
        values = values if isinstance(values, list) else [values]
        out[str(key).lower()] = "; ".join(str(v) for v in values)
    return out


def read_tags(path: Path) -> TrackMeta:
    """A track's metadata from its file's tags (mutagen); the file name (stem) as the title when untagged.

    A tag that breaks a rule (an ISRC of the wrong form, a field too long) is
    dropped with a warning: a badly tagged file is still enrolled.
    """
    path = Path(path)
    tags = _tag_values(path)
    owner = next((tags[k] for k in _OWNER_KEYS if tags.get(k)), "")
    values = {"title": tags.get("title", ""), "artist": tags.get("artist", ""), "album": tags.get("album", ""),
              "isrc": tags.get("isrc", ""), "rights_owner": owner}
    for name in [n for n, v in values.items() if v]:
        try:
            make_meta({"title": "x", name: values[name]}, origin="tags")
        except MetadataError as exc:
            log.warning("%s: tag ignored (%s)", path, exc)
            values[name] = ""
    if values["title"].strip():
        return make_meta(values, origin="tags")
    # A file name can hold what no title may (control characters, any length): made safe, not refused.
    name = " ".join(_CONTROL.sub(" ", path.stem).split())[:MAX_FIELD_CHARS] or "untitled"
    return make_meta({**values, "title": name}, origin="filename")


def fill_from_files(db: Path, files: Iterable[Path], track_ids: Iterable[str]) -> int:
    """Record the tags of enrolled tracks that have no metadata yet (track id = file stem); returns how many.

    files: the enrolment's audio files; track_ids: the ids now in the
    catalogue (a file that failed to enrol gets no record). Called at the
    end of every enrolment, so an interrupted one that is resumed, or a
    database made before metadata existed, is filled in too.
    """
    enrolled = set(track_ids)
    existing = read_metadata(db)
    todo = {p.stem: p for p in map(Path, files) if p.stem in enrolled and p.stem not in existing}
    if not todo:
        return 0
    return update_metadata(db, {tid: read_tags(p) for tid, p in todo.items()}, only_missing=True)
