"""Scoring a stream's plays and "now playing" answers against its programme's truth.

Place in ``tools/bench``: after the streaming, before the report. Pure
functions of the truth (``broadcast_programme.Plan.to_json()``), the plays
and the window rows (``broadcast_stream``), so the tests check every rule
on made-up plays.

The rules (times are stream seconds; a truth item is a catalogue song,
from its audible start to its audible end, ``broadcast_programme``):

* **correct play**: a play overlaps a truth item *of its own track* for
  at least half of the play's duration (the item it overlaps most). Every
  other play is a **false play**, whatever it overlaps (another song,
  music not in the catalogue, talk, or mostly the wrong time);
* **found item** (recall): an item with at least ``MIN_ITEM_S`` of audible
  music whose correct plays together cover at least half of it. Recall =
  found / such items; precision = correct plays / all plays; false plays
  per hour of programme;
* **pieces per found play**: correct plays per found item (1 = one play
  per song, what a rights-holder wants);
* **start / end error** (items of at least ``ERROR_MIN_S``): the first
  correct play's start minus the item's audible start, the last one's end
  minus the audible end (signed: + is late); the targets read the median
  of the absolute values, the 90th percentile shows the tail;
* **evidence against the truth** (correct plays of at least
  ``ERROR_MIN_S``): the time-scale error ``|time_scale - truth| / truth``;
  the part of the track a found item's plays report (first play's
  ``track_start_s``, last play's ``track_end_s``) against the item's;
  and the offset line's error, ``track_start_s`` against where the track
  really was at the play's own start (whatever the start error). Pitch is
  not estimated by the decision: "not measured";
* **now playing**: a ``window`` message speaks for the moment its window
  ends. For each found-or-not item, the share of its windows from 5 s
  after its audible start to its end whose ``stream.track`` names it, and
  the time from its audible start to the first window that names it.
  Over the whole programme, the share of windows that name a track that
  is not audible then (split into the first ``LINGER_S`` after that track
  ended, the decision's hold, and the rest); and per song, how long after
  its end "now playing" still names it (before another song, and before
  talk or music not in the catalogue).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .common import BenchError

MIN_ITEM_S = 10.0
FOUND_COVERAGE = 0.5
CORRECT_SHARE = 0.5
ERROR_MIN_S = 20.0
NOW_SKIP_S = 5.0
LINGER_S = 15.0
#: An offset line further than this from the truth at its play's start is "off" (s).
LINE_OFF_S = 2.0


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _union(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi]."""
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _check_plays(plays: list[dict]) -> None:
    for p in plays:
        missing = [k for k in ("track", "start_s", "end_s") if k not in p]
        if missing:
            raise BenchError(f"a play lacks {', '.join(missing)}: {p}")
        if not p["end_s"] >= p["start_s"]:
            raise BenchError(f"a play ends before it starts: {p}")


def match_plays(items: list[dict], plays: list[dict]) -> list[int | None]:
    """For each play, the index (in ``items``) of the truth item it is correct for, or None (a false play)."""
    out = []
    for p in plays:
        best, best_ov = None, 0.0
        for j, it in enumerate(items):
            if it["track"] == p["track"]:
                ov = _overlap(p["start_s"], p["end_s"], it["audible_start_s"], it["audible_end_s"])
                if ov > best_ov:
                    best, best_ov = j, ov
        duration = p["end_s"] - p["start_s"]
        out.append(best if best is not None and best_ov >= CORRECT_SHARE * duration else None)
    return out


def _position(it: dict, t: float) -> float:
    return it["track_start_s"] + it["time_scale"] * (t - it["audible_start_s"])


def _evidence(it: dict, mine: list[dict]) -> dict:
    """Time-scale and track-position errors of an item's correct plays (``ERROR_MIN_S`` and longer)."""
    long_plays = [p for p in mine if p["end_s"] - p["start_s"] >= ERROR_MIN_S]
    ts = [(p["time_scale"] - it["time_scale"]) / it["time_scale"] for p in long_plays
          if p.get("time_scale") is not None]
    out = {"time_scale_errors": ts, "time_scale_missing": sum(p.get("time_scale") is None for p in long_plays)}
    # Pitch against the truth in semitones: a speed change raises it by 12 log2(factor), a pitch effect by
    # its own value, a tempo change not at all (``it["pitch_semitones"]``, from the programme's plan).
    out["pitch_errors"] = [p["pitch_semitones"] - it["pitch_semitones"] for p in long_plays
                           if p.get("pitch_semitones") is not None]
    out["pitch_missing"] = sum(p.get("pitch_semitones") is None for p in long_plays)
    first, last = mine[0], mine[-1]
    if first.get("track_start_s") is not None and last.get("track_end_s") is not None:
        out["track_start_error_s"] = first["track_start_s"] - it["track_start_s"]
        out["track_end_error_s"] = last["track_end_s"] - it["track_end_s"]
        out["line_start_error_s"] = first["track_start_s"] - _position(it, first["start_s"])
        out["line_end_error_s"] = last["track_end_s"] - _position(it, last["end_s"])
        out["line_without_scale"] = first.get("time_scale") is None
    out["negative_track_start"] = sum((p.get("track_start_s") or 0.0) < -1.0 for p in mine)
    return out


