"""What the plays store keeps about a play beyond the decision's ``Play``, and about a source.

Place in the pipeline: between the stream decision and the store. The
decision knows what was heard (``decision.play.Play``: track, times,
evidence); only the transport knows where the audio came from (a browser
WebSocket, a monitored station, an upload) and whether that was proven.
``PlayRecord`` is a ``Play`` with both, plus where the play stands in its
life (``status``) and when it was last written (``updated_at``). The store
returns ``PlayRecord``\\s, so everything that reads plays (the API, the
exports, the pages) sees the same fields.

A play's life in the store: written ``open`` when it opens, rewritten as it
grows, then ``closed`` when the decision ends it. A play still ``open`` when
its server died is closed by ``PlayStore.recover`` as ``recovered``: it
ended no earlier than its last update, and the exact end was lost with the
process (or, for a monitor's play, continued by the worker that took the
monitor over: ``web.handover``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..decision.play import Play

#: Where a play stands: still being heard, ended by the decision, or closed
#: after a crash at its last update.
STATUSES = ("open", "closed", "recovered")
#: Where the audio came from: a WebSocket client, a URL monitor, an uploaded file.
SOURCE_KINDS = ("ws", "monitor", "upload")


@dataclass(frozen=True)
class PlayOrigin:
    """Where a stream's audio came from.

    kind: one of ``SOURCE_KINDS``. monitor_id: the monitor's id for
    ``kind="monitor"`` (names may repeat, ids do not), else None.
    verified: the source name was proven (a stream token naming it);
    False for every stream that did not prove it.
    """

    kind: str = "ws"
    monitor_id: str | None = None
    verified: bool = False

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {SOURCE_KINDS}, got {self.kind!r}")


#: A stream that says nothing about where it came from: an unverified WebSocket client.
UNVERIFIED_WS = PlayOrigin()


@dataclass(frozen=True)
class PlayRecord(Play):
    """A ``Play`` as the store keeps it (see the module docstring).

    status: one of ``STATUSES``. updated_at: wall-clock UTC (ISO 8601, "Z")
    of the last write, None before the first. source_kind, monitor_id,
    source_verified: the stream's ``PlayOrigin``. worker_id: the server
    worker that wrote it last (None: a server of an older release), so only
    a dead worker's open plays are recovered (``web.workers``).
    """

    status: str = "closed"
    updated_at: str | None = None
    source_kind: str = "ws"
    monitor_id: str | None = None
    source_verified: bool = False
    worker_id: str | None = None

    @classmethod
    def of(cls, play: Play, origin: PlayOrigin) -> PlayRecord:
        """``play`` from a stream of ``origin``; open or closed as the play says."""
        base = {f.name: getattr(play, f.name) for f in fields(Play)}
        return cls(**base, status="open" if play.open else "closed", source_kind=origin.kind,
                   monitor_id=origin.monitor_id, source_verified=bool(origin.verified))

    def to_json(self) -> dict:
        """``Play.to_json`` (which lists every field, the store's too); ``open`` follows ``status``."""
        out = super().to_json()
        out["open"] = self.status == "open"
        return out


@dataclass(frozen=True)
class SourceReport:
    """A stream's counts since its previous report, added to its source's row.

    name: the source label; origin: where it came from. answered, dropped:
    windows answered and windows lost (dropped because compute was behind,
    or failed) since the last report. started: this report is the stream's
    first (it counts one more stream of that source).
    """

    name: str
    origin: PlayOrigin
    answered: int = 0
    dropped: int = 0
    started: bool = False

    def __post_init__(self):
        if self.answered < 0 or self.dropped < 0:
            raise ValueError(f"window counts cannot be negative (answered {self.answered}, dropped {self.dropped})")
