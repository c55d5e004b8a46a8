"""The stream decision: synthetic window detections with known plays -> plays, holds, ends, calibration."""
from __future__ import annotations

import numpy as np
import pytest

from audiocopy.config import DecisionParams
from audiocopy.decision.calibration import TAIL_SIZE, play_threshold, play_threshold_floor
from audiocopy.decision.detection import Candidate, Detection
from audiocopy.decision.files import file_answer
from audiocopy.decision.stream import StreamDecision
from audiocopy.errors import ConfigError

HOP = 0.5
WINDOW = 2.5
P = DecisionParams()


def det(t: float, cands=(), silent: bool = False) -> Detection:
    """A window at stream time t with candidates (track, margin, offset)."""
    cs = tuple(Candidate(tr, m, off) for tr, m, off in sorted(cands, key=lambda c: -c[1]))
    best = cs[0] if cs else None
    matched = best is not None and best.score > 0
    return Detection(best.track if matched else None, best.score if best else -1.0, t, cs,
                     best.track_offset_s if matched else None, silent=silent)


def run(decision: StreamDecision, dets) -> tuple[list, list, list]:
    """Feed detections; returns (opened, closed during the run + at the end, now per window)."""
    opened, closed, nows = [], [], []
    for d in dets:
        u = decision.update(d)
        opened += u.opened
        closed += u.closed
        nows.append(u.now)
    closed += decision.finish()
    return opened, closed, nows


def decision(threshold: float = 0.6, **kw) -> StreamDecision:
    return StreamDecision("radio", window_s=WINDOW, wall_start=1_700_000_000.0, threshold=threshold,
                          params=DecisionParams(**kw) if kw else P)