def _windows_heard(it: dict, windows: list[dict]) -> dict:
    """What the windows inside an item said of its track: best-candidate share, its margins (diagnosis)."""
    inside = [w for w in windows if it["audible_start_s"] <= w["end_s"] <= it["audible_end_s"]]
    own = [s for w in inside for t, s in w.get("cands", []) if t == it["track"]]
    best = sum(bool(w.get("cands")) and w["cands"][0][0] == it["track"] for w in inside)
    named = [w for w in inside if w["now"] == it["track"] and w.get("offset") is not None]
    # A jump: "now playing"'s track offset moved more than 1 s off the stream's own advance (a re-anchored line).
    jumps = sum(abs((b["offset"] - a["offset"]) - (b["end_s"] - a["end_s"])) > 1.0 for a, b in zip(named, named[1:]))
    return {"best_share": round(best / len(inside), 3) if inside else None, "offset_jumps": jumps,
            "named_s": round(len(named) * 0.5, 1),
            "own_margin_mean": round(sum(own) / len(own), 4) if own else None,
            "own_margin_max": round(max(own), 4) if own else None,
            "own_passing": sum(w.get("match") == it["track"] for w in inside)}


def _now_playing(it: dict, windows: list[dict]) -> dict:
    a, b = it["audible_start_s"], it["audible_end_s"]
    late = [w for w in windows if a + NOW_SKIP_S <= w["end_s"] <= b]
    named = [w["end_s"] for w in windows if a <= w["end_s"] <= b and w["now"] == it["track"]]
    after = [w["end_s"] - b for w in windows if b < w["end_s"] <= b + 2 * LINGER_S and w["now"] == it["track"]]
    return {"now_windows": len(late), "now_right": sum(w["now"] == it["track"] for w in late),
            "first_named_s": round(named[0] - a, 3) if named else None,
            "linger_s": round(max(after), 3) if after else 0.0}


def score_item(it: dict, mine: list[dict], windows: list[dict]) -> dict:
    """One truth item: its correct plays (``mine``, by start), coverage, errors and now-playing figures."""
    a, b = it["audible_start_s"], it["audible_end_s"]
    seconds = b - a
    coverage = _union(((p["start_s"], p["end_s"]) for p in mine), a, b) / seconds if seconds > 0 else 0.0
    out = {k: it[k] for k in ("track", "effect", "value", "talk_over_s", "audible_start_s", "audible_end_s",
                              "time_scale", "pitch_semitones")}
    out.update(seconds=round(seconds, 3), eligible=seconds >= MIN_ITEM_S, coverage=round(coverage, 4),
               pieces=len(mine), plays=[[round(p["start_s"], 2), round(p["end_s"], 2)] for p in mine])
    out["found"] = out["eligible"] and coverage >= FOUND_COVERAGE
    if out["found"] and seconds >= ERROR_MIN_S:
        out["start_error_s"] = round(mine[0]["start_s"] - a, 3)
        out["end_error_s"] = round(mine[-1]["end_s"] - b, 3)
        out.update(_evidence(it, mine))
    out.update(_now_playing(it, windows))
    out.update(_windows_heard(it, windows))
    return out


def _context(items: list[dict], t: float) -> str:
    """What the programme played at stream time ``t``: "song ID", "other ID", "talk" or "silence"."""
    for it in items:
        lo, hi = (it["audible_start_s"], it["audible_end_s"]) if it["kind"] != "talk" else (it["start_s"], it["end_s"])
        if lo <= t <= hi:
            return f"{it['kind']} {it['track']}" if it["track"] else it["kind"]
    return "silence"


