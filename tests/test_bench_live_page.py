"""The Live-page benchmark's pure parts (``tools/bench/live_page.py``, ``tools/bench_live_page.py``).

What must hold without a browser: only catalogue songs long enough for the
cut are played, drawn reproducibly; a cut starts at the song's first audible
sample and is refused outside the recording; "named" is the first reading
naming the song and "shown" the share of readings naming it over the
following span, other tracks and blanks counting against it; and the
command line refuses chains it cannot play and a follow span the cut cannot
hold. The browser run itself is the tool's job (it needs Chromium and real
time), not this suite's.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from bench.common import BenchError
from bench.live_page import choose_songs, cut_clip, programme_songs, score_samples, summarise
from bench_live_page import GROUPS, parse_args


def _plan(folder, name, items):
    (folder / name).mkdir(parents=True)
    (folder / name / "plan.json").write_text(json.dumps({"name": name, "seed": 0, "seconds": 100, "items": items}))


def _item(kind, track, a, b, talk=0.0):
    return {"kind": kind, "track": track, "audible_start_s": a, "audible_end_s": b, "effect": "none",
            "talk_over_s": talk}


def test_only_catalogue_songs_long_enough_for_the_cut_are_played(tmp_path):
    _plan(tmp_path, "p1", [_item("talk", None, 0, 40), _item("song", "a", 40, 80), _item("song", "b", 80, 95),
                           _item("other", "x", 95, 140)])
    _plan(tmp_path, "p2", [_item("song", "c", 5, 36, talk=4.0)])
    songs = programme_songs(tmp_path, min_seconds=30)
    assert [(s.programme, s.track, s.audible_start_s, s.talk_over_s) for s in songs] == [
        ("p1", "a", 40.0, 0.0), ("p2", "c", 5.0, 4.0)]


def test_no_programmes_is_refused_with_the_step_to_run_first(tmp_path):
    with pytest.raises(BenchError, match="bench_broadcast"):
        programme_songs(tmp_path, min_seconds=30)


def test_songs_are_drawn_reproducibly_and_never_twice(tmp_path):
    _plan(tmp_path, "p1", [_item("song", f"t{i}", 40 * i, 40 * i + 35) for i in range(20)])
    songs = programme_songs(tmp_path, min_seconds=30)
    first, again = choose_songs(songs, 6, seed=3), choose_songs(songs, 6, seed=3)
    assert first == again and len({s.track for s in first}) == 6
    assert choose_songs(songs, 6, seed=4) != first
    assert choose_songs(songs, 50, seed=3) == songs
    with pytest.raises(BenchError):
        choose_songs(songs, 0, seed=3)


def test_a_cut_starts_at_the_song_and_is_refused_outside_the_recording():
    rate = 1000
    signal = np.arange(10 * rate, dtype=np.float32)
    clip = cut_clip(signal, rate, 2.5, 3.0)
    assert clip[0] == 2500 and clip.size == 3000 and clip.dtype == np.float32
    assert cut_clip(signal, rate, 8.0, 3.0).size == 2000  # the recording ends first
    with pytest.raises(BenchError, match="outside"):
        cut_clip(signal, rate, 10.0, 3.0)


def test_named_is_the_first_reading_naming_the_song_and_shown_its_share_after():
    # Blank for 3 s, the song from 3.0 s, another track for 1 s at 6 s, blank for 1 s at 9 s.
    samples = []
    for i in range(150):
        t = i / 10
        name = "" if t < 3 else "other" if 6 <= t < 7 else "" if 9 <= t < 10 else "song"
        samples.append((t, name))
    got = score_samples(samples, "song", follow_s=10)
    assert got["named_s"] == 3.0
    # Readings 3.0..13.0 s: 101, of which 10 name another track and 10 are blank.
    assert got["readings"] == 101 and got["shown_pct"] == round(100 * 81 / 101, 1)
    assert got["wrong_pct"] == round(100 * 10 / 101, 1)


def test_a_song_never_named_has_no_time_and_nothing_shown():
    got = score_samples([(0.0, ""), (0.1, "other"), (0.2, "")], "song", follow_s=10)
    assert got == {"named_s": None, "shown_pct": 0.0, "readings": 0, "wrong_pct": 0.0}


def test_the_summary_counts_songs_against_the_targets_and_groups_split_them():
    rows = [{"named_s": 3.0, "shown_pct": 95.0, "talk_over_s": 0.0},
            {"named_s": 6.0, "shown_pct": 80.0, "talk_over_s": 5.0},
            {"named_s": None, "shown_pct": 0.0, "talk_over_s": 0.0}]
    s = summarise(rows, named_target_s=5, shown_target_pct=90)
    assert s == {"songs": 3, "named": 2, "named_within_target": 1, "named_median_s": 4.5, "shown_mean_pct": 87.5,
                 "shown_median_pct": 87.5, "shown_at_target": 1}
    assert [sum(keep(r) for r in rows) for keep in GROUPS.values()] == [3, 2, 1]


@pytest.mark.parametrize("argv", [["--chains", "broadcast"], ["--chains", ""], ["--clip-s", "20", "--follow-s", "20"],
                                  ["--follow-s", "0"]])
def test_the_command_line_refuses_what_it_cannot_play(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_the_report_names_the_target_and_every_song():
    from bench_live_page import render

    rows = [{"chain": "room", "programme": "p1", "track": "a", "effect": "none", "talk_over_s": 0.0,
             "listening_s": 0.1, "named_s": 3.2, "shown_pct": 96.0, "wrong_pct": 0.0},
            {"chain": "room", "programme": "p2", "track": "b", "effect": "pitch", "talk_over_s": 6.0,
             "listening_s": 0.1, "named_s": None, "shown_pct": 0.0, "wrong_pct": 0.0}]
    summary = {"room": {g: summarise([r for r in rows if keep(r)], named_target_s=5, shown_target_pct=90)
                        for g, keep in GROUPS.items()}}
    res = {"date": "2026-12-07 16:00 UTC", "revision": "abc", "wall_min": 1.0, "work": "/w", "encoder_sha256": "f" * 64,
           "calibration": {"play_threshold": 0.348}, "command": "x", "seed": 0, "clip_s": 30.0, "follow_s": 20.0,
           "chains": ["room"], "summary": summary, "rows": rows, "results_file": "/w/r.json",
           "machine": {"cpu": "cpu", "cores": 2, "ram_gib": 1.0, "os": "os", "python": "3.11"}, "load": {}}
    text = render(res)
    assert "named within 5 s, then shown at least 90 %" in text
    assert "| room | all songs | 2 | 1 | 1 | 3.2 | 96.0 | 96.0 | 1 |" in text
    assert "| room | p2 | b | pitch | 6.0 | 0.1 | – | 0.0 | 0.0 |" in text
    assert text.splitlines()[0].endswith("(`tools/bench_live_page.py`)")  # readings from before the choice
    assert render({**res, "engine": "cnnbin"}).splitlines()[0].endswith(", engine cnnbin")


def test_each_engine_has_its_own_folder_and_section_and_its_database_must_exist(tmp_path, capsys):
    import bench_live_page
    from bench.common import per_engine

    assert per_engine(bench_live_page.SECTION, "fingerprint") == "live-page"
    assert per_engine(bench_live_page.SECTION, "cnnbin") == "live-page-cnnbin"
    assert parse_args([]).engine == "fingerprint" and parse_args(["--engine", "cnnbin"]).engine == "cnnbin"
    with pytest.raises(SystemExit):
        parse_args(["--engine", "spectrum"])
    # A work folder without the cnnbin database: one error naming the run that makes it.
    code = bench_live_page.main(["--work", str(tmp_path), "--engine", "cnnbin", "--no-doc"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error:") and "--engine cnnbin first" in last
