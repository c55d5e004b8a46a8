"""Catalog changes: train an uploaded track or remove one, then hot-reload the recognizer.

Place in the pipeline: behind the Catalog page. Adding a track means building
its dataset (augmented windows of the new track against the operator's wrong
tracks) and training its model: minutes of CPU. Both changes run the CLI in a
child process (``audiocopy enroll`` / ``audiocopy remove``), one at a time
under the app's database lock, for four reasons: a crash or out-of-memory in
training cannot take the server down; TensorFlow's training threads are not
mixed into the process that answers live streams; the CLI's progress output
gives the progress we show; and the server stays engine-agnostic, since how
an engine enrols or forgets a track is the CLI's business. When the child
succeeds, the server loads the database again and swaps the recognizer
(``RecognizerHolder``) without a restart; streams keep running.

Paths. The uploaded file is stored under a generated name in a private job
folder; the only user-chosen text that reaches the file system is the track
id, which ``validate_track_id`` restricts to a safe character set (the
dataset builder takes the track id from the file stem, so the id must be a
file name).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from ..config import ServerSettings
from ..errors import AudiocopyError

log = logging.getLogger(__name__)

#: Track ids for uploads: letters (any script), digits, space and a few
#: punctuation marks; no leading dot or space, no path separators.
TRACK_ID_RE = re.compile(r"^[^\W_][\w .,()&'+!-]{0,99}$")
#: Jobs kept in memory for the Catalog page.
MAX_JOBS_KEPT = 50
_PROGRESS_RE = re.compile(r"\b(dataset|train):\s+(\d+)%")


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


def enroll_command(settings: ServerSettings, job_dir: Path) -> list[str]:
    """The child process that enrols the job's track into the database, with the database's own engine.

    cnnbin builds a dataset and trains a model; fingerprint only embeds the
    track and recalibrates (the training flags do not apply to it).
    """
    from ..engines import catalog

    engine = catalog.open_db(settings.db).engine
    command = [sys.executable, "-m", "audiocopy.cli", "enroll", str(job_dir / "licensed"), "--db", str(settings.db),
               "--engine", engine]
    if settings.negatives_dir is not None:
        command += ["--negatives", str(settings.negatives_dir)]
    if engine == "cnnbin":
        command += ["--work", str(job_dir / "dataset"), "--positives", str(settings.train_positives),
                    "--epochs", str(settings.train_epochs), "--jobs", "1"]
    return command


def remove_command(settings: ServerSettings, track_id: str) -> list[str]:
    """The child process that removes one track and recalibrates the catalogue."""
    return [sys.executable, "-m", "audiocopy.cli", "-q", "remove", "--db", str(settings.db), "--", track_id]


def _child_env() -> dict[str, str]:
    # The child must import this very package, installed or not.
    here = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}


def _failure(tail: list[str], rc: int) -> str:
    """The child's own error line, else its last line."""
    return next((line for line in reversed(tail) if line.startswith("error:")),
                tail[-1] if tail else f"exited with status {rc}")


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
        self._proc: asyncio.subprocess.Process | None = None
        self._worker: asyncio.Task | None = None
        self.root = settings.state_path / "jobs"

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run_forever())

    async def close(self) -> None:
        """Stop the worker and any running child (its job is marked failed)."""
        if self._proc is not None and self._proc.returncode is None:
            # The whole group, so whatever the CLI spawned (ffmpeg decoding an
            # uploaded MP3, dataset workers) goes with it.
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

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
        """Remove an enrolled track (child process), then reload; ``JobError`` with the CLI's message on failure.

        The caller holds no lock; this waits for the database lock.
        """
        async with self._db_lock:
            proc = await asyncio.create_subprocess_exec(
                *remove_command(self.settings, track_id), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_child_env())
            tail = await self._follow(None, proc)
            rc = await proc.wait()
            if rc != 0:
                raise JobError(f"could not remove {track_id!r}: {_failure(tail, rc)}")
            await self._reload()
        log.info("track %r removed", track_id)

    async def _run(self, job: Job, job_dir: Path) -> None:
        async with self._db_lock:
            job.state, job.stage = "running", "starting"
            self._proc = await asyncio.create_subprocess_exec(
                *enroll_command(self.settings, job_dir), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_child_env(),
                start_new_session=True)  # its own process group, see ``close``
            tail = await self._follow(job, self._proc)
            rc = await self._proc.wait()
            self._proc = None
            if rc != 0:
                job.state, job.finished, job.message = "failed", time.time(), _failure(tail, rc)
                return
            job.state, job.stage, job.progress = "reloading", "reloading the recognizer", 0.97
            await self._reload()
        job.state, job.stage, job.progress, job.finished = "done", "done", 1.0, time.time()
        job.message = f"{job.track_id} is now in the catalog"
        log.info("job %s done: %r added", job.id, job.track_id)

    async def _follow(self, job: Job | None, proc: asyncio.subprocess.Process) -> list[str]:
        """Read the child's stderr (progress bars and log lines) into ``job``; returns its last lines."""
        tail: collections.deque[str] = collections.deque(maxlen=20)
        buf = b""
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                tail.append(line)
                m = _PROGRESS_RE.search(line)
                if m and job is not None:
                    stage, pct = m.group(1), int(m.group(2)) / 100
                    job.stage = "building the dataset" if stage == "dataset" else "training"
                    job.progress = 0.5 * pct if stage == "dataset" else 0.5 + 0.45 * pct
        return list(tail)