def line(track: str, t0: float, n: int, *, margin: float = 0.3, offset0: float = 10.0, rate: float = 1.0,
         noise=None):
    """n windows from stream time t0 whose track offsets follow one line."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = t0 + i * HOP
        m = margin if noise is None else margin + noise * rng.standard_normal()
        out.append((t, [(track, m, offset0 + rate * (t - t0))]))
    return out


def dets_of(items) -> list[Detection]:
    return [det(t, c) for t, c in items]


def test_a_clean_run_is_one_play_with_its_place_in_the_track():
    silence_before, silence_after = [det(t * HOP, silent=True) for t in range(10)], [det(15.0, silent=True)]
    opened, closed, nows = run(decision(), silence_before + dets_of(line("a", 5.0, 20)) + silence_after)
    assert len(opened) == 1 and len(closed) == 1
    p = closed[0]
    assert (p.track, p.source, p.windows, p.key) == ("a", "radio", 20, opened[0].key)
    assert p.start_s == pytest.approx(5.0 + P.edge_s)
    assert p.end_s == pytest.approx(5.0 + 19 * HOP + WINDOW - P.edge_s)
    # The offset line gives the part of the track that was played.
    assert p.track_start_s == pytest.approx(10.0 + P.edge_s, abs=1e-6)
    assert p.track_end_s == pytest.approx(10.0 + (p.end_s - 5.0), abs=1e-6)
    assert nows[0] is None and nows[-2].track == "a"


def test_music_at_the_edges_of_the_stream_starts_and_ends_with_it():
    _, closed, _ = run(decision(), dets_of(line("a", 0.0, 20)))
    assert closed[0].start_s == 0.0 and closed[0].end_s == pytest.approx(19 * HOP + WINDOW)


def test_a_play_survives_weak_windows_on_its_line_and_ends_when_the_line_breaks():
    strong = line("a", 0.0, 6)
    # 12 windows just under the window threshold, on the same line ...
    weak = [(t, [("a", -0.05, off)]) for t, [(_, _, off)] in line("a", 3.0, 12, offset0=13.0)]
    # ... then weak windows of the same track 40 s away: the line broke.
    broken = [(t, [("a", -0.05, off)]) for t, [(_, _, off)] in line("a", 9.0, 40, offset0=59.0)]
    opened, closed, _ = run(decision(hold_s=10.0), dets_of(strong + weak + broken))
    assert len(opened) == 1 and len(closed) == 1
    (play,) = closed
    assert play.windows == 18  # the weak windows on the line held and extended it
    assert play.end_s == pytest.approx(3.0 + 11 * HOP + WINDOW - P.edge_s)


def test_a_window_that_passes_on_its_own_continues_the_track_on_a_new_line():
    # Looped music: the same second aligns with another repeat of the pattern.
    first = line("a", 0.0, 8)
    repeat = line("a", 4.0, 8, offset0=10.0 + 4.0 + 32.0)
    opened, closed, _ = run(decision(), dets_of(first + repeat))
    assert len(opened) == 1 and len(closed) == 1 and closed[0].windows == 16


def test_a_looped_play_starts_on_its_first_line_and_keeps_its_measured_speed():
    first = line("a", 0.0, 12, rate=1.05)
    repeat = line("a", 6.0, 6, offset0=10.0 + 6.0 * 1.05 + 32.0, rate=1.05)
    _, closed, _ = run(decision(), dets_of(first + repeat))
    (play,) = closed
    assert play.start_s == 0.0 and play.track_start_s == pytest.approx(10.0, abs=1e-6)  # not on the repeat line
    assert play.time_scale == pytest.approx(1.05, abs=1e-6)  # the longest line's slope


def test_one_stray_offset_does_not_drag_the_line_away_from_the_weak_windows_after_it():
    strong = line("a", 0.0, 6)
    stray = [(3.0, [("a", 0.2, 300.0)])]  # a passing window at a wrong place in the track
    weak = [(t, [("a", -0.05, off)]) for t, [(_, _, off)] in line("a", 3.5, 12, offset0=13.5)]
    _, closed, _ = run(decision(), dets_of(strong + stray + weak))
    assert len(closed) == 1 and closed[0].windows == 6 + 1 + 12
    assert closed[0].end_s == pytest.approx(3.5 + 11 * HOP + WINDOW)  # the stream ended with the music


def test_a_look_alike_in_a_rooms_missed_windows_neither_opens_nor_splits_the_play():
    items = []
    for i, (t, [(_, m, off)]) in enumerate(line("a", 0.0, 40)):
        # Through a room every fifth window misses the track, and a look-alike
        # passes in some of those gaps.
        items.append((t, [("b", 0.4, 70.0 + t)] if i % 5 == 4 else [("a", m, off)]))
    _, closed, _ = run(decision(), dets_of(items))
    assert [(p.track, p.windows) for p in closed] == [("a", 32)]


def test_now_playing_names_only_a_play_heard_lately_while_the_play_is_held():
    heard = line("a", 0.0, 10)
    unheard = [(5.0 + i * HOP, []) for i in range(16)]  # music nobody recognises, not silence
    opened, closed, nows = run(decision(), dets_of(heard + unheard))
    assert len(opened) == 1 and len(closed) == 1
    last = 4.5
    for d, now in zip(dets_of(heard + unheard), nows):
        if d.offset_s - last > P.show_hold_s:
            assert now is None
        elif d.offset_s >= 1.0:
            assert now is not None and now.track == "a"


def test_weak_windows_off_the_line_do_not_hold_a_play():
    strong = line("a", 0.0, 6)
    off_line = [(3.0 + i * HOP, [("a", -0.05, 500.0 + 7 * i)]) for i in range(12)]
    _, closed, _ = run(decision(), dets_of(strong + off_line))
    assert len(closed) == 1 and closed[0].windows == 6


def test_a_second_tracks_windows_never_extend_the_first_tracks_play():
    a = line("a", 0.0, 10)
    b = line("b", 5.0, 10, offset0=10.0 + 5.0, margin=0.6)  # b's offsets even continue a's line
    _, closed, _ = run(decision(), dets_of(a + b))
    by_track = {p.track: p for p in closed}
    assert set(by_track) == {"a", "b"}
    assert by_track["a"].windows == 10 and by_track["b"].windows == 10
    # b's play (contrary evidence) ends a's, at a's last support
    assert by_track["a"].end_s == pytest.approx(4.5 + WINDOW - P.edge_s)


def test_a_look_alike_under_a_much_stronger_play_does_not_become_a_second_play():
    items = []
    for t, [(_, m, off)] in line("a", 0.0, 30, margin=0.8):
        items.append((t, [("a", m, off), ("b", 0.1, 50.0 + t)]))
    _, closed, _ = run(decision(), dets_of(items))
    assert [p.track for p in closed] == ["a"]


def test_the_next_song_opens_once_it_has_the_evidence_not_once_the_last_songs_has_decayed():
    # A minute of a strong song builds evidence far above the threshold; the
    # next song, weaker, follows at once. The last song, no longer heard, must
    # not hold it back (it did while every open play counted: 7.5 s here).
    first = line("a", 0.0, 120, margin=0.8)
    second = line("b", 60.0, 40, margin=0.3, offset0=5.0)
    dets = dets_of(first + second)
    d = decision()
    opened_at = {}
    for x in dets:
        for play in d.update(x).opened:
            opened_at[play.track] = x.offset_s
    assert set(opened_at) == {"a", "b"}
    b_alone = decision()
    alone_at = next(x.offset_s for x in dets_of(line("b", 60.0, 40, margin=0.3, offset0=5.0))
                    if b_alone.update(x).opened)
    assert opened_at["b"] - alone_at <= P.contrary_s


def test_a_pause_shorter_than_the_hold_keeps_one_play_a_longer_one_splits_it():
    before = line("a", 0.0, 8)
    after_short = line("a", 4.0 + 8.0, 8, offset0=10.0 + 12.0)  # 8 s of nothing, same line
    _, closed, _ = run(decision(hold_s=10.0), dets_of(before + after_short))
    assert len(closed) == 1 and closed[0].windows == 16
    after_long = line("a", 4.0 + 20.0, 8, offset0=10.0 + 24.0)
    _, closed, _ = run(decision(hold_s=10.0), dets_of(before + after_long))
    assert len(closed) == 2


def test_a_stray_window_long_before_a_song_does_not_pull_its_start_back():
    # One window of music elsewhere in the stream resembles "b" at a random
    # place in it (a passing margin, offset 100 s); "b" itself starts 11 s
    # later on another line. The play starts with the song, not the stray.
    stray = [(0.0, []), (10.0, [("b", 0.05, 100.0)])]
    song = line("b", 21.0, 20, offset0=5.0)
    _, closed, _ = run(decision(), dets_of(stray + song))
    (play,) = closed
    assert play.start_s == pytest.approx(21.0 + P.edge_s)
    assert play.track_start_s == pytest.approx(5.0 + P.edge_s, abs=1e-6)
    assert play.windows == 20


def test_support_after_a_gap_on_the_same_line_keeps_the_first_windows_start():
    # Through a room a song's windows can fail to pass for several seconds;
    # when the next passing window continues the same offset line, the play
    # began with the first one.
    first = [(0.0, []), (10.0, [("b", 0.05, 20.0)])]
    later = line("b", 19.0, 20, offset0=29.0)
    _, closed, _ = run(decision(), dets_of(first + later))
    (play,) = closed
    assert play.start_s == pytest.approx(10.0 + P.edge_s) and play.windows == 21


def test_silence_ends_a_play_at_its_last_support():
    a = line("a", 0.0, 8)
    silent = [det(4.0 + i * HOP, silent=True) for i in range(10)]
    d = decision(silence_end_s=2.0)
    closed_during = []
    for x in dets_of(a) + silent:
        closed_during += d.update(x).closed
    assert len(closed_during) == 1  # closed by the silence, before the end of the stream
    assert closed_during[0].end_s == pytest.approx(3.5 + WINDOW - P.edge_s)


def test_time_scale_is_the_slope_of_the_offset_line():
    _, closed, _ = run(decision(), dets_of(line("a", 0.0, 30, rate=1.06)))
    assert closed[0].time_scale == pytest.approx(1.06, abs=0.01)
    _, closed, _ = run(decision(), dets_of(line("a", 0.0, 30, rate=0.93)))
    assert closed[0].time_scale == pytest.approx(0.93, abs=0.01)


def test_one_weak_window_alone_is_never_a_play_and_evidence_must_reach_the_threshold():
    # Single windows above the threshold, each on its own track or line, never add up.
    scattered = [(i * HOP, [(f"t{i % 7}", 0.05, 100.0 * i)]) for i in range(60)]
    opened, closed, _ = run(decision(threshold=0.6), dets_of(scattered))
    assert opened == [] and closed == []


@pytest.mark.parametrize("offset", [None, 42.0], ids=["no offsets (cnnbin)", "offsets (fingerprint)"])
def test_one_confident_window_is_not_a_play_a_second_one_that_agrees_makes_it_one(offset):
    # A song cutting to digital silence half-way through a window: that window alone scored a
    # wrong track far above the play threshold (seen with a small catalogue's cnnbin heads),
    # and the silence after it supports nothing.
    music_then_silence = [det(0.0, [("wrong", 0.85, offset)])] + [det(i * HOP, silent=True) for i in range(1, 12)]
    d = decision(threshold=0.5)
    opened, closed, _ = run(d, music_then_silence)
    assert opened == [] and closed == []
    # Its evidence is no peak for the calibration either: it could never have opened a play.
    assert d.evidence_peaks() == [0.0]
    # A second window that agrees (same track; on the line where there are offsets) makes it a play.
    agreeing = det(HOP, [("wrong", 0.3, None if offset is None else offset + HOP)])
    opened, _, _ = run(decision(threshold=0.5), [music_then_silence[0], agreeing] + music_then_silence[2:])
    assert [p.track for p in opened] == ["wrong"] and opened[0].windows == 2
    # The rule is a parameter: one window may be enough where a deployment says so.
    opened, _, _ = run(decision(threshold=0.5, min_play_windows=1), music_then_silence)
    assert len(opened) == 1


def test_the_default_play_threshold_opens_on_two_clear_windows_never_on_two_bare_passes():
    # The threshold a database without a calibrated one uses, and the least a calibration on too few
    # negatives may set: two windows that agree and pass clearly (0.1 above the window threshold)
    # name the song on the second one; two that barely pass do not.
    silence = [det(2 * HOP + i * HOP, silent=True) for i in range(8)]
    opened, _, _ = run(decision(threshold=P.start_evidence), dets_of(line("song", 0.0, 2, margin=0.1)) + silence)
    assert [p.track for p in opened] == ["song"] and opened[0].windows == 2
    opened, closed, _ = run(decision(threshold=P.start_evidence),
                            dets_of(line("song", 0.0, 2, margin=0.0)) + silence)
    assert opened == [] and closed == []


def test_a_play_needs_at_least_one_window():
    with pytest.raises(ConfigError, match="min_play_windows"):
        DecisionParams(min_play_windows=0)


def test_open_plays_are_reported_once_and_checkpointable():
    d = decision()
    opened = []
    for x in dets_of(line("a", 0.0, 10)):
        opened += d.update(x).opened
    assert len(opened) == 1 and opened[0].open
    (current,) = d.open_plays()
    assert current.key == opened[0].key and current.windows == 10 and current.end_s > opened[0].end_s


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError):
        decision(threshold=0.0)
    with pytest.raises(ValueError):
        decision(threshold=float("nan"))


def _negative_stream(rng, n_windows: int, n_tracks: int = 50):
    """Windows of music outside a catalogue: random tracks, random offsets, margins mostly below 0."""
    out = []
    for i in range(n_windows):
        tracks = rng.choice(n_tracks, 5, replace=False)
        margins = rng.normal(-0.25, 0.12, 5)
        out.append(det(i * HOP, [(f"t{k}", float(m), float(rng.uniform(0, 200))) for k, m in zip(tracks, margins)]))
    return out


def _peaks(dets) -> list[float]:
    d = decision(threshold=float("inf"))
    for x in dets:
        d.update(x)
    d.finish()
    return d.evidence_peaks()


def test_the_false_play_calibration_holds_on_fresh_synthetic_negatives():
    hour = int(3600 / HOP)
    rate = 2.0  # false plays per hour the calibration aims for
    calibration = _peaks(_negative_stream(np.random.default_rng(1), 2 * hour))
    threshold = play_threshold(np.array(calibration), 2.0, rate_per_hour=rate, floor=0.05)
    # Fresh negatives, 10 hours: the false-play rate stays near the target.
    d = decision(threshold=threshold)
    false = 0
    for x in _negative_stream(np.random.default_rng(2), 10 * hour):
        false += len(d.update(x).opened)
    assert false / 10.0 <= 2.5 * rate
    # A real play (weak but on its line) is still found at that threshold.
    opened, _, _ = run(decision(threshold=threshold), dets_of(line("a", 0.0, 40, margin=0.0, noise=0.05)))
    assert len(opened) == 1


def test_play_threshold_extrapolates_below_one_event_and_reads_quantiles_above():
    rng = np.random.default_rng(0)
    peaks = rng.exponential(0.1, 5000)
    # 0.5 per hour in 1 hour: an extrapolation above the largest peak's neighbourhood
    low = play_threshold(peaks, 1.0, rate_per_hour=0.5, floor=0.0)
    assert low > np.sort(peaks)[-2]
    # 1000 per hour in 1 hour: simply the 1001st largest
    high = play_threshold(peaks, 1.0, rate_per_hour=1000, floor=0.0)
    assert high == pytest.approx(np.sort(peaks)[::-1][1000])
    assert play_threshold(np.array([]), 1.0, rate_per_hour=0.5, floor=0.3) == 0.3
    with pytest.raises(ValueError):
        play_threshold(peaks, 0.0, rate_per_hour=0.5, floor=0.0)


def test_too_few_negative_hypotheses_keep_the_play_threshold_at_the_default():
    assert play_threshold_floor(TAIL_SIZE - 1, P) == P.start_evidence
    assert play_threshold_floor(TAIL_SIZE, P) == pytest.approx(3 * P.support_bonus)


def test_a_fragment_is_answered_by_its_best_window_a_longer_file_by_its_plays():
    windows = [det(0.0, [("a", 0.2, 3.0)])]
    answer = file_answer(windows, [], (), threshold=0.6, fragment_windows=3)
    assert answer.track == "a" and answer.score == pytest.approx(0.2)
    # The same lone window in a long file is no match: its score is the best evidence minus the threshold.
    long = windows + [det(0.5 * i, [("b", -0.3, 1.0)]) for i in range(1, 20)]
    answer = file_answer(long, [], (0.28,), threshold=0.6, fragment_windows=3)
    assert answer.track is None and answer.score == pytest.approx(0.28 - 0.6)
    _, plays, _ = run(decision(), dets_of(line("a", 0.0, 10)))
    answer = file_answer(dets_of(line("a", 0.0, 10)), plays, (), threshold=0.6, fragment_windows=3)
    assert answer.track == "a" and answer.score > 0 and answer.offset_s == plays[0].start_s


def test_line_agreement_earns_its_bonus_only_after_line_after_windows():
    # Windows at the weakest support (margin + support_bonus = 0) add evidence only through the line bonus.
    weak = P.support_margin
    strong = line("a", 0.0, 1)  # a passing window starts the hypothesis
    on_line = [(t, [("a", weak, off)]) for t, [(_, _, off)] in line("a", 0.5, 8, offset0=10.5)]
    d = decision(threshold=100.0, support_bonus=-weak)
    for item in dets_of(strong + on_line):
        d.update(item)
    (peak,) = d.evidence_peaks()  # evidence only grows here, so its peak is where it stands now
    # 9 windows on the line: the bonus is paid from the (line_after + 1)-th on, decayed by the half-life.
    decay = 0.5 ** (HOP / P.half_life_s)
    paid = sum(P.line_bonus * decay ** (8 - i) for i in range(P.line_after, 9))
    first = (0.3 - weak) * decay ** 8
    assert peak == pytest.approx(first + paid, rel=1e-6)
    d_without = decision(threshold=100.0, support_bonus=-weak, line_bonus=0.0)
    for item in dets_of(strong + on_line):
        d_without.update(item)
    # Only the first window ever added evidence; a peak counts from the second window on
    # (``min_play_windows``), by when it had decayed for one hop.
    assert d_without.evidence_peaks() == [pytest.approx((0.3 - weak) * decay)]


def test_a_slope_beyond_the_speeds_a_line_may_have_is_not_reported_as_a_time_scale():
    # A short repeating pattern: offsets that crawl at 0.8x, beyond the 12 % a line may have.
    _, closed, _ = run(decision(), dets_of(line("a", 0.0, 20, rate=0.8)))
    (play,) = closed
    assert play.time_scale is None and play.alteration == "unknown"
    _, closed, _ = run(decision(), dets_of(line("a", 0.0, 20, rate=1.1)))
    assert closed[0].time_scale == pytest.approx(1.1, abs=1e-6)


# --------------------------------------------------------------------------- dating a play back (decision.backdate)

def _weak_then_strong(weak, strong_t0: float = 8.0, n: int = 20):
    """Weak windows (track, margin -0.05, offset) at given times, then a passing run of "a" from strong_t0.

    The passing run's line is offset 10 s at strong_t0, so "a" at 10 - (strong_t0 - t) is on it. The
    stream starts at 0 with a window of nothing.
    """
    return dets_of([(0.0, [])] + [(t, [(tr, -0.05, off)]) for t, tr, off in weak] + line("a", strong_t0, n))


def on_line(t: float, strong_t0: float = 8.0) -> float:
    return 10.0 - (strong_t0 - t)


def test_weak_windows_on_the_line_just_before_a_play_date_its_start_back():
    """Through a room a song's first windows name it at the right place but just under the threshold."""
    weak = [(t, "a", on_line(t)) for t in np.arange(5.0, 8.0, HOP)]
    (plain,), (dated,) = run(decision(), _weak_then_strong([]))[1], run(decision(), _weak_then_strong(weak))[1]
    assert plain.start_s == pytest.approx(8.0 + P.edge_s)
    assert dated.start_s == pytest.approx(5.0 + P.edge_s)
    # The place in the track follows the line back too; the evidence does not change.
    assert dated.track_start_s == pytest.approx(10.0 - 3.0 + P.edge_s, abs=1e-6)
    assert dated.confidence == pytest.approx(plain.confidence) and dated.windows == plain.windows


