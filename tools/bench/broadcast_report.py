"""The stream benchmark's targets and the markdown of its ``docs/benchmarks.md`` section.

The section is ``broadcast`` for the fingerprint engine and
``broadcast-cnnbin`` for the per-track heads (``section_name``): the same
tables, so the two engines read side by side, with the database line saying
how each one was made and calibrated.

Place in ``tools/bench``: the last step of ``tools/bench_broadcast.py``;
pure functions from the results dict to text (``doc.update_section``
writes it). Every figure printed comes from the results; a figure that was
not measured is printed as "not measured", never guessed.
"""
from __future__ import annotations

from . import broadcast_score as rules
from .common import calibration_source, fmt, per_engine
from .report import machine_lines, split_lines

SECTION = "broadcast"


def section_name(engine: str) -> str:
    """The docs section of one engine's run (results written before the choice existed are fingerprint's)."""
    return per_engine(SECTION, engine)

#: (figure, label, {chain: (comparison, target)}; "*" for every chain). Errors are read on their median.
TARGETS = [
    ("recall", "plays found (recall), %", {"broadcast": (">=", 98.0), "room": (">=", 90.0)}),
    ("precision", "correct plays (precision), %", {"*": (">=", 98.0)}),
    ("false_per_hour", "false plays per hour", {"*": ("<=", 1.0)}),
    ("pieces", "pieces per found play", {"*": ("<=", 1.1)}),
    ("start_error_s", "start error, s (median; p90)", {"*": ("<=", 2.0)}),
    ("end_error_s", "end error, s (median; p90)", {"*": ("<=", 2.0)}),
    ("time_scale_error", "time-scale error, % (median; p90)", {"*": ("<=", 0.01)}),
]


def target_for(figure: str, chain: str):
    for key, _, per in TARGETS:
        if key == figure:
            return per.get(chain, per.get("*"))
    return None


def value_of(summary: dict, figure: str):
    """The value a target reads: a plain figure, or the median of an error's statistics."""
    v = summary.get(figure)
    return v.get("median") if isinstance(v, dict) else v


def met(summary: dict, figure: str, chain: str) -> bool | None:
    """Whether ``summary`` meets the target of ``figure`` for ``chain`` (None: no target or no value)."""
    t, v = target_for(figure, chain), value_of(summary, figure)
    if t is None or v is None:
        return None
    return v >= t[1] if t[0] == ">=" else v <= t[1]


def _cell(summary: dict, figure: str) -> str:
    v = summary.get(figure)
    if isinstance(v, dict):
        if not v.get("n"):
            return "– (none)"
        scale, digits = (100.0, 2) if figure == "time_scale_error" else (1.0, 2)
        return f"{fmt(v['median'] * scale, digits)}; {fmt(v['p90'] * scale, digits)} (n={v['n']})"
    if isinstance(v, int):
        return str(v)
    return fmt(v, 3 if figure == "pieces" else 2)


def _target_text(t) -> str:
    if t is None:
        return ""
    value = f"{100 * t[1]:g} %" if t[1] == 0.01 else f"{t[1]:g}"
    return f"{'≥' if t[0] == '>=' else '≤'} {value}"


def targets_table(res: dict) -> list[str]:
    """Target, measured and met for each chain, and all chains together (no target)."""
    chains = res["chains"]
    head = "| figure | " + " | ".join(f"{c}: target | {c}: measured | met" for c in chains) + " | all chains |"
    lines = [head, "|---|" + "---:|---:|:---:|" * len(chains) + "---:|"]
    for key, label, _ in TARGETS:
        cells = []
        for c in chains:
            ok = met(res["summary"][c], key, c)
            cells += [_target_text(target_for(key, c)), _cell(res["summary"][c], key),
                      "" if ok is None else ("pass" if ok else "**miss**")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_cell(res['summary']['all'], key)} |")
    return lines


