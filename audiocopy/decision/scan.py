"""Scanning recordings and archives: every play of every file, by the live streams' decision.

Place in the pipeline: under ``audiocopy scan``, beside ``decision.files``
(which it calls: each file goes through ``analyse_signal``, the same
windows, ``StreamState`` and ``StreamDecision`` as a live stream). Nothing
here decides anything of its own; it walks the paths, remembers what was
already scanned, survives bad files and shapes the output.

Resuming. An archive is scanned once and rescanned when something changed.
Each file's plays are kept in a small state file (JSON, written
atomically) under a key of the file's absolute path, its size and
modification time, and the database's generation stamp
(``engines.catalog.read_generation``: every enrolment, removal or
recalibration changes it). A file whose key is unchanged is not decoded
again (``--force`` rescans); its stored plays still go into the output, so
the output of a resumed scan is the whole scan. Undecodable files are
never stored: they are retried on the next run.

Workers. A file is always scanned whole by one process (one stream, one
decision); with ``jobs`` > 1, several files are scanned at once in spawned
worker processes, each with its own recognizer, and their results are put
back in the order the files were given.

Output. Plays carry track ids; titles and artists are looked up by the
caller from the catalogue metadata (``engines.metadata``) when the rows are
written (``rows``), so a metadata edit shows in the next output without a
rescan. Stream times are seconds from the start of each file; the plays'
wall-clock fields are left out (a file has no wall clock).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_files import atomic_write_json
from ..errors import AudiocopyError, ConfigError
from ..signal.audio import declared_seconds, is_audio_file, load_audio
from .files import analyse_signal
from .recognizer import Recognizer

log = logging.getLogger(__name__)

STATE_VERSION = 1
#: Play fields in the output, after file/track/title/artist (``Play.to_json`` names).
PLAY_FIELDS = ("start_s", "end_s", "duration_s", "track_start_s", "track_end_s", "time_scale", "pitch_semitones",
               "alteration", "confidence", "peak_score", "windows")
CSV_COLUMNS = ("file", "track_id", "title", "artist", *PLAY_FIELDS, "error")
#: The state file is rewritten at most this often (and at the end): one rewrite per file would make a
#: scan of many short files quadratic in their number.
STATE_SAVE_S = 10.0


@dataclass
class FileScan:
    """One file's result: plays (JSON-ready dicts, by start), or the error that stopped it; cached: from the state."""

    path: str
    seconds: float = 0.0
    plays: list[dict] = field(default_factory=list)
    error: str | None = None
    cached: bool = False


def collect_files(paths: Iterable[str], *, recursive: bool = False) -> list[Path]:
    """The audio files named by ``paths`` (files as given; folders: their audio files, sorted).

    A folder contributes the files directly inside it, or every file below
    it with ``recursive``. A file given by name is scanned even without a
    known audio extension (it is then reported if it cannot be decoded).
    Raises ``ConfigError`` for a path that does not exist and when nothing
    at all is left to scan.
    """
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            out += sorted(p for p in found if p.is_file() and is_audio_file(p))
        elif path.exists():
            out.append(path)
        else:
            raise ConfigError(f"no such file or folder: {path}")
    if not out:
        hint = "" if recursive else " (add --recursive to look into sub-folders)"
        raise ConfigError(f"no audio files to scan in {', '.join(map(str, paths))}{hint}")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def state_path(out: Path | None, db: Path) -> Path:
    """Where a scan's state lives: beside ``out`` (``OUT.scan-state.json``), else in the user's cache folder.

    Without ``--out`` there is one state per database, in
    ``$XDG_CACHE_HOME/audiocopy`` (default ``~/.cache/audiocopy``).
    """
    if out is not None:
        return Path(out).with_name(Path(out).name + ".scan-state.json")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audiocopy"
    digest = hashlib.sha1(str(Path(db).resolve()).encode("utf-8")).hexdigest()[:12]
    return cache / f"scan-{digest}.json"