def _wrong_now(songs: list[dict], windows: list[dict]) -> dict:
    """Windows whose "now playing" names a track that is not audible then (lingering: it ended < ``LINGER_S`` ago)."""
    wrong = lingering = 0
    for w in windows:
        if w["now"] is None:
            continue
        mine = [it for it in songs if it["track"] == w["now"]]
        if any(it["audible_start_s"] <= w["end_s"] <= it["audible_end_s"] for it in mine):
            continue
        wrong += 1
        lingering += any(0 < w["end_s"] - it["audible_end_s"] <= LINGER_S for it in mine)
    return {"windows": len(windows), "wrong": wrong, "lingering": lingering}


def score_stream(plan: dict, plays: list[dict], windows: list[dict]) -> dict:
    """Score one streamed programme (see the module docstring).

    plan: ``Plan.to_json()``; plays: play messages (``track``, ``start_s``,
    ``end_s``, ``track_start_s``, ``track_end_s``, ``time_scale``); windows:
    rows with ``end_s`` and ``now`` (the named track or None), and for the
    diagnosis ``match``, ``cands`` ([track, margin] best first) and
    ``offset`` ("now playing"'s track offset). Raises
    ``BenchError`` for malformed plays or a plan without items.
    """
    if not plan.get("items"):
        raise BenchError(f"programme {plan.get('name')!r} has no items")
    _check_plays(plays)
    plays = sorted(plays, key=lambda p: p["start_s"])
    songs = [it for it in plan["items"] if it["kind"] == "song"]
    owner = match_plays(songs, plays)
    scored = []
    for j, it in enumerate(songs):
        row = score_item(it, [p for p, o in zip(plays, owner) if o == j], windows)
        k = plan["items"].index(it)
        nxt = plan["items"][k + 1]["kind"] if k + 1 < len(plan["items"]) else "end"
        scored.append({"programme": plan["name"], "item": k, "next": nxt, **row})
    false = [{"programme": plan["name"], "track": p["track"], "start_s": p["start_s"], "end_s": p["end_s"],
              "windows": p.get("windows"), "confidence": p.get("confidence"),
              "during": _context(plan["items"], (p["start_s"] + p["end_s"]) / 2)}
             for p, o in zip(plays, owner) if o is None]
    return {"name": plan["name"], "seconds": plan["seconds"], "items": scored, "plays": len(plays),
            "correct": sum(o is not None for o in owner), "false": false, "now_wrong": _wrong_now(songs, windows)}


def _stats(values: list[float]) -> dict:
    """n, median and 90th percentile of absolute values, and the signed mean (None when empty)."""
    if not values:
        return {"n": 0, "median": None, "p90": None, "mean_signed": None}
    v = np.abs(np.asarray(values, dtype=np.float64))
    return {"n": len(values), "median": round(float(np.median(v)), 4), "p90": round(float(np.percentile(v, 90)), 4),
            "mean_signed": round(float(np.mean(values)), 4)}


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 2) if den else None


def _line_off(it: dict) -> bool:
    return abs(it.get("line_start_error_s", 0.0)) > LINE_OFF_S


def _per_minute(items: list[dict]) -> float | None:
    """Median over items of "now playing" offset jumps per minute of naming (None without items)."""
    rates = [60 * it["offset_jumps"] / it["named_s"] for it in items if it.get("named_s")]
    return round(float(np.median(rates)), 2) if rates else None


