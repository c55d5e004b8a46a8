"""Catalog changes: enrol an uploaded track or remove one, then hot-reload the recognizer.

Place in the pipeline: behind the Catalog page. Adding a track means, for
the fingerprint engine, embedding it and recalibrating (seconds), for
cnnbin, building its dataset (augmented windows of the new track against
the operator's wrong tracks) and training its model (minutes of CPU). Both
changes call library functions (``enroll_track`` / ``remove_track`` below,
over ``training.enroll_fingerprint`` and ``training.enroll_cnnbin``), never
the command line, in a child process (``web.child``), one at a time under
the app's database lock: a crash or out-of-memory in training cannot take
the server down, training's threads are not mixed into the process that
answers live streams, and a shutdown kills the child with whatever it
started. The child's progress bars give the progress we show; its error
message is the job's. When the child succeeds, the server loads the
database again and swaps the recognizer (``RecognizerHolder``) without a
restart; streams keep running.

Paths. The uploaded file is stored under a generated name in a private job
folder; the only user-chosen text that reaches the file system is the track
id, which ``validate_track_id`` restricts to a safe character set (the
enrolment takes the track id from the file stem, so the id must be a file
name).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ..config import ServerSettings
from ..errors import AudiocopyError
from .child import ChildFailed, ChildProcess
from .stopping import cancel_until_done

log = logging.getLogger(__name__)

#: Track ids for uploads: letters (any script), digits, space and a few
#: punctuation marks; no leading dot or space, no path separators.
TRACK_ID_RE = re.compile(r"^[^\W_][\w .,()&'+!-]{0,99}$")
#: Jobs kept in memory for the Catalog page.
MAX_JOBS_KEPT = 50
#: Progress bars of the enrolment functions: stage -> (what the Catalog page
#: shows, share of the job where it starts, where it ends); the reload is the rest.
_STAGES = {"dataset": ("building the dataset", 0.0, 0.5), "train": ("training", 0.5, 0.95),
           "enrol": ("embedding the track", 0.0, 0.6), "calibration": ("calibrating", 0.6, 0.95)}
_PROGRESS_RE = re.compile(r"\b(dataset|train|enrol|calibration):\s+(\d+)%")


class JobError(AudiocopyError):
    """A catalog job cannot be started (for example an invalid track id)."""


class JobConflict(JobError):
    """The job clashes with the catalog's state (duplicate id, adding disabled)."""


def validate_track_id(text: str) -> str:
    """A safe track id from user text; ``JobError`` when it is not acceptable."""
    text = (text or "").strip()
    if not TRACK_ID_RE.match(text) or text.endswith("."):
        raise JobError("track name: 1-100 characters, letters, digits, spaces and . , ( ) & ' + ! - only, "
                       "starting with a letter or digit")
    return text


@dataclass
class Job:
    """One add-track job and what the Catalog page shows of it.

    state: queued | running | reloading | done | failed.
    progress: 0..1 (dataset building is the first half, training the rest).
    """

    id: str
    track_id: str
    state: str = "queued"
    stage: str = "waiting"
    progress: float = 0.0
    message: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "track_id": self.track_id, "state": self.state, "stage": self.stage,
                "progress": round(self.progress, 3), "message": self.message, "created": self.created,
                "finished": self.finished}


def enroll_track(db: Path, catalog_dir: Path, *, negatives_dir: Path | None, work_dir: Path, positives: int,
                 epochs: int) -> None:
    """Enrol the track(s) in ``catalog_dir`` into ``db`` with the database's own engine (runs in the child).

    fingerprint only embeds the track and recalibrates (the training
    settings do not apply); cnnbin builds a dataset under ``work_dir``
    (``positives`` augmented windows per track), trains the track's model of
    the kind the database holds for at most ``epochs`` epochs, and
    recalibrates. Raises ``AudiocopyError`` (``JobError`` when the track
    could not be enrolled) with a message for the Catalog page.
    """
    from ..engines import catalog

    if catalog.open_db(db).engine == "fingerprint":
        from ..training.enroll_fingerprint import enroll_fingerprint

        report = enroll_fingerprint(catalog_dir, db, negatives_dir=negatives_dir, progress=True)
        if report.failed:
            raise JobError("; ".join(f"{track}: {message}" for track, message in report.failed))
        return
    from ..config import CnnParams, DatasetParams, TrainParams
    from ..engines.cnnbin.engine import enrolled_kinds
    from ..training.enroll_cnnbin import enroll

    kind = next(iter(sorted(enrolled_kinds(db))), CnnParams().kind)
    enroll(catalog_dir, db, negatives_dir=negatives_dir, work_dir=work_dir,
           dataset=DatasetParams(positives_per_track=positives), cnn=CnnParams(kind=kind),
           train=TrainParams(epochs=epochs), jobs=1, progress=True)


def remove_track(db: Path, track_id: str) -> None:
    """Remove one track from ``db`` and recalibrate the catalogue (runs in the child)."""
    from ..engines import catalog

    info = catalog.open_db(db)
    if info.engine == "fingerprint":
        from ..training.enroll_fingerprint import remove_tracks

        missing = remove_tracks(db, [track_id])
    else:
        from ..training.enroll_cnnbin import recalibrate_catalog

        missing = [] if catalog.remove_track(db, track_id) else [track_id]
        recalibrate_catalog(db)
    if missing:
        raise JobError(f"{track_id!r} is not enrolled")