def test_the_play_still_opens_on_its_own_evidence():
    weak = [(t, "a", on_line(t)) for t in np.arange(5.0, 8.0, HOP)]
    opened_at = []
    for items in ([], weak):
        d = decision()
        opened_at.append(next(x.offset_s for x in _weak_then_strong(items) if d.update(x).opened))
    assert opened_at[0] == opened_at[1]


@pytest.mark.parametrize("weak", [
    [(t, "a", on_line(t) + 30.0) for t in np.arange(5.0, 8.0, HOP)],  # the right track, elsewhere in it
    [(t, "b", on_line(t)) for t in np.arange(5.0, 8.0, HOP)],  # another track
], ids=["off the line", "another track"])
def test_weak_windows_off_the_line_or_of_another_track_do_not(weak):
    (play, *_) = run(decision(), _weak_then_strong(weak))[1]
    assert play.track == "a" and play.start_s == pytest.approx(8.0 + P.edge_s)


def test_a_gap_longer_than_contrary_s_ends_the_walk_back():
    weak = [(t, "a", on_line(t)) for t in (1.0, 1.5, 2.0)] + [(t, "a", on_line(t)) for t in (6.5, 7.0, 7.5)]
    assert 6.5 - 2.0 > P.contrary_s
    (play,) = run(decision(), _weak_then_strong(weak))[1]
    assert play.start_s == pytest.approx(6.5 + P.edge_s)


