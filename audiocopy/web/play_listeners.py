"""A plays sink that also tells listeners (webhooks, metrics) about every play it is handed.

Place in the pipeline: between the streams and the plays log. Streams and
monitors hand every play (open, updated, closed) and their source counts to
the app's ``PlaySink.record`` (``web.state``); this subclass forwards each
item, after scheduling its write, to the functions in ``listeners``. The
app wires the webhook dispatcher (``web.webhooks``) and the metrics
(``web.metrics``) in here, so neither the streams nor the store know about
them.

Listeners run on the event loop and must return at once (schedule work,
never do it); a listener that raises is logged and the others still run:
alerting or counting must never cost a play its place in the log.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from ..decision.play import Play
from ..plays.record import PlayRecord
from .state import PlaySink

log = logging.getLogger(__name__)


class ObservedPlaySink(PlaySink):
    """``PlaySink`` plus ``listeners``: each is called with every item ``record`` gets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listeners: list[Callable[[object], None]] = []

    def record(self, item, *args, **kwargs):
        fut = super().record(item, *args, **kwargs)
        for listener in list(self.listeners):
            try:
                listener(item)
            except Exception:  # see the module docstring: the log write is scheduled already
                log.exception("a plays listener failed")
        return fut

    def announce(self, records: list[PlayRecord]) -> None:
        """Tell the listeners of plays the store closed itself (recovered plays), without writing them again.

        A play whose process died is closed in the store by SQL
        (``PlayStore.recover_records``), never handed to ``record``; it is
        still a play that ended, so the webhooks and metrics hear of it
        like any other.
        """
        for record in records:
            for listener in list(self.listeners):
                try:
                    listener(record)
                except Exception:  # as in ``record``: one listener never stops the others
                    log.exception("a plays listener failed")


def closed_play(item: object) -> Play | None:
    """``item`` when it is a play that has just ended (a closed or recovered ``PlayRecord``, or a bare
    closed ``Play``), else None (open plays and checkpoints, source reports)."""
    if isinstance(item, PlayRecord):
        return item if item.status in ("closed", "recovered") else None
    if isinstance(item, Play):
        return None if item.open else item
    return None
