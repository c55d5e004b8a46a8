"""One database, one truth: the server follows catalogue changes made outside it.

Place in the pipeline: a background task of the app (``web.app``) beside
the batcher and the jobs. ``audiocopy enroll`` or ``audiocopy remove`` may
change the database a running server has loaded; every such change bumps
the database's generation stamp (``engines.catalog``: ``generation.json``,
a counter and a random token written atomically). Every ``poll_s`` seconds
the watcher reads that one small file in the I/O pool (never on the event
loop) and, when it differs from the stamp the current recognizer was loaded
at, loads the database again and swaps the recognizer
(``state.RecognizerHolder.reload``): streams keep running, the next compute
cycle uses the new catalogue.

Rules:

* the database lock (``web.keys.DB_LOCK``) is held for the reload, and a
  check is skipped while a catalogue job of the server holds it: the job
  reloads by itself when it is done, and two reloads never race;
* a failed reload keeps the old recognizer, is logged and shown by
  ``/api/status`` (``catalog.reload_error``); it is tried again when the
  stamp changes again (the last step of every enrolment and removal bumps
  it), not every few seconds;
* an unreadable stamp file is reported (``catalog.stamp_error``), logged
  once and read again at every tick.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from pathlib import Path

from ..engines import catalog
from ..errors import AudiocopyError
from .state import RecognizerHolder

log = logging.getLogger(__name__)


class CatalogWatcher:
    """Polls the catalogue's generation stamp and reloads on a change (see module docstring).

    holder: the app's recognizer. db: the database folder. executor: where
    the stamp is read and the database loaded (the I/O pool). db_lock: the
    app's catalogue lock. poll_s: seconds between checks (0: ``run`` never
    checks; ``check`` still works when called).
    """

    def __init__(self, holder: RecognizerHolder, db: Path, executor: Executor, db_lock: asyncio.Lock,
                 poll_s: float):
        if poll_s < 0:
            raise ValueError("poll_s must not be negative")
        self.holder = holder
        self.db = Path(db)
        self.poll_s = poll_s
        self._executor = executor
        self._db_lock = db_lock
        self.checks = 0
        self.reloads = 0
        self.stamp_error: str | None = None  # why the last read of the stamp failed (None: it did not)

    async def run(self) -> None:
        """Check every ``poll_s`` seconds until cancelled (returns at once when ``poll_s`` is 0)."""
        while self.poll_s > 0:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any one bad check
                log.exception("catalogue check failed")

    async def check(self) -> bool:
        """One check; True when the recognizer was reloaded."""
        if self._db_lock.locked():
            return False  # a server job is changing the database and reloads when it is done
        self.checks += 1
        loop = asyncio.get_running_loop()
        try:
            stamp = await loop.run_in_executor(self._executor, catalog.read_generation, self.db)
        except AudiocopyError as exc:
            if self.stamp_error is None:
                log.error("cannot read the catalogue's generation stamp: %s", exc)
            self.stamp_error = f"{type(exc).__name__}: {exc}"
            return False
        self.stamp_error = None
        if stamp == self.holder.stamp or stamp == self.holder.failed_stamp:
            return False
        async with self._db_lock:
            if stamp == self.holder.stamp:  # a server job took the lock meanwhile and has reloaded
                return False
            try:
                recognizer = await self.holder.reload(self.db, self._executor)
            except Exception:
                log.exception("the catalogue changed on disk (generation %d) but could not be loaded; keeping the "
                              "previous one", stamp.number)
                return False
        self.reloads += 1
        log.info("catalogue changed on disk: reloaded %d tracks (generation %d)", len(recognizer.track_ids),
                 self.holder.stamp.number if self.holder.stamp else 0)
        return True

    def to_json(self) -> dict:
        """What /api/status shows about the catalogue the server has loaded."""
        h = self.holder
        return {"generation": h.stamp.number if h.stamp else None,
                "changed_at": h.stamp.changed_at if h.stamp else None,
                "poll_s": self.poll_s, "checks": self.checks, "reloads": self.reloads,
                "reload_error": h.error, "stamp_error": self.stamp_error}