EVIDENCE_ROWS = [
    ("recall_any_play", "songs with at least one correct play, however short (a looser recall), %"),
    ("time_scale_within_1pct", "time scale within ±1 % of the truth, % of plays"),
    ("time_scale_missing", "plays ≥ 20 s without a time scale"),
    ("pitch_error_st", "pitch shift vs the truth, semitones (median; p90)"),
    ("pitch_within_03", "pitch shift within ±0.3 semitone of the truth, % of plays"),
    ("pitch_missing", "plays ≥ 20 s without a pitch shift"),
    ("track_start_error_s", "track position at the start vs the truth's, s (median; p90)"),
    ("track_end_error_s", "track position at the end vs the truth's, s (median; p90)"),
    ("line_start_error_s", "offset line at the play's own start vs the truth, s (median; p90)"),
    ("line_end_error_s", "offset line at the play's own end vs the truth, s (median; p90)"),
    ("line_off", f"songs whose offset line is off by > {rules.LINE_OFF_S:g} s at the play's start"),
    ("line_off_without_scale", "… of which the play reports no time scale (its line was re-anchored)"),
    ("negative_track_start", "correct plays reporting a track position < −1 s"),
    ("now_share", f"\"now playing\" names the song, % of its windows (after the first {rules.NOW_SKIP_S:g} s)"),
    ("first_named_s", "time to the first \"now playing\" naming, s (median; p90)"),
    ("never_named", "songs never named by \"now playing\""),
    ("now_wrong_share", "windows whose \"now playing\" names a track not audible then, %"),
    ("now_lingering_share", f"… of which within {rules.LINGER_S:g} s after that track ended (the hold), %"),
    ("linger_before_song_s", "\"now playing\" still names a song after its end, before another song, s (median; p90)"),
    ("linger_before_other_s", "… before talk or non-catalogue music, s (median; p90)"),
]