def file_key(path: Path, generation: str) -> dict:
    """What a stored result is valid for: the file's size and modification time and the catalogue's generation."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "generation": generation}


class ScanState:
    """Results of files already scanned (``path -> {"key", "seconds", "plays"}``), kept in a JSON file.

    A missing or unreadable state file is an empty state (and is replaced):
    the worst it can cost is a rescan.
    """

    def __init__(self, path: Path, db: Path):
        self.path = Path(path)
        self.db = str(Path(db).resolve())
        self.entries: dict[str, dict] = {}
        self._saved_at = time.monotonic()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if raw.get("version") == STATE_VERSION and raw.get("db") == self.db:
                self.entries = dict(raw["files"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("scan state %s is unreadable (%s): every file is scanned again", self.path, exc)

    def lookup(self, path: Path, key: dict) -> FileScan | None:
        entry = self.entries.get(str(Path(path).resolve()))
        if not entry or entry.get("key") != key:
            return None
        return FileScan(str(path), float(entry["seconds"]), list(entry["plays"]), cached=True)

    def store(self, path: Path, key: dict, result: FileScan) -> None:
        self.entries[str(Path(path).resolve())] = {"key": key, "seconds": result.seconds, "plays": result.plays}
        if time.monotonic() - self._saved_at > STATE_SAVE_S:
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"version": STATE_VERSION, "db": self.db, "files": self.entries})
        self._saved_at = time.monotonic()


def scan_signal_file(recognizer: Recognizer, path: Path, *,
                     on_progress: Callable[[float], None] | None = None) -> FileScan:
    """Decode one file and run it through the file decision; a decoding failure is the result's ``error``.

    on_progress: called with the seconds of audio analysed so far.
    """
    try:
        signal = load_audio(path, params=recognizer.audio)
    except AudiocopyError as exc:
        return FileScan(str(path), error=str(exc))
    seconds = signal.size / recognizer.audio.sample_rate
    report = (lambda frac: on_progress(frac * seconds)) if on_progress else None
    result = analyse_signal(recognizer, signal, source=str(path), wall_start=0.0, on_progress=report)
    drop = ("id", "key", "source", "started_at", "ended_at", "open")
    plays = [{k: v for k, v in p.to_json().items() if k not in drop} for p in result.plays]
    return FileScan(str(path), round(result.seconds, 3), plays)


@functools.lru_cache(maxsize=1)
def _worker_recognizer(db: str) -> Recognizer:
    """The recognizer of a worker process, opened on its first file and kept for the next ones."""
    return Recognizer.open(Path(db))


def _scan_in_worker(db: str, path: str) -> FileScan:
    return scan_signal_file(_worker_recognizer(db), Path(path))


def _scan_todo(db: Path, todo: list[Path], *, jobs: int, worker_setup: Callable[[], object] | None,
               advance: Callable[[float], None]):
    """Yield (index into ``todo``, ``FileScan``) as files finish: here in order, or in ``jobs`` processes.

    advance: called with seconds of audio newly analysed (within a file here;
    per finished file from workers).
    """
    if jobs <= 1:
        recognizer = Recognizer.open(db)
        for i, path in enumerate(todo):
            done = [0.0]

            def progress(seconds: float, done=done) -> None:
                advance(seconds - done[0])
                done[0] = seconds

            yield i, scan_signal_file(recognizer, path, on_progress=progress)
        return
    # Spawned, not forked: a fork would copy BLAS and index threads in whatever state they are.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=context, initializer=worker_setup) as pool:
        futures = {pool.submit(_scan_in_worker, str(db), str(path)): i for i, path in enumerate(todo)}
        for future in as_completed(futures):
            result = future.result()
            advance(result.seconds)
            yield futures[future], result


# Long: the cache check, the scans and both progress bars kept side by side.
def scan_files(db: Path, files: list[Path], *, state: ScanState, generation: str, force: bool = False,
               progress: bool = True, jobs: int = 1, worker_setup: Callable[[], object] | None = None
               ) -> list[FileScan]:
    """Scan each file, or take its stored result; every file gets a ``FileScan``, in the order given.

    db: the recognizer database (opened only when some file needs a scan).
    generation: the catalogue's stamp (``"number:token"``), part of each key.
    jobs: files scanned at once, each worker process with its own recognizer
    (so ``jobs`` times the database's memory); worker_setup: run first in
    each worker (the CLI sets BLAS to one thread there, as in itself).
    Progress: one bar over files, one over seconds of audio (their total
    from the files' headers, so it shows the speed in audio seconds per second).
    """
    from tqdm import tqdm

    total_s = sum(declared_seconds(p) or 0.0 for p in files) if progress else 0.0
    files_bar = tqdm(total=len(files), desc="files", unit="file", disable=not progress, position=0)
    audio_bar = tqdm(total=round(total_s, 1), desc="audio", unit="s", disable=not progress, position=1,
                     bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}, {rate_fmt}]")
    results: list[FileScan | None] = [None] * len(files)
    todo: list[tuple[int, Path, dict]] = []
    try:
        for i, path in enumerate(files):
            try:
                key = file_key(path, generation)
            except OSError as exc:
                results[i] = FileScan(str(path), error=f"{path}: cannot read ({exc.strerror or exc})")
                files_bar.update()
                continue
            results[i] = None if force else state.lookup(path, key)
            if results[i] is not None:
                audio_bar.update(results[i].seconds)
                files_bar.update()
            else:
                todo.append((i, path, key))
        if todo:
            for j, result in _scan_todo(Path(db), [p for _, p, _ in todo], jobs=jobs, worker_setup=worker_setup,
                                        advance=audio_bar.update):
                i, path, key = todo[j]
                if result.error is None:
                    state.store(path, key, result)
                else:
                    log.debug("scan of %s failed: %s", path, result.error)
                results[i] = result
                files_bar.update()
    finally:
        state.save()  # also after Ctrl-C: what was scanned stays scanned
        audio_bar.close()
        files_bar.close()
    return results


# --------------------------------------------------------------------------
# output


def rows(results: Iterable[FileScan], describe: Callable[[str], Mapping[str, object]]) -> list[dict]:
    """One row per play (and one per failed file, with ``error``), columns ``CSV_COLUMNS``.

    describe: track id -> {"title", "artist"} (the caller's metadata lookup).
    """
    out = []
    for res in results:
        if res.error is not None:
            out.append({c: None for c in CSV_COLUMNS} | {"file": res.path, "error": res.error})
            continue
        for play in res.plays:
            meta = describe(play["track"])
            out.append({"file": res.path, "track_id": play["track"], "title": meta.get("title"),
                        "artist": meta.get("artist"), **{k: play.get(k) for k in PLAY_FIELDS}, "error": None})
    return out


def to_csv(table: list[dict]) -> str:
    """The rows as CSV (header first; empty cells for None)."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def _csv_cell(value):
    """None as an empty cell; text a spreadsheet would run as a formula (leading = + - @) behind an apostrophe."""
    if value is None:
        return ""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def to_json(results: list[FileScan], describe: Callable[[str], Mapping[str, object]]) -> str:
    """``{"files": [{"file", "seconds", "cached", "error", "plays": [...]}]}``; each play with title and artist."""
    files = []
    for res in results:
        plays = [{"track_id": p["track"], **describe(p["track"]), **{k: p.get(k) for k in PLAY_FIELDS}}
                 for p in res.plays]
        files.append({"file": res.path, "seconds": res.seconds, "cached": res.cached, "error": res.error,
                      "plays": plays})
    return json.dumps({"files": files}, indent=2, ensure_ascii=False) + "\n"