def test_the_walk_back_reaches_no_further_than_backdate_s():
    weak = [(t, "a", on_line(t, 12.0)) for t in np.arange(0.5, 12.0, HOP)]
    (play,) = run(decision(), _weak_then_strong(weak, strong_t0=12.0))[1]
    assert play.start_s == pytest.approx(12.0 - P.backdate_s + P.edge_s)


# --- margin units: one decision for engines whose margins differ in width ------------------------------------


def _scaled(items, unit: float):
    """The same stream as an engine whose margins are ``unit`` times as wide would score it."""
    return [(t, [(tr, m * unit, off) for tr, m, off in cands]) for t, cands in items]


def _room_like_stream():
    """A play with weak windows on its line, a look-alike, a pause, a second song and stray windows."""
    strong = line("a", 0.0, 6)
    weak = [(t, [("a", -0.05, off), ("b", -0.3, 70.0)]) for t, [(_, _, off)] in line("a", 3.0, 12, offset0=13.0)]
    stray = [(t, [("c", 0.05, 5.0 + 40 * (i % 2))]) for i, (t, _) in enumerate(line("c", 9.0, 6))]
    song = line("b", 20.0, 30, margin=0.12, noise=0.1, offset0=50.0, rate=1.05)
    return strong + weak + stray + song


