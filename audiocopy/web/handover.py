"""Handing a dead worker's open monitor plays to the worker that takes the monitor over, exactly once.

Place in the pipeline: between a monitor's ``StreamSession`` (which hands
every play it opens, checkpoints and closes to ``record_play``) and the
app's ``PlaySink``, on the worker that has just claimed the monitor's lease
from a dead worker (``web.workers``, ``web.monitors``).

The problem. A worker is killed while a song plays on a monitor: the store
holds that play open, last written a few seconds before the kill. Another
worker claims the monitor within about ``ttl + renew`` seconds and starts
its own stream; its decision soon opens a play of the same song. Left
alone, that makes two plays of one song: the dead worker's (recovered,
cut at the kill) and the new one (starting some seconds into the song).

The rule (design of issue 15, "Handover"). The new holder loads the dead
worker's open plays of that monitor (``inherited``). When its own decision
opens a play of the same track within ``window_s`` of an inherited play's
last update, its play *continues* the inherited one: every write of it
(open, checkpoints, close) goes out under the inherited play's ``key``,
with the inherited ``started_at`` and ``track_start_s``, a ``start_s``
moved back so that ``end_s - start_s`` is the whole duration
(``start_s = new.start_s - (new.started_at - old.started_at)``), and the
inherited windows added to its own (the store ignores an open update with
fewer windows than its row, and the evidence is the sum of both). So the
song is one play in the store. ``start_s`` and ``end_s`` are then in the
new stream's time, and ``start_s`` may be negative: the song began before
that stream did.

An inherited play that nothing continued is closed as "recovered" (its end
kept where the dead worker left it) once the new stream has run
``window_s`` seconds, or, when the stream never starts, once ``2 *
window_s`` have passed since the play's last update: after that a
continuation could no longer be told from a new play of the same track.
Each inherited play is adopted at most once, by the first matching play.

Everything here runs on the event loop and does no I/O; the recovery of
expired plays is written by the caller (``expire`` returns their keys).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from ..plays.record import PlayRecord

log = logging.getLogger(__name__)


def epoch_of(text: str) -> float:
    """Epoch seconds of a stored ISO 8601 UTC time ("2024-05-01T10:00:00.000Z")."""
    return datetime.fromisoformat(text).timestamp()  # Python 3.11+ reads the "Z"


class Handover:
    """One monitor's inherited open plays and the mapping of this worker's plays onto them.

    inherited: the dead worker's open plays of this monitor
        (``PlayStore.open_plays``), each with ``updated_at`` set.
    window_s: how long after an inherited play's last update a play of the
        same track may continue it (``adopt_window_s``).
    """

    def __init__(self, inherited: list[PlayRecord], *, window_s: float):
        if not window_s > 0:
            raise ValueError(f"the adoption window must be positive, got {window_s}")
        self.window_s = float(window_s)
        # Oldest first, so two open plays of one track (which a decision never leaves) adopt in order.
        self._pool: dict[str, PlayRecord] = {r.key: r for r in sorted(inherited, key=lambda r: r.started_at)}
        self._adopted: dict[str, PlayRecord] = {}  # this worker's key -> the inherited record it continues
        self.adopted_keys: list[str] = []
        self.recovered_keys: list[str] = []

    @property
    def waiting(self) -> int:
        """Inherited plays neither adopted nor expired yet."""
        return len(self._pool)

    def map(self, record: PlayRecord) -> PlayRecord:
        """``record`` as it must be written: unchanged, or continuing the inherited play it adopted."""
        old = self._adopted.get(record.key)
        if old is None:
            old = self._adopt(record)
            if old is None:
                return record
        return continued(old, record)

    def _adopt(self, record: PlayRecord) -> PlayRecord | None:
        started = epoch_of(record.started_at)
        for key, old in self._pool.items():
            if old.track != record.track or old.updated_at is None:
                continue
            gap = started - epoch_of(old.updated_at)
            if gap <= self.window_s and started >= epoch_of(old.started_at):
                del self._pool[key]
                self._adopted[record.key] = old
                self.adopted_keys.append(key)
                log.info("monitor %s: play of %s continues the play %s of worker %s (%.1f s after its last update)",
                         record.monitor_id, record.track, key, old.worker_id, gap)
                return old
        return None

    def expire(self, *, stream_s: float, now: float) -> list[str]:
        """Keys of inherited plays that can no longer be continued (taken out of the pool): recover them.

        stream_s: seconds of audio this worker's stream of the monitor has
        run; now: epoch seconds.
        """
        out = [key for key, old in self._pool.items()
               if stream_s >= self.window_s or old.updated_at is None
               or now - epoch_of(old.updated_at) > 2 * self.window_s]
        for key in out:
            del self._pool[key]
        self.recovered_keys += out
        return out


def continued(old: PlayRecord, new: PlayRecord) -> PlayRecord:
    """``new`` (this worker's play) written as the continuation of ``old`` (the dead worker's); see the module."""
    shift = epoch_of(new.started_at) - epoch_of(old.started_at)
    windows = old.windows + new.windows
    confidence = (old.confidence * old.windows + new.confidence * new.windows) / max(1, windows)
    return replace(new, key=old.key, started_at=old.started_at, start_s=new.start_s - shift,
                   track_start_s=old.track_start_s if old.track_start_s is not None else new.track_start_s,
                   windows=windows, confidence=confidence, peak_score=max(old.peak_score, new.peak_score),
                   time_scale=new.time_scale if new.time_scale is not None else old.time_scale,
                   pitch_semitones=new.pitch_semitones if new.pitch_semitones is not None else old.pitch_semitones)
