"""Handover of a dead worker's open monitor plays (``web.handover``): known answers from synthetic records.

A play of track "t1" was open on the dead worker from 10:00:00, last
written at 10:00:40 with 40 windows; the new holder's decision opens a play
of the same track whose own start is 10:00:50. Continued, it must be one
play from 10:00:00 with 50 windows, whose stream-time length is the whole
minute when the new stream's play ends at 10:01:00.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from audiocopy.decision.play import Play
from audiocopy.plays.record import PlayOrigin, PlayRecord
from audiocopy.plays.store import PlaysLog
from audiocopy.web.handover import Handover, continued, epoch_of

ORIGIN = PlayOrigin("monitor", monitor_id="m1", verified=True)


def _rec(key, *, track="t1", started="2024-05-01T10:00:00.000Z", ended="2024-05-01T10:00:40.000Z",
         start_s=100.0, end_s=140.0, windows=40, confidence=1.0, peak=2.0, track_start_s=5.0, status="open",
         updated=None, worker=None) -> PlayRecord:
    play = Play(track=track, source="Radio", start_s=start_s, end_s=end_s, confidence=confidence, peak_score=peak,
                windows=windows, started_at=started, ended_at=ended, key=key, track_start_s=track_start_s,
                track_end_s=track_start_s + (end_s - start_s), open=status == "open")
    return replace(PlayRecord.of(play, ORIGIN), updated_at=updated, worker_id=worker)


OLD = _rec("old", updated="2024-05-01T10:00:40.000Z", worker="A")


def _new(key="new", *, started="2024-05-01T10:00:50.000Z", track="t1", end_s=12.0, windows=10,
         ended="2024-05-01T10:01:00.000Z", status="open") -> PlayRecord:
    return _rec(key, track=track, started=started, ended=ended, start_s=2.0, end_s=end_s, windows=windows,
                confidence=2.0, peak=3.0, track_start_s=55.0, status=status)


def test_a_play_of_the_same_track_continues_the_inherited_one():
    h = Handover([OLD], window_s=30)
    out = h.map(_new())
    assert (out.key, out.started_at, out.track_start_s) == ("old", OLD.started_at, 5.0)
    assert out.start_s == pytest.approx(2.0 - 50.0)  # moved back by 10:00:50 - 10:00:00
    assert out.end_s - out.start_s == pytest.approx(epoch_of(out.ended_at) - epoch_of(out.started_at)) == 60.0
    assert (out.windows, out.peak_score) == (50, 3.0)
    assert out.confidence == pytest.approx((40 * 1.0 + 10 * 2.0) / 50)
    assert (out.track_end_s, out.monitor_id, out.status) == (65.0, "m1", "open")
    assert h.adopted_keys == ["old"] and h.waiting == 0


def test_every_later_write_of_that_play_goes_through_the_same_mapping():
    h = Handover([OLD], window_s=30)
    h.map(_new())
    checkpoint = h.map(_new(end_s=30.0, windows=30, ended="2024-05-01T10:01:18.000Z"))
    closed = h.map(_new(end_s=40.0, windows=40, ended="2024-05-01T10:01:28.000Z", status="closed"))
    assert {checkpoint.key, closed.key} == {"old"} and closed.status == "closed"
    assert closed.start_s == pytest.approx(-48.0) and closed.end_s - closed.start_s == pytest.approx(88.0)
    assert (checkpoint.windows, closed.windows) == (70, 80)


@pytest.mark.parametrize("new, adopted", [
    (_new(track="t2"), False),  # another track
    (_new(started="2024-05-01T10:01:10.000Z"), True),  # exactly window_s after the last update
    (_new(started="2024-05-01T10:01:10.001Z"), False),  # just outside the window
    (_new(started="2024-05-01T09:59:59.000Z"), False),  # began before the inherited play: not its continuation
])
def test_adoption_window_and_track_boundaries(new, adopted):
    h = Handover([OLD], window_s=30)
    out = h.map(new)
    assert (out.key == "old") is adopted
    if not adopted:
        assert out == new and h.waiting == 1


def test_an_inherited_play_is_adopted_at_most_once():
    h = Handover([OLD], window_s=30)
    assert h.map(_new("first")).key == "old"
    second = _new("second", started="2024-05-01T10:00:55.000Z")
    assert h.map(second) == second  # a second play of the track is a play of its own


def test_unadopted_plays_expire_after_the_window_of_the_new_stream_or_twice_it_of_wall_time():
    late = _rec("late", track="t9", updated="2024-05-01T10:00:40.000Z")
    h = Handover([OLD, late], window_s=30)
    t_update = epoch_of("2024-05-01T10:00:40.000Z")
    assert h.expire(stream_s=29.9, now=t_update + 59.9) == []
    assert h.map(_new()).key == "old"
    assert h.expire(stream_s=30.0, now=t_update + 35) == ["late"]  # the stream ran the whole window
    assert h.expire(stream_s=60.0, now=t_update + 99) == []  # returned once; the adopted one never
    never_started = Handover([OLD], window_s=30)
    assert never_started.expire(stream_s=0.0, now=t_update + 60.1) == ["old"]  # the stream never ran
    assert never_started.map(_new()) == _new()  # expired: no longer adoptable
    assert never_started.recovered_keys == ["old"]


def test_bad_window_is_refused():
    with pytest.raises(ValueError):
        Handover([OLD], window_s=0)


def test_continued_keeps_the_new_evidence_when_the_old_had_none():
    old = replace(OLD, track_start_s=None, time_scale=None)
    new = replace(_new(), time_scale=1.02, pitch_semitones=0.5)
    out = continued(old, new)
    assert (out.track_start_s, out.time_scale, out.pitch_semitones) == (55.0, 1.02, 0.5)


def test_in_the_store_the_song_is_one_play(tmp_path):
    """Dead worker A's open row, then worker B's open, checkpoint and close through the mapping: one row."""
    store = PlaysLog(tmp_path / "plays.sqlite")
    store.worker_id = "A"
    stored_old = store.write(replace(OLD, updated_at=None, worker_id=None))
    (inherited,) = store.open_plays(monitor_id="m1", worker_ids=["A"])
    store.worker_id = "B"
    h = Handover([replace(inherited, updated_at="2024-05-01T10:00:40.000Z")], window_s=30)
    for rec in (_new(), _new(end_s=30.0, windows=30, ended="2024-05-01T10:01:18.000Z"),
                _new(end_s=40.0, windows=40, ended="2024-05-01T10:01:28.000Z", status="closed")):
        assert store.write(h.map(rec)) is not None  # none ignored: the windows only grow
    (row,) = store.query()
    assert (row.id, row.key, row.status, row.worker_id, row.windows) == (stored_old.id, "old", "closed", "B", 80)
    assert (row.started_at, row.start_s, row.end_s) == (OLD.started_at, -48.0, 40.0)