def progress_of(line: str) -> tuple[str, float] | None:
    """(stage shown to the operator, overall progress 0..1) from one progress-bar line, or None."""
    m = _PROGRESS_RE.search(line)
    if m is None:
        return None
    label, lo, hi = _STAGES[m.group(1)]
    return label, lo + (hi - lo) * int(m.group(2)) / 100


class JobManager:
    """Runs add-track jobs one at a time; ``reload`` is awaited after each success.

    reload: coroutine function that reloads the recognizer (and raises on failure).
    db_lock: shared with other catalog mutations, so a delete never runs
    while a job writes the database.
    """

    def __init__(self, settings: ServerSettings, reload: Callable[[], Awaitable[object]], db_lock: asyncio.Lock):
        self.settings = settings
        self._reload = reload
        self._db_lock = db_lock
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._queue: asyncio.Queue[tuple[Job, Path]] = asyncio.Queue()
        self._child: ChildProcess | None = None  # the running job or removal (one at a time: the lock)
        self._worker: asyncio.Task | None = None
        self.root = settings.state_path / "jobs"

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run_forever())

    async def close(self) -> None:
        """Stop the worker and kill any running child with what it started (its job is marked failed)."""
        if self._child is not None:
            self._child.kill()
        if self._worker is not None:
            await cancel_until_done(self._worker)

    @property
    def enabled(self) -> bool:
        """Adding tracks needs a folder of wrong tracks to train against."""
        return self.settings.negatives_dir is not None

    def submit(self, upload: Path, suffix: str, track_id: str, known_ids: list[str]) -> Job:
        """Queue a job for an uploaded file (moved into the job folder).

        suffix: the upload's validated audio extension (".wav", ".mp3", ...).
        Raises ``JobError`` when adding is disabled, the id is invalid or
        already enrolled or queued.
        """
        if not self.enabled:
            raise JobConflict("adding tracks is disabled: start the server with --negatives-dir DIR "
                           "(a folder of wrong tracks to train against)")
        track_id = validate_track_id(track_id)
        busy = {j.track_id for j in self.jobs.values() if j.state in ("queued", "running", "reloading")}
        if track_id in known_ids or track_id in busy:
            raise JobConflict(f"track {track_id!r} is already in the catalog or being added")
        job = Job(uuid.uuid4().hex[:12], track_id)
        job_dir = self.root / job.id
        (job_dir / "licensed").mkdir(parents=True)
        shutil.move(str(upload), job_dir / "licensed" / (track_id + suffix))
        self.jobs[job.id] = job
        while len(self.jobs) > MAX_JOBS_KEPT:
            oldest = next(iter(self.jobs.values()))
            if oldest.state in ("queued", "running", "reloading"):
                break
            self.jobs.popitem(last=False)
        self._queue.put_nowait((job, job_dir))
        log.info("queued job %s: add track %r", job.id, track_id)
        return job

    async def _run_forever(self) -> None:
        while True:
            job, job_dir = await self._queue.get()
            try:
                await self._run(job, job_dir)
            except asyncio.CancelledError:
                job.state, job.message, job.finished = "failed", "server shut down", time.time()
                raise
            except Exception as exc:
                log.exception("job %s failed", job.id)
                job.state, job.message, job.finished = "failed", str(exc) or type(exc).__name__, time.time()
            finally:
                shutil.rmtree(job_dir, ignore_errors=True)

    async def remove(self, track_id: str) -> None:
        """Remove an enrolled track (in a child process), then reload; ``JobError`` saying why on failure.

        The caller holds no lock; this waits for the database lock.
        """
        async with self._db_lock:
            try:
                await self._in_child(remove_track, {"db": self.settings.db, "track_id": track_id}, None)
            except ChildFailed as exc:
                raise JobError(f"could not remove {track_id!r}: {exc}") from None
            await self._reload()
        log.info("track %r removed", track_id)

    async def _run(self, job: Job, job_dir: Path) -> None:
        s = self.settings
        async with self._db_lock:
            job.state, job.stage = "running", "starting"
            try:
                await self._in_child(enroll_track, {
                    "db": s.db, "catalog_dir": job_dir / "licensed", "negatives_dir": s.negatives_dir,
                    "work_dir": job_dir / "dataset", "positives": s.train_positives, "epochs": s.train_epochs}, job)
            except ChildFailed as exc:
                job.state, job.finished, job.message = "failed", time.time(), str(exc)
                log.warning("job %s failed: %s", job.id, exc)
                return
            job.state, job.stage, job.progress = "reloading", "reloading the recognizer", 0.97
            await self._reload()
        job.state, job.stage, job.progress, job.finished = "done", "done", 1.0, time.time()
        job.message = f"{job.track_id} is now in the catalog"
        log.info("job %s done: %r added", job.id, job.track_id)

    async def _in_child(self, target: Callable[..., None], kwargs: dict, job: Job | None) -> None:
        """``target(**kwargs)`` in a child process; its progress bars move ``job``."""
        def on_line(line: str) -> None:
            log.debug("job child: %s", line)
            progress = progress_of(line)
            if progress is not None and job is not None:
                job.stage, job.progress = progress

        self._child = ChildProcess(target, kwargs, on_line=on_line, name=f"audiocopy-{target.__name__}")
        try:
            await self._child.run()
        finally:
            self._child = None
