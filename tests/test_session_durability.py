"""Write before telling: a stream's messages wait for their cycle's play writes, and keep their order.

A client that was told a play opened or closed must find it in the store even if the server is killed the
next instant (``tools/fault_inject.py`` measures that end to end). Here the store's write is a future the test
completes by hand, so the order of "committed" and "told" is observed directly.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from audiocopy.config import AudioParams
from audiocopy.decision.play import Play
from audiocopy.decision.stream import StreamDecision
from audiocopy.web import protocol
from audiocopy.web.batcher import Batcher
from audiocopy.web.cycle import Outcome
from audiocopy.web.protocol import StartRequest
from audiocopy.web.session import StreamSession

pytestmark = pytest.mark.asyncio
AUDIO = AudioParams()


class SlowStore:
    """``record_play`` whose play writes commit only when the test says so."""

    def __init__(self):
        self.writes: list[asyncio.Future] = []

    def record(self, item):
        if not hasattr(item, "status"):
            return None  # a source report: nobody is told about it
        fut = asyncio.get_running_loop().create_future()
        self.writes.append(fut)
        return fut


def a_play(track: str = "t", *, open_: bool = False) -> Play:
    return Play(track=track, source="radio", start_s=0.0, end_s=5.0, confidence=0.2, peak_score=0.3, windows=9,
                started_at="2026-12-06T00:00:00Z", ended_at="2026-12-06T00:00:05Z", key=track, open=open_)


def message(n: int) -> protocol.Outgoing:
    return protocol.outgoing({"type": "window", "seq": n})


async def test_messages_wait_for_their_play_writes_and_keep_their_order():
    store, told = SlowStore(), []
    with ThreadPoolExecutor(1) as pool:
        decision = StreamDecision("radio", window_s=AUDIO.window_seconds, wall_start=0.0, threshold=1.0)
        session = StreamSession(session_id="s", start=StartRequest(16000, "s16le", 1, "radio", False), audio=AUDIO,
                                batcher=Batcher(lambda: None, pool, linger_s=0), decision=decision,
                                emit=lambda out: told.extend(m.body["seq"] for m in out),
                                record_play=store.record)
        session.deliver(Outcome(messages=[message(1)], open_plays=[a_play(open_=True)], next_due=1 << 40))
        session.deliver(Outcome(messages=[message(2)], next_due=1 << 40))  # no play: must still wait its turn
        await asyncio.sleep(0.05)
        assert told == [] and len(store.writes) == 1  # nothing said before the open play is stored
        store.writes[0].set_result(None)
        await asyncio.sleep(0.05)
        assert told == [1, 2]
        # A failed write is logged by the store's sink; the answer still reaches the client, after it.
        session.deliver(Outcome(messages=[message(3)], plays=[a_play()], next_due=1 << 40))
        await asyncio.sleep(0.05)
        assert told == [1, 2]
        store.writes[1].set_exception(OSError("disk full"))
        await asyncio.sleep(0.05)
        assert told == [1, 2, 3]
        session.deliver(Outcome(messages=[message(4)], next_due=1 << 40))
        assert told == [1, 2, 3, 4]  # nothing pending: said at once
