"""The pure parts of tools/fault_inject.py: announcements checked against store rows, rounds, audio, arguments.

The tool itself kills real servers for minutes (docs/benchmarks.md, "Fault
injection"); here every kind of problem it reports is built by hand from
rows and announcements with a known answer, each with the input next to it
that must pass.
"""
from __future__ import annotations

import random

import fault_inject
import numpy as np
import pytest
from bench.faults import (
    CHUNK_S,
    CLIENT_RATE,
    HEADING,
    MATCH_TOL_S,
    Connection,
    Round,
    check_store,
    plan_rounds,
    programme,
    report,
)


def _play(key: str, track: str = "t1", start: float = 0.0, end: float = 20.0) -> dict:
    return {"type": "play", "key": key, "track": track, "start_s": start, "end_s": end}


def _row(key: str, status: str, source: str = "c0", track: str = "t1", start: float = 0.0, end: float = 20.0) -> dict:
    return {"key": key, "status": status, "source": source, "track": track, "start_s": start, "end_s": end}


def _connection(closed=(), shown=()) -> Connection:
    c = Connection(source="c0", round=1, closed=list(closed))
    for s in shown:
        c.shown[s] = 1
    return c


def test_a_store_holding_every_announced_play_passes():
    # t1 was shown, then closed (a play message); t2 was shown and never closed: the server died during it.
    c = _connection(closed=[_play("k1")], shown=[("t1", 0.0), ("t2", 30.0)])
    rows = [_row("k1", "closed"), _row("k2", "recovered", track="t2", start=30.5, end=41.0),
            _row("k3", "closed", source="c9", track="t3")]
    v = check_store([c], rows)
    assert v.ok and v.problems == {}
    assert (v.announced_closed, v.announced_open) == (1, 1)
    assert v.open_found_as == {"recovered": 1}
    assert v.stored == {"closed": 2, "recovered": 1}
    assert v.unannounced == 1  # k3: no client was told of it, which is no loss


def test_a_closed_play_missing_or_not_closed_is_reported():
    c = _connection(closed=[_play("k1"), _play("k2", start=40.0, end=60.0), _play("k3", track="t1", start=70.0)])
    rows = [_row("k2", "recovered", start=40.0, end=55.0), _row("k3", "closed", track="t9", start=70.0)]
    v = check_store([c], rows)
    assert not v.ok
    assert [len(v.problems[k]) for k in ("lost_closed", "closed_not_closed", "wrong_play")] == [1, 1, 1]
    assert "k1" in v.problems["lost_closed"][0]
    assert "stored as recovered" in v.problems["closed_not_closed"][0]


def test_a_shown_play_is_found_by_source_track_and_start_within_one_hop():
    shown = ("t2", 30.0)
    at_edge = [_row("k", "recovered", track="t2", start=30.0 + MATCH_TOL_S)]
    assert check_store([_connection(shown=[shown])], at_edge).ok
    for rows in ([_row("k", "recovered", track="t2", start=30.0 + MATCH_TOL_S + 0.01)],  # too far
                 [_row("k", "recovered", track="t3", start=30.0)],  # another track
                 [_row("k", "recovered", source="c1", track="t2", start=30.0)],  # another connection
                 []):
        v = check_store([_connection(shown=[shown])], rows)
        assert list(v.problems) == ["lost_open"], rows


def test_a_shown_play_closed_on_its_connection_is_checked_by_its_key_only():
    c = _connection(closed=[_play("k1", start=0.0)], shown=[("t1", 0.5)])
    assert c.open_only() == []
    v = check_store([c], [])
    assert list(v.problems) == ["lost_closed"] and v.announced_open == 0