def _summary(closed):
    return [(p.track, p.windows, round(p.start_s, 6), round(p.end_s, 6), round(p.track_start_s, 6)) for p in closed]


def test_the_decision_in_an_engines_margin_units_gives_the_same_plays_as_in_the_fingerprints():
    unit = P.cnnbin_margin_unit
    assert unit == P.margin_unit("cnnbin") and P.margin_unit("fingerprint") == 1.0
    _, reference, ref_nows = run(decision(threshold=0.6), dets_of(_room_like_stream()))
    scaled = StreamDecision("radio", window_s=WINDOW, wall_start=1_700_000_000.0, threshold=0.6 * unit,
                            params=P.in_margin_units(unit))
    _, closed, nows = run(scaled, dets_of(_scaled(_room_like_stream(), unit)))
    assert len(reference) >= 2 and _summary(closed) == _summary(reference)
    assert [n and n.track for n in nows] == [n and n.track for n in ref_nows]
    # Without the unit, the wide margins' weak windows (-1.2 where the threshold's support starts at -0.12)
    # hold nothing: the first play ends after its six strong windows instead of eighteen.
    _, unscaled, _ = run(decision(threshold=0.6 * unit), dets_of(_scaled(_room_like_stream(), unit)))
    assert _summary(unscaled) != _summary(reference)
    assert [p.windows for p in unscaled if p.track == "a"] == [6]