def summarise(streams: list[dict]) -> dict:
    """The figures of several scored streams together (one chain, or all)."""
    items = [it for s in streams for it in s["items"] if it["eligible"]]
    found = [it for it in items if it["found"]]
    timed = [it for it in found if "start_error_s" in it]
    plays, correct = sum(s["plays"] for s in streams), sum(s["correct"] for s in streams)
    hours = sum(s["seconds"] for s in streams) / 3600
    ts = [e for it in timed for e in it.get("time_scale_errors", [])]
    pitch = [e for it in timed for e in it.get("pitch_errors", [])]
    now_w = sum(it["now_windows"] for it in items)
    first = [it["first_named_s"] for it in items if it["first_named_s"] is not None]
    nw = {k: sum(s["now_wrong"][k] for s in streams) for k in ("windows", "wrong", "lingering")}
    return {
        "programmes": len(streams), "hours": round(hours, 4), "items": len(items), "found": len(found),
        "recall": _pct(len(found), len(items)), "plays": plays, "correct": correct,
        "recall_any_play": _pct(sum(it["pieces"] > 0 for it in items), len(items)),
        "precision": _pct(correct, plays), "false_plays": plays - correct,
        "false_per_hour": round((plays - correct) / hours, 3) if hours else None,
        "pieces": round(sum(it["pieces"] for it in found) / len(found), 4) if found else None,
        "split_items": sum(it["pieces"] > 1 for it in found),
        "start_error_s": _stats([it["start_error_s"] for it in timed]),
        "end_error_s": _stats([it["end_error_s"] for it in timed]),
        "time_scale_error": _stats(ts), "time_scale_within_1pct": _pct(sum(abs(e) <= 0.01 for e in ts), len(ts)),
        "time_scale_missing": sum(it.get("time_scale_missing", 0) for it in timed),
        "pitch_error_st": _stats(pitch),
        "pitch_within_03": _pct(sum(abs(e) <= 0.3 for e in pitch), len(pitch)),
        "pitch_missing": sum(it.get("pitch_missing", 0) for it in timed),
        "track_start_error_s": _stats([it["track_start_error_s"] for it in timed if "track_start_error_s" in it]),
        "track_end_error_s": _stats([it["track_end_error_s"] for it in timed if "track_end_error_s" in it]),
        "line_start_error_s": _stats([it["line_start_error_s"] for it in timed if "line_start_error_s" in it]),
        "line_end_error_s": _stats([it["line_end_error_s"] for it in timed if "line_end_error_s" in it]),
        "line_off": sum(_line_off(it) for it in timed),
        "line_off_without_scale": sum(_line_off(it) and it.get("line_without_scale", False) for it in timed),
        "negative_track_start": sum(it.get("negative_track_start", 0) for it in timed),
        "jumps_per_min_line_off": _per_minute([it for it in timed if _line_off(it)]),
        "jumps_per_min_line_on": _per_minute([it for it in timed if not _line_off(it)]),
        "now_share": _pct(sum(it["now_right"] for it in items), now_w),
        "first_named_s": _stats(first), "never_named": sum(it["first_named_s"] is None for it in items),
        "now_wrong_share": _pct(nw["wrong"], nw["windows"]),
        "now_lingering_share": _pct(nw["lingering"], nw["windows"]),
        "linger_before_song_s": _stats([it["linger_s"] for it in items if it["next"] == "song"]),
        "linger_before_other_s": _stats([it["linger_s"] for it in items if it["next"] in ("other", "talk")]),
    }


def breakdown(streams: list[dict]) -> list[dict]:
    """Recall, start and time-scale error and the first "now playing" naming by alteration, and with/without
    talk over the intro."""
    items = [it for s in streams for it in s["items"] if it["eligible"]]
    groups = [(f"effect {e}", [it for it in items if it["effect"] == e]) for e in ("none", "speed", "tempo", "pitch")]
    groups += [("talk over intro", [it for it in items if it["talk_over_s"]]),
               ("no talk over intro", [it for it in items if not it["talk_over_s"]])]
    out = []
    for label, group in groups:
        found = [it for it in group if it["found"]]
        timed = [it for it in found if "start_error_s" in it]
        ts = [abs(e) for it in timed for e in it.get("time_scale_errors", [])]
        quiet = [it["start_error_s"] for it in timed if not it["talk_over_s"]]
        out.append({"group": label, "items": len(group), "found": len(found), "recall": _pct(len(found), len(group)),
                    "start_error_no_talk_s": _stats(quiet)["median"],
                    "pieces": round(sum(it["pieces"] for it in found) / len(found), 3) if found else None,
                    "start_error_s": _stats([it["start_error_s"] for it in timed])["median"],
                    "end_error_s": _stats([it["end_error_s"] for it in timed])["median"],
                    "time_scale_error": _stats(ts)["median"],
                    # Over every named song of the group, found or not: the Live page's question is how soon a
                    # listener sees the name, and a presenter over the intro delays it as much as the play.
                    "first_named_s": _stats([it["first_named_s"] for it in group
                                             if it["first_named_s"] is not None])["median"]})
    return out


def badness(it: dict) -> float:
    """How bad one item went, for the list of worst items: missed ≫ split > late/early > rarely shown."""
    if not it["eligible"]:
        return 0.0
    score = 0.0 if it["found"] else 1000.0 + 100 * (1 - it["coverage"])
    score += 100.0 * max(0, it["pieces"] - 1)
    score += abs(it.get("start_error_s", 0.0)) + abs(it.get("end_error_s", 0.0))
    if it["now_windows"]:
        score += 20.0 * (1 - it["now_right"] / it["now_windows"])
    return score


def worst_items(streams: list[dict], n: int = 10) -> list[dict]:
    """The ``n`` worst eligible items (``badness``), worst first, each with its chain-free details."""
    items = [it for s in streams for it in s["items"] if it["eligible"]]
    ranked = sorted(items, key=badness, reverse=True)
    return [{**it, "badness": round(badness(it), 2)} for it in ranked[:n] if badness(it) > 0]

