"""The stream benchmark's planner and scoring (``tools/bench/broadcast_*.py``) on made-up tracks and plays.

No corpus, no audio, no server: what must hold is that a seed gives one
programme and its truth is consistent (no catalogue items overlapping but
at crossfades, everything inside the programme, time scales and pitch
shifts as the effects imply), that the scoring's rules give the known
recall, precision, pieces and errors on synthetic plays, and that bad
inputs fail with a clear ``BenchError``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from bench.broadcast_programme import Item, Plan, Source, check_plan, plan_programme, truth_items
from bench.broadcast_report import met, targets_table
from bench.broadcast_score import breakdown, match_plays, score_stream, summarise, worst_items
from bench.common import BenchError

SONGS = [Source(f"cat__t{i:02d}", 200.0, (1.0, 190.0 - 5 * i)) for i in range(12)]
OTHERS = [Source(f"other__t{i:02d}", 150.0, (0.0, 150.0)) for i in range(5)]


def plan(seed=0, name="p1", minutes=20):
    return plan_programme(name, SONGS, OTHERS, seed=seed, minutes=minutes)


# --- the planner ------------------------------------------------------------------

def test_plan_is_a_function_of_the_seed():
    assert plan(3).to_json() == plan(3).to_json()
    assert plan(3).to_json() != plan(4).to_json()
    assert plan(3, "p1").to_json() != plan(3, "p2").to_json()


@pytest.mark.parametrize("seed", range(6))
def test_truth_is_consistent(seed):
    p = plan(seed)
    check_plan(p)  # raises on any inconsistency
    assert 19 * 60 <= p.seconds <= 23 * 60
    music = [it for it in p.items if it.is_music]
    for a, b in zip(p.items, p.items[1:]):
        assert b.start_s >= a.start_s
        assert a.audible_end_s <= b.audible_start_s + 1e-9  # audible spans never overlap
        overlap = a.end_s - b.start_s
        if a.is_music and b.is_music:  # music overlaps music exactly by their shared crossfade
            assert overlap == pytest.approx(a.fade_out_s) == pytest.approx(b.fade_in_s)
            assert 2.0 <= overlap <= 6.0
        else:
            assert overlap <= 1e-9
    for it in music:
        src = next(s for s in SONGS + OTHERS if s.id == it.track)
        assert src.audible[0] <= it.src_start_s
        assert it.track_position(it.end_s) <= src.audible[1] + 1e-6  # the excerpt lies inside the track
        assert 0 <= it.start_s < it.end_s <= p.seconds
    assert {it.kind for it in p.items} == {"song", "other", "talk"}
    assert p.items[0].kind == "talk"


def test_truth_fields_follow_the_effects():
    items = [it for s in range(6) for it in plan(s).items if it.kind == "song"]
    kinds = {it.effect for it in items}
    assert kinds == {"none", "speed", "tempo", "pitch"}
    for it in items:
        t = it.truth()
        if it.effect in ("speed", "tempo"):
            assert 0.03 - 1e-9 <= abs(it.value - 1) <= 0.08 + 1e-9
            assert t["time_scale"] == pytest.approx(it.value, abs=1e-4)
        else:
            assert t["time_scale"] == 1.0
        if it.effect == "speed":
            assert t["pitch_semitones"] == pytest.approx(12 * math.log2(it.value), abs=1e-3)
        elif it.effect == "pitch":
            assert 1.0 <= abs(t["pitch_semitones"]) <= 2.0
        assert t["audible_end_s"] - t["audible_start_s"] >= 20.0 - 1e-6
        span = t["track_end_s"] - t["track_start_s"]
        assert span == pytest.approx(t["time_scale"] * (t["audible_end_s"] - t["audible_start_s"]), abs=1e-3)
    assert any(it.talk_over_s for it in items)
    assert all(t["kind"] == "song" for t in truth_items(plan()))


def test_check_plan_refuses_bad_truth():
    p = plan()
    i = next(k for k in range(1, len(p.items)) if p.items[k].is_music and p.items[k - 1].is_music)
    moved = list(p.items)
    moved[i] = replace(moved[i], start_s=moved[i].start_s - 3.0)  # overlaps more than its crossfade
    with pytest.raises(BenchError, match="overlaps"):
        check_plan(Plan(p.name, p.seed, p.seconds, tuple(moved)))
    with pytest.raises(BenchError, match="outside"):
        check_plan(Plan(p.name, p.seed, p.seconds - 30, p.items))


def test_planner_bad_inputs():
    with pytest.raises(BenchError, match="catalogue tracks and non-catalogue"):
        plan_programme("p", [], OTHERS, seed=0, minutes=10)
    with pytest.raises(BenchError, match="at least 1 minute"):
        plan_programme("p", SONGS, OTHERS, seed=0, minutes=0.5)
    short = [Source("tiny", 12.0, (0.0, 12.0))]
    with pytest.raises(BenchError, match="too short"):
        plan_programme("p", short, OTHERS, seed=0, minutes=5)


# --- scoring ----------------------------------------------------------------------

def song(track, a, b, *, scale=1.0, track_start=10.0, effect="none"):
    return {"kind": "song", "track": track, "start_s": a - 1, "end_s": b + 1, "audible_start_s": a,
            "audible_end_s": b, "time_scale": scale, "pitch_semitones": 0.0, "effect": effect,
            "value": scale, "talk_over_s": 0.0, "track_start_s": track_start,
            "track_end_s": track_start + scale * (b - a)}


def synthetic_plan():
    items = [song("A", 0, 60), {"kind": "other", "track": "X", "start_s": 59, "end_s": 120, "audible_start_s": 60,
                                "audible_end_s": 120},
             song("B", 120, 200, scale=1.05, effect="speed"), song("C", 200, 260), song("D", 260, 300),
             {"kind": "talk", "track": None, "start_s": 300, "end_s": 310, "audible_start_s": 300,
              "audible_end_s": 310}]
    return {"name": "syn", "seconds": 360.0, "items": items}


def play(track, a, b, ts=1.0, track_start=None):
    return {"track": track, "start_s": a, "end_s": b, "time_scale": ts, "track_start_s": track_start,
            "track_end_s": None if track_start is None else track_start + ts * (b - a)}


def synthetic_plays():
    return [play("A", 2.0, 59.0, ts=1.0, track_start=12.0),      # A found in one piece: +2 s / -1 s
            play("B", 121.0, 150.0, ts=1.06, track_start=11.05),  # B in two pieces, time scale 1 % high
            play("B", 160.0, 201.0, ts=1.06, track_start=53.0),
            play("Z", 80.0, 100.0),                               # a track not playing at all: false
            play("C", 250.0, 290.0),                              # mostly during D: false (25 % overlap)
            # D: nothing; C's coverage 10/60 < 50 %: not found
            ]


def windows(now_of):
    return [{"end_s": t / 2, "now": now_of(t / 2)} for t in range(5, 720)]


def test_match_plays_rules():
    items = [it for it in synthetic_plan()["items"] if it["kind"] == "song"]
    assert match_plays(items, synthetic_plays()) == [0, 1, 1, None, None]


def test_score_stream_known_figures():
    now = lambda t: "A" if 3 <= t <= 70 else ("B" if 125 <= t <= 200 else None)  # noqa: E731
    s = score_stream(synthetic_plan(), synthetic_plays(), windows(now))
    by = {it["track"]: it for it in s["items"]}
    assert s["plays"] == 5 and s["correct"] == 3
    assert [f["track"] for f in s["false"]] == ["Z", "C"]
    assert s["false"][0]["during"] == "other X" and s["false"][1]["during"] == "song D"
    assert by["A"]["found"] and by["A"]["pieces"] == 1
    assert by["A"]["start_error_s"] == pytest.approx(2.0) and by["A"]["end_error_s"] == pytest.approx(-1.0)
    assert by["A"]["track_start_error_s"] == pytest.approx(2.0)   # 12.0 reported, 10.0 true at the audible start
    assert by["A"]["line_start_error_s"] == pytest.approx(0.0)    # but right for the play's own start
    assert by["B"]["found"] and by["B"]["pieces"] == 2
    assert by["B"]["coverage"] == pytest.approx((29 + 40) / 80)
    assert by["B"]["time_scale_errors"] == pytest.approx([(1.06 - 1.05) / 1.05] * 2)
    assert by["B"]["line_start_error_s"] == pytest.approx(11.05 - (10.0 + 1.05 * 1.0))
    assert not by["C"]["found"] and by["C"]["pieces"] == 0 and not by["D"]["found"]
    assert by["A"]["first_named_s"] == pytest.approx(3.0) and by["D"]["first_named_s"] is None
    assert by["A"]["now_right"] == by["A"]["now_windows"] > 0  # named from 3 s to 70 s: every window after 5 s
    assert by["B"]["now_right"] == by["B"]["now_windows"] > 0 and by["B"]["first_named_s"] == pytest.approx(5.0)


def test_breakdown_first_naming_reads_named_songs_of_each_group():
    now = lambda t: "A" if 3 <= t <= 70 else ("B" if 125 <= t <= 200 else None)  # noqa: E731
    groups = {g["group"]: g for g in breakdown([score_stream(synthetic_plan(), synthetic_plays(), windows(now))])}
    assert groups["effect none"]["first_named_s"] == pytest.approx(3.0)  # A at 3 s; C and D never named
    assert groups["effect speed"]["first_named_s"] == pytest.approx(5.0)  # B, 5 s after its audible start
    assert groups["no talk over intro"]["first_named_s"] == pytest.approx(4.0)  # median of 3 and 5
    assert groups["talk over intro"]["first_named_s"] is None and groups["talk over intro"]["items"] == 0


def test_summary_known_figures():
    s = summarise([score_stream(synthetic_plan(), synthetic_plays(), windows(lambda t: None))])
    assert s["items"] == 4 and s["found"] == 2 and s["recall"] == 50.0 and s["recall_any_play"] == 50.0
    assert s["plays"] == 5 and s["correct"] == 3 and s["precision"] == 60.0
    assert s["false_per_hour"] == pytest.approx(2 / 0.1)  # 2 false plays in 360 s
    assert s["pieces"] == pytest.approx(1.5) and s["split_items"] == 1
    assert s["start_error_s"]["n"] == 2 and s["start_error_s"]["median"] == pytest.approx(1.5)  # |2| and |1|
    assert s["start_error_s"]["mean_signed"] == pytest.approx(1.5)
    assert s["end_error_s"]["median"] == pytest.approx(1.0)  # |-1| and |+1|
    assert s["time_scale_error"]["n"] == 3 and s["time_scale_within_1pct"] == 100.0  # A's play and B's two
    assert s["time_scale_error"]["median"] == pytest.approx(0.01 / 1.05, abs=1e-4)
    assert s["now_share"] == 0.0 and s["never_named"] == 4
    worst = worst_items([score_stream(synthetic_plan(), synthetic_plays(), windows(lambda t: None))], n=2)
    assert {w["track"] for w in worst} == {"C", "D"}


def test_now_playing_wrong_and_lingering():
    # "A" shown until 75 s: 60..75 lingers after A ended; "Q" (never played) is plain wrong.
    now = lambda t: "A" if t <= 75 else ("Q" if 300 <= t < 310 else None)  # noqa: E731
    s = score_stream(synthetic_plan(), [], windows(now))
    w = s["now_wrong"]
    assert w["lingering"] == sum(1 for t in range(5, 720) if 60 < t / 2 <= 75)
    assert w["wrong"] == w["lingering"] + sum(1 for t in range(5, 720) if 300 <= t / 2 < 310)
    a = next(it for it in s["items"] if it["track"] == "A")
    assert a["next"] == "other" and a["linger_s"] == pytest.approx(15.0)
    summary = summarise([s])
    # A (then other music) lingers 15 s, D (then talk) not at all; B and C end into the next song.
    assert summary["linger_before_other_s"]["n"] == 2 and summary["linger_before_other_s"]["median"] == 7.5
    assert summary["linger_before_song_s"]["n"] == 2 and summary["linger_before_song_s"]["median"] == 0.0


def test_targets_read_medians_and_chains():
    s = summarise([score_stream(synthetic_plan(), synthetic_plays(), windows(lambda t: None))])
    assert met(s, "recall", "room") is False and met(s, "start_error_s", "room") is True
    assert met({"recall": 95.0}, "recall", "room") is True and met({"recall": 95.0}, "recall", "broadcast") is False
    assert met({"pieces": None}, "pieces", "room") is None
    table = targets_table({"chains": ["room"], "summary": {"room": s, "all": s}})
    assert any("**miss**" in line for line in table) and len(table) == 2 + 7


def test_scoring_bad_inputs():
    with pytest.raises(BenchError, match="no items"):
        score_stream({"name": "empty", "seconds": 10.0, "items": []}, [], [])
    with pytest.raises(BenchError, match="lacks"):
        score_stream(synthetic_plan(), [{"track": "A", "start_s": 1.0}], [])
    with pytest.raises(BenchError, match="ends before"):
        score_stream(synthetic_plan(), [play("A", 10.0, 5.0)], [])


def test_item_talk_over_must_fit():
    it = Item("song", "cat__t00", 0.0, 21.0, 0.0, 1.0, talk_over_s=25.0)
    with pytest.raises(BenchError, match="talk over"):
        check_plan(Plan("p", 0, 21.0, (it,)))


def test_offset_jumps_count_re_anchored_lines():
    # "Now playing" names A from 5 s on, its offset advancing with stream time, except at 20 s (a jump of +8 s
    # and straight back): two jumps off the line.
    rows = [{"end_s": t / 2, "now": "A" if t >= 10 else None,
             "offset": 10.0 + t / 2 + (8.0 if t == 40 else 0.0)} for t in range(5, 120)]
    s = score_stream(synthetic_plan(), [play("A", 2.0, 59.0, track_start=12.0)], rows)
    a = next(it for it in s["items"] if it["track"] == "A")
    assert a["offset_jumps"] == 2 and a["named_s"] == pytest.approx(55.0)  # windows ending at 5.0 .. 59.5 s


def test_command_line_refuses_bad_settings(capsys, tmp_path):
    import bench_broadcast

    base = ["--corpus", str(tmp_path), "--work", str(tmp_path / "work")]
    for extra, message in ((["--chains", "broadcast,tv"], "unknown"), (["--programmes", "0"], "--programmes"),
                           (["--work", str(Path(bench_broadcast.REPO) / "data" / "x")], "inside the repository")):
        with pytest.raises(SystemExit) as exc:
            bench_broadcast.parse_args(base + extra)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    args = bench_broadcast.parse_args(base + ["--chains", "room"])
    assert args.chains == ["room"] and args.work == (tmp_path / "work").resolve()


def test_missing_corpus_is_one_clear_error(tmp_path, capsys):
    import bench_broadcast

    code = bench_broadcast.main(["--corpus", str(tmp_path / "nowhere"), "--work", str(tmp_path / "work")])
    err = capsys.readouterr().err
    # One line: the missing manifest (or, on a machine without sox/espeak-ng, the tools to install first).
    assert code == 1 and err.startswith("error:") and ("manifest-dev.tsv" in err or "install" in err)


def test_pitch_is_scored_against_the_truth_of_the_effect():
    plan = synthetic_plan()
    plan["items"][2]["pitch_semitones"] = 12 * math.log2(1.05)  # B is sped up 5 %: +0.84 semitone
    plays = synthetic_plays()
    plays[0]["pitch_semitones"] = 0.2            # A: 0.2 st off
    plays[1]["pitch_semitones"] = 0.84 + 0.5     # B's first piece: 0.5 st off
    # B's second piece reports no pitch
    s = summarise([score_stream(plan, plays, windows(lambda t: None))])
    assert s["pitch_error_st"]["n"] == 2 and s["pitch_missing"] == 1
    assert s["pitch_error_st"]["median"] == pytest.approx((0.2 + 0.5 - 12 * math.log2(1.05) + 0.84) / 2, abs=1e-3)
    assert s["pitch_within_03"] == 50.0


# --- either engine: its own files, section and database line ------------------------------------------------


def test_cnnbin_refuses_an_encoder_its_heads_would_not_read(capsys, tmp_path):
    import bench_broadcast

    base = ["--corpus", str(tmp_path), "--work", str(tmp_path / "work")]
    other = tmp_path / "other_encoder.json"
    for extra, message in ((["--engine", "cnnbin", "--encoder", str(other)], "shipped encoder"),
                           (["--engine", "cnnbin", "--jobs", "0"], "--jobs"), (["--engine", "spectrum"], "invalid")):
        with pytest.raises(SystemExit) as exc:
            bench_broadcast.parse_args(base + extra)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert bench_broadcast.parse_args(base).engine == "fingerprint"
    # The fingerprint engine may still be measured with another encoder.
    assert bench_broadcast.parse_args(base + ["--encoder", str(other)]).encoder == other


def test_each_engine_writes_only_its_own_files(tmp_path):
    import bench_broadcast
    from bench.broadcast_report import section_name

    base = ["--corpus", str(tmp_path), "--work", str(tmp_path / "work")]
    paths = {e: {w: bench_broadcast.output(bench_broadcast.parse_args(base + ["--engine", e]), w)
                 for w in bench_broadcast.ENGINE_OUTPUTS[e]} for e in bench_broadcast.ENGINE_OUTPUTS}
    assert set(paths["fingerprint"].values()).isdisjoint(paths["cnnbin"].values())
    # The fingerprint engine's results stay where the runs before the choice wrote them.
    assert paths["fingerprint"]["results"] == (tmp_path / "work" / "results.json").resolve()
    assert paths["cnnbin"]["results"].name == "results-cnnbin.json"
    assert section_name("fingerprint") == "broadcast" and section_name("cnnbin") == "broadcast-cnnbin"


def _report_res(engine=None):
    cal = {"threshold": 0.2056, "play_threshold": 0.348, "play_rate_per_hour": 0.5, "play_calibration_hours": 1.8,
           "calibration_windows": 1824}
    if engine == "cnnbin":
        cal.update(score_offset=3.2866, catalog_fpr=0.005, catalog_fpr_confidence=0.9, fpr_upper_bound=0.004378)
    res = {"database": {"tracks": 50, "calibration": cal, "note": "enrolled in 83 s"},
           "split": {"calibration": ["pkg__a", "pkg__b"], "track_packages": {"pkg__a": "pkg", "pkg__b": "pkg"}}}
    return res if engine is None else {**res, "engine": engine}


def test_database_line_says_how_each_engine_was_calibrated():
    from bench.broadcast_report import database_line

    fp = database_line(_report_res())  # results written before the choice existed are fingerprint's
    assert "fingerprint engine; window threshold 0.2056" in fp and "1824 windows of the 2 wrong tracks" in fp
    cnn = database_line(_report_res("cnnbin"))
    assert "cnnbin engine; catalogue offset 3.287" in cnn and "at most 0.50 % of windows" in cnn
    assert "90.00 % confidence (bound 0.44 %)" in cnn and "play threshold 0.348" in cnn
    assert "window threshold" not in cnn


def test_a_dataset_of_another_catalogue_is_not_reused(tmp_path):
    import json

    import bench_broadcast

    work = tmp_path / "work"
    split = {"catalog": ["c__1", "c__2"], "wrong": ["w__1"]}

    def manifest(ids, folder=work):
        (work / "dataset").mkdir(parents=True, exist_ok=True)
        sources = [{"track_id": t, "role": "wrong" if t.startswith("w") else "licensed",
                    "path": str(folder / "catalog" / f"{t}.wav")} for t in ids]
        (work / "dataset" / "manifest.json").write_text(json.dumps({"sources": sources, "complete": True}))

    assert not bench_broadcast._dataset_fits(work / "dataset", split)  # none yet
    manifest(["c__1", "c__2", "w__1"])
    assert bench_broadcast._dataset_fits(work / "dataset", split)
    manifest(["c__1", "w__1"])  # a smaller catalogue
    assert not bench_broadcast._dataset_fits(work / "dataset", split)
    manifest(["c__1", "c__2", "w__1"], folder=tmp_path / "elsewhere")  # drawn from another work folder's audio
    assert not bench_broadcast._dataset_fits(work / "dataset", split)


def test_each_run_keeps_its_results_where_its_report_points(tmp_path):
    import datetime
    import json

    from bench.common import run_results_path, write_run_results

    latest = tmp_path / "live-page" / "results.json"
    first = datetime.datetime(2026, 12, 7, 18, 30, 5, tzinfo=datetime.timezone.utc)
    second = first + datetime.timedelta(minutes=13)
    a = write_run_results(latest, {"run": 1}, first)
    b = write_run_results(latest, {"run": 2}, second)
    assert a == run_results_path(latest, first) == tmp_path / "live-page" / "runs" / "results-20261207T183005Z.json"
    assert a != b
    # The later run replaced the latest readings, never the earlier run's own file, which its report names.
    assert json.loads(a.read_text()) == {"run": 1, "results_file": str(a)}
    assert json.loads(latest.read_text()) == {"run": 2, "results_file": str(b)}
    # A local time is stamped in UTC, so two machines' runs sort together.
    cet = datetime.timezone(datetime.timedelta(hours=1))
    assert run_results_path(latest, first.astimezone(cet)) == a