def test_margin_units_scale_only_margins_and_refuse_nonsense():
    from audiocopy.errors import ConfigError

    assert P.in_margin_units(1.0) is P
    scaled = P.in_margin_units(10.0)
    for name in DecisionParams.MARGIN_FIELDS:
        assert getattr(scaled, name) == pytest.approx(10.0 * getattr(P, name))
    unchanged = [f for f in P.__dataclass_fields__ if f not in DecisionParams.MARGIN_FIELDS]
    assert all(getattr(scaled, f) == getattr(P, f) for f in unchanged)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError):
            P.in_margin_units(bad)
    with pytest.raises(ConfigError):
        DecisionParams(cnnbin_margin_unit=0.0)
    with pytest.raises(ConfigError, match="no margin unit"):
        P.margin_unit("spectrum")


def test_a_play_threshold_keeps_the_unit_it_was_calibrated_in(caplog):
    from audiocopy.decision.recognizer import calibrated_margin_unit

    assert calibrated_margin_unit({}, 24.0) is None  # nothing calibrated: the engine's own unit
    assert calibrated_margin_unit({"play_threshold": 26.8, "play_margin_unit": 24.0}, 24.0) == 24.0
    assert not caplog.records
    # Calibrated before units were recorded: in 1, kept until recalibrated, and said so.
    with caplog.at_level("WARNING"):
        assert calibrated_margin_unit({"play_threshold": 10.4}, 24.0) == 1.0
    assert "recalibrated" in caplog.text