def test_duplicates_and_plays_left_open_are_reported():
    rows = [_row("k1", "closed"), _row("k1", "closed"), _row("k2", "recovered", start=40.0),
            _row("k3", "closed", start=40.3), _row("k4", "open", start=80.0)]
    v = check_store([], rows)
    assert {k: len(x) for k, x in v.problems.items()} == {"duplicate_key": 1, "duplicate_play": 1, "still_open": 1}
    # The same track again later on one connection is a second play, not a duplicate.
    assert check_store([], [_row("k1", "closed"), _row("k2", "closed", start=0.0 + MATCH_TOL_S + 0.5)]).ok


def test_the_report_names_every_problem_and_the_restart_times():
    rounds = [Round(1, 10.0, "SIGKILL", exit_status=-9, stop_s=0.01, restart_s=1.0),
              Round(2, 12.0, "SIGKILL", "announce", -9, 0.02, 3.0),
              Round(3, 11.0, "SIGTERM", exit_status=0, stop_s=0.5, restart_s=2.0)]
    bad = check_store([_connection(shown=[("t2", 30.0)])], [])
    text = report("setup", "python tools/fault_inject.py", "a machine", rounds, bad)
    assert text.startswith(HEADING) and "**FAILED: 1 problem(s).**" in text and "- `lost_open` (a client was" in text
    assert bad.lost_by_round == {1: 1} and "| 1 | 10 | SIGKILL | 0 | 0 | 0 | 1 | a random time |" in text
    assert "| SIGKILL | at a random time | 1 | 0.01 | 1.00 | 1.00 | 1.00 |" in text
    assert "| SIGKILL | after an announcement | 1 | 0.02 | 3.00 | 3.00 | 3.00 |" in text
    many = check_store([_connection(shown=[("t2", 10.0 * i) for i in range(13)])], [])
    assert "; and 3 more" in report("setup", "cmd", "m", rounds, many)  # a long failure stays readable
    good = report("setup", "cmd", "m", rounds, check_store([], []))
    assert "No acknowledged play was lost" in good and "FAILED" not in good


def test_rounds_are_seeded_and_mix_signals_and_moments():
    args = fault_inject.parse_args(["--rounds", "6", "--up-s", "5", "9", "--sigterm-every", "3",
                                    "--announce-every", "2"])
    rounds = plan_rounds(args.rounds, args.up_s, args.seed, args.sigterm_every, args.announce_every)
    assert [r.up_s for r in rounds] == [r.up_s for r in plan_rounds(6, (5, 9), args.seed, 3, 2)]
    assert [r.up_s for r in rounds] != [r.up_s for r in plan_rounds(6, (5, 9), args.seed + 1, 3, 2)]
    assert all(5 <= r.up_s <= 9 for r in rounds)
    assert [r.signal for r in rounds] == ["SIGKILL", "SIGKILL", "SIGTERM"] * 2
    assert [r.moment for r in rounds] == ["random", "announce"] * 3
    never = plan_rounds(4, (5, 9), 1, 0, 0)
    assert {(r.signal, r.moment) for r in never} == {("SIGKILL", "random")}


@pytest.mark.parametrize("argv", [["--db", "x"], ["--audio", "x"], ["--streams", "0"], ["--rounds", "0"],
                                  ["--speed", "0"], ["--up-s", "9", "5"], ["--up-s", "0", "5"],
                                  ["--sigterm-every", "-1"], ["--play-s", "0", "5"], ["--gap-s", "3", "2"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        fault_inject.parse_args(argv)


def test_the_programme_alternates_track_stretches_and_silence():
    rate, chunk = CLIENT_RATE, int(CHUNK_S * CLIENT_RATE)
    track = np.full(10 * rate, 0.5, np.float32)
    chunks = programme([track], random.Random(0), play_s=(2.0, 2.0), gap_s=(1.0, 1.0))
    first = [next(chunks) for _ in range(12)]
    assert all(len(c) == 2 * chunk for c in first)  # s16le
    loud = [bool(np.frombuffer(c, "<i2").any()) for c in first]
    assert loud == [True] * 4 + [False] * 2 + [True] * 4 + [False] * 2