def evidence_table(res: dict) -> list[str]:
    chains = res["chains"]
    lines = ["| figure | " + " | ".join(chains) + " | all chains |", "|---|" + "---:|" * (len(chains) + 1)]
    for key, label in EVIDENCE_ROWS:
        cells = [_cell(res["summary"][c], key) for c in [*chains, "all"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def breakdown_table(res: dict) -> list[str]:
    lines = [("| chain | songs | found | recall % | pieces | start error median, s | … without talk over the "
              "intro | end error median, s | time-scale error median, % | first \"now playing\" naming median, s |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in res["chains"]:
        for g in res["breakdown"][c]:
            ts = None if g["time_scale_error"] is None else 100 * g["time_scale_error"]
            lines.append(f"| {c} | {g['group']} | {g['found']} / {g['items']} | {fmt(g['recall'])} | "
                         f"{fmt(g['pieces'], 3)} | {fmt(g['start_error_s'], 2)} | "
                         f"{fmt(g['start_error_no_talk_s'], 2)} | {fmt(g['end_error_s'], 2)} | "
                         f"{fmt(ts, 2)} | {fmt(g.get('first_named_s'), 2)} |")
    return lines


def _chain_text(chain: str, p: dict) -> str:
    if chain == "broadcast":
        return f"compand {p['threshold_db']:g} dB 1:{p['ratio']:g}, MP3 {p['mp3_kbps']} kbit/s"
    return (f"speaker HP {p['speaker_highpass_hz']:g} Hz, reverb {p['reverberance']:g} % scale {p['room_scale']:g} %, "
            f"{p['noise']} noise {p['noise_snr_db']:g} dB, babble ×{p['voices']} {p['babble_snr_db']:g} dB")


def programme_table(res: dict) -> list[str]:
    """Per chain and programme: songs found, pieces and false plays, beside the chain's drawn parameters."""
    lines = ["| chain | programme | songs found | correct plays | false plays | chain parameters |",
             "|---|---|---:|---:|---:|---|"]
    for c in res["chains"]:
        for s in res["scored"][c]:
            songs = [it for it in s["items"] if it["eligible"]]
            params = _chain_text(c, res["chain_params"][c][s["name"]]["params"])
            lines.append(f"| {c} | {s['name']} | {sum(it['found'] for it in songs)} / {len(songs)} | {s['correct']} | "
                         f"{s['plays'] - s['correct']} | {params} |")
    return lines


def _alteration(it: dict) -> str:
    if it["effect"] == "none":
        text = "unaltered"
    elif it["effect"] == "pitch":
        text = f"pitch {it['value']:+.2f} st"
    else:
        text = f"{it['effect']} ×{it['value']:.3f}"
    return text + (f", talk over {it['talk_over_s']:.1f} s" if it["talk_over_s"] else "")


def _pct_of(share):
    return None if share is None else 100 * share


def worst_table(res: dict) -> list[str]:
    lines = [("| chain | programme, item | track | alteration | audible, s | found | plays (s) | start / end "
              "error, s | now playing % | windows: song best % | its margin mean / max | windows passing |"),
             "|---|---|---|---|---|:---:|---|---|---:|---:|---:|---:|"]
    for c in res["chains"]:
        for it in res["worst"][c]:
            plays = ", ".join(f"{a:.0f}–{b:.0f}" for a, b in it["plays"]) or "none"
            err = (f"{it['start_error_s']:+.1f} / {it['end_error_s']:+.1f}" if "start_error_s" in it else "–")
            share = 100 * it["now_right"] / it["now_windows"] if it["now_windows"] else None
            lines.append(f"| {c} | {it['programme']} #{it['item']} | `{it['track']}` | {_alteration(it)} | "
                         f"{it['audible_start_s']:.0f}–{it['audible_end_s']:.0f} | {'yes' if it['found'] else 'no'} "
                         f"| {plays} | {err} | {fmt(share, 0)} | {fmt(_pct_of(it['best_share']), 0)} | "
                         f"{fmt(it['own_margin_mean'], 3)} / {fmt(it['own_margin_max'], 3)} | {it['own_passing']} |")
    return lines


def false_lines(res: dict) -> list[str]:
    out = []
    for c in res["chains"]:
        rows = res["false"][c]
        if not rows:
            out.append(f"- {c}: none.")
            continue
        text = "; ".join(f"{r['programme']} {r['start_s']:.0f}–{r['end_s']:.0f} s `{r['track']}` during "
                         f"{r['during']}" for r in rows[:12])
        out.append(f"- {c} ({len(rows)}): {text}{' …' if len(rows) > 12 else ''}.")
    return out


PROGRAMME_TEXT = (
    "Songs: 20–120 s of audible music from a random point of the track, 40 % unaltered, 20 % sox `speed` ±3–8 % "
    "(pitch and tempo), 20 % `tempo -m` ±3–8 %, 20 % `pitch` ±1–2 semitones; 30 % with the presenter (espeak-ng) "
    "over the intro for 4–10 s, music ducked 10 dB. Music joins music with a 2–6 s equal-power crossfade; talk "
    "breaks of 4–12 s between songs. Rendered at 44.1 kHz by sox, never by the training augmentation code.")
CHAIN_TEXT = (
    "*broadcast*: sox `compand` (attack 2–10 ms, decay 0.1–0.5 s, threshold −30…−20 dB, ratio 3–6) and an MP3 "
    "128 kbit/s round trip (ffmpeg/libmp3lame), 44.1 kHz. *room*: speaker (`highpass` 150–400 Hz, resonance "
    "+4…+10 dB at 0.6–3 kHz), room (`reverb` 30–80 %, room scale 30–100 %, pre-delay 0–40 ms), pink or brown "
    "noise at 10–20 dB SNR plus babble of 3–6 espeak-ng voices through the room at 10–20 dB, microphone (`sinc` "
    "100–200 Hz to 6–7.5 kHz, presence +3…+6 dB at 2–5 kHz), AGC (`compand`), resampled to 48 kHz.")


def _lag_text(res: dict) -> str:
    lags = {c: [lag for p in res["chain_params"][c].values() for lag in p["lags_s"]] for c in res["chains"]}
    return "; ".join(f"{c} {min(v) * 1000:+.1f}…{max(v) * 1000:+.1f} ms" for c, v in lags.items() if v)


def _range(values, digits: int) -> str:
    values = [v for v in values if v is not None]
    return "–" if not values else f"{fmt(min(values), digits)} to {fmt(max(values), digits)}"


def _missed_text(res: dict, chain: str) -> str | None:
    missed = [it for sc in res["scored"][chain] for it in sc["items"] if it["eligible"] and not it["found"]]
    if not missed:
        return None
    threshold = fmt(res["database"]["calibration"].get("play_threshold"), 3)
    best = _range([100 * (it["best_share"] or 0) for it in missed], 0)
    return (f"{chain}: {len(missed)} songs missed. In their windows the song was the best candidate in {best} % "
            f"of windows, with a mean margin of {_range([it['own_margin_mean'] for it in missed], 3)} (best "
            f"{_range([it['own_margin_max'] for it in missed], 3)}; a window passes above 0), so their evidence "
            f"never reached the play threshold ({threshold}).")


def findings(res: dict) -> list[str]:
    """Measured sentences on what went wrong, per chain (every number read from the results)."""
    out = []
    for c in res["chains"]:
        s, talk = res["summary"][c], {g["group"]: g for g in res["breakdown"][c]}
        out += [t for t in [_missed_text(res, c)] if t]
        out.append(f"{c}: songs with the presenter over the intro start "
                   f"{fmt(talk['talk over intro']['start_error_s'], 1)} s late (median), songs without "
                   f"{fmt(talk['no talk over intro']['start_error_s'], 1)} s; \"now playing\" first names them "
                   f"after {fmt(talk['talk over intro'].get('first_named_s'), 1)} s and "
                   f"{fmt(talk['no talk over intro'].get('first_named_s'), 1)} s (median).")
        out.append(f"{c}: {s['time_scale_missing']} plays ≥ {rules.ERROR_MIN_S:g} s report no time scale. "
                   f"{s['line_off']} songs have an offset line off by > {rules.LINE_OFF_S:g} s at the play's "
                   f"start, {s['line_off_without_scale']} of them with a play that reports no time scale; while "
                   f"they were named, \"now playing\"'s track offset jumped off the line "
                   f"{fmt(s['jumps_per_min_line_off'], 1)} times a minute (median; "
                   f"{fmt(s['jumps_per_min_line_on'], 1)} for the other songs): the line is re-anchored again and "
                   f"again, and {s['negative_track_start']} plays report a track position below −1 s.")
        out.append(f"{c}: after a song ends, \"now playing\" still names it for "
                   f"{fmt(s['linger_before_other_s']['median'], 1)} s (median) before talk or non-catalogue "
                   f"music, {fmt(s['linger_before_song_s']['median'], 1)} s before another song.")
    return out


def setup_lines(res: dict) -> list[str]:
    """Machine, tools, split, database, encoder, programmes, chains and streaming."""
    cfg, st, n = res["config"], res["streaming"], res["counts"]
    hours = res["summary"]["all"]["hours"] / len(res["chains"])
    return [
        *(line.replace("when identification started", "when streaming started") for line in machine_lines(res)),
        f"- **Tools:** {'; '.join(res['tool_versions'].values())}.",
        *split_lines(res),
        database_line(res),
        (f"- **Encoder:** `{res['encoder']['path']}` (weights sha256 {res['encoder']['sha256'][:12]}…). "
         f"{res['provenance']['sentence']}"),
        (f"- **Programmes** (`tools/bench/broadcast_programme.py`, seed {cfg['seed']}): {cfg['programmes']} of "
         f"~{cfg['minutes']:g} min ({res['programme_minutes']}), {fmt(hours, 2)} h per chain: {n['songs']} "
         f"catalogue excerpts, {n['other']} non-catalogue excerpts (unseen packages), {n['talk']} talk breaks. "
         f"{PROGRAMME_TEXT}"),
        (f"- **Chains** (`tools/bench/broadcast_chains.py`, parameters drawn per programme): {CHAIN_TEXT} Delay "
         f"against the clean programme by cross-correlation (3 places each): {_lag_text(res)}, so the truth "
         "times hold without a correction."),
        (f"- **Streaming:** `audiocopy serve` on a loopback port; each programme one `/ws` stream (s16le at the "
         f"chain's rate, 0.5 s messages, `realtime: false`): {st['windows']} windows answered, {st['dropped']} "
         f"dropped, {st['problems']} errors; {fmt(st['seconds'] / 60, 1)} min of streaming for "
         f"{fmt(st['audio_hours'], 2)} h of audio ({fmt(st['x_realtime'], 0)}× real time)."),
    ]


def database_line(res: dict) -> str:
    """How the engine's database was made and where both of its thresholds were set."""
    db = res["database"]
    cal = db["calibration"]
    play = (f"play threshold {fmt(cal.get('play_threshold'), 3)}, set for {fmt(cal.get('play_rate_per_hour'), 1)} "
            f"false plays per hour on {fmt(cal.get('play_calibration_hours'), 1)} h of wrong tracks streamed as "
            f"they are and through a room")
    if res.get("engine", "fingerprint") == "cnnbin":
        def pct(v):
            return fmt(None if v is None else 100 * v, 2)

        return (f"- **Database:** the {db['tracks']} catalogue tracks, each with its own head over the shipped "
                f"encoder's embeddings (`audiocopy dataset` and `audiocopy train --model embedding`, trained "
                f"against the wrong tracks outside the calibration hold-out; cnnbin engine; catalogue offset "
                f"{fmt(cal.get('score_offset'), 3)}, set so that at most {pct(cal.get('catalog_fpr'))} % of "
                f"windows pass with {pct(cal.get('catalog_fpr_confidence'))} % confidence (bound "
                f"{pct(cal.get('fpr_upper_bound'))} %) on {calibration_source(res.get('split') or {}, cal)}; "
                f"{play}); {db['note']}.")
    return (f"- **Database:** the {db['tracks']} catalogue tracks enrolled with `audiocopy enroll --negatives WRONG` "
            f"(fingerprint engine; window threshold {fmt(cal.get('threshold'), 4)}, set on "
            f"{calibration_source(res.get('split') or {}, cal)}; {play}); {db['note']}.")


def rules_text() -> str:
    r = rules
    return (
        "**Rules** (`tools/bench/broadcast_score.py`). A truth item is a catalogue excerpt from its audible start "
        f"to its audible end (crossfade midpoints). A play is *correct* when at least {r.CORRECT_SHARE:.0%} of it "
        "overlaps an item of its own track; every other play is *false*. An item with "
        f"≥ {r.MIN_ITEM_S:g} s audible is *found* when its correct plays cover ≥ {r.FOUND_COVERAGE:.0%} of it. "
        "Precision = correct / all plays; false plays per hour of programme; pieces = correct plays per found "
        f"item. Start/end error (items ≥ {r.ERROR_MIN_S:g} s): first correct play's start − audible start, last "
        "one's end − audible end; the targets read the median of |error|, p90 beside it. Time-scale error: "
        f"|time_scale − truth| / truth of correct plays ≥ {r.ERROR_MIN_S:g} s. Track position: the first play's "
        "`track_start_s` and the last one's `track_end_s` against the item's; the offset line: `track_start_s` "
        "against where the track really was at the play's own start. \"Now playing\": a `window` message's "
        "`stream.track` speaks for the moment its window ends.")


def _measured_line(res: dict) -> str:
    t, made = {k: fmt(v / 60, 1) for k, v in res["timings"].items()}, res["audio_made"]
    reuse = ("all audio was made by this run" if made["this_run"] else
             f"audio made by an earlier run with the same settings was reused; making it took "
             f"{fmt(made['render_min'], 1)} min of rendering and {fmt(made['chains_min'], 1)} min of chains")
    return (f"Measured on {res['date']} with `tools/bench_broadcast.py` in {fmt(res['wall_s'] / 60, 1)} min: "
            f"rendering {t['render_s']}, chains {t['chains_s']}, streaming {t['stream_s']} min ({reuse}; the "
            f"database: {res['database']['note']}). To reproduce, from the repository root:")


def render_section(res: dict) -> str:
    """The whole section of one engine's run (``section_name``)."""
    engine = res.get("engine", "fingerprint")
    title = "## Streams: radio programmes through a broadcast chain and a room chain (`/ws`)"
    if engine != "fingerprint":
        title += f", engine {engine}"
    lines = [title, "",
             _measured_line(res),
             "", f"    {res['command']}", "", *setup_lines(res), "", rules_text(), "",
             "### Targets", "", *targets_table(res), "",
             f"### Evidence against the truth (plays ≥ {rules.ERROR_MIN_S:g} s) and \"now playing\"", "",
             *evidence_table(res), "", "### By alteration and by talk over the intro", "", *breakdown_table(res), "",
             "### By programme (each chain drew its parameters per programme)", "", *programme_table(res), "",
             "### Worst songs (missed, split, late or early, rarely shown)", "", *worst_table(res), "",
             "### False plays", "", *false_lines(res), "", "### What the figures show", ""]
    lines += [f"- {n}" for n in findings(res)]
    lines += ["", f"Raw results: `{res['results_file']}`."]
    return "\n".join(lines)
