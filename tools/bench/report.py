"""The markdown of the accuracy sections of ``docs/benchmarks.md``.

Place in ``tools/bench``: the last step of ``tools/evaluate.py``; pure
functions from the results dict to text (``doc.update_section`` writes it).

Every accuracy table shows both operating points side by side (see
``scoring``): the shipped decision (hit / wrong / FP %, what ``audiocopy
identify`` answers for the fragment; the targets apply to its hit %) and the
hit % at FP ≤ 1 % on the pooled unseen negatives. A ``--legacy`` run also
gets the before/after table of the restructure.
"""
from __future__ import annotations

from .common import calibration_source, fmt
from .conditions import label_of
from .scoring import table_rows

ENGINE_TEXT = {
    "fingerprint": "the **fingerprint** engine (the default): the catalogue enrolled with `enroll_fingerprint` "
                   "(shared encoder, vector index, offset vote) and calibrated on `WORK/wrong` as "
                   "`audiocopy enroll --negatives` does (window threshold on {source}, then the play threshold)",
    "cnnbin-embedding": "**cnnbin** with embedding heads (`--model embedding`): per track, a CNN head over the "
                        "encoder's sub-window embeddings, trained against the wrong tracks, calibrated on a "
                        "hold-out of whole packages of them (`training.sources.calibration_holdout`)",
    "cnnbin-spectrogram": "**cnnbin** with spectrogram CNNs (`--model spectrogram`): per track, a CNN trained from "
                          "scratch on the log-frequency spectrogram",
}


def accuracy_table(acc: dict) -> list[str]:
    """The two-operating-point table: one line per condition, group and all conditions."""
    lines = ["| condition | positives | negatives | **shipped: hit %** | shipped: wrong % | shipped: FP % "
             "| hit % at FP ≤ 1 % | target (shipped hit %) | met |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in table_rows(acc):
        target = "" if r["target"] is None else f"≥ {r['target']:g}"
        met = "" if r["met"] is None else ("pass" if r["met"] else "**miss**")
        label = label_of(r["label"])
        if r in acc["groups"]:
            label = f"*{r['label']}* ({', '.join(r['conditions'])})"
        elif r is acc["all"]:
            label = "**all conditions**"
        lines.append(f"| {label} | {r['positives']} | {r['negatives']} | {fmt(r['hit'])} | {fmt(r['wrong'])} | "
                     f"{fmt(r['fp'])} | {fmt(r['hit_at_fpr'])} | {target} | {met} |")
    return lines


def operating_points_text(acc: dict, seconds: float) -> str:
    """The paragraph that says what each column means and which one the targets apply to (seconds: query length)."""
    return (f"**Shipped decision** (hit / wrong / FP %): what `audiocopy identify` answers for the {seconds:g} s query "
            "file (`decision.files.analyse_signal(...).answer`; for a fragment, its window's own calibrated "
            "decision, score > 0). Hit: the expected track; wrong: a catalogue query answered as another track; "
            "FP: an unseen negative of that row answered as any track. **The targets apply to this column.** "
            "*Hit % at FP ≤ 1 %*: one threshold on the window margin, set on the unseen negatives of all "
            f"conditions pooled ({acc['pooled_negatives']} queries, threshold {fmt(acc['threshold_at_fpr'], 3)}) "
            "so that at most 1 % of them pass it; a catalogue query is a hit when its best candidate is the "
            "expected track above that threshold. It reads every row at one operating point and compares engines "
            f"whose calibrations differ; no target applies to it. Answers that differ from the window decision "
            f"(a play opened inside the fragment): {acc['answer_differs']}.")


def machine_lines(res: dict) -> list[str]:
    """The machine and load lines (figures are comparable within one run only)."""
    m, load = res["machine"], res.get("load", {})
    avg = load.get("loadavg") or ["?"] * 3
    return [f"- **Machine:** {m['cpu']}, {m['cores']} cores, {fmt(m['ram_gib'])} GiB RAM; {m['os']}, "
            f"Python {m['python']}. Shared machine: load average {avg[0]} / {avg[1]} / {avg[2]} and "
            f"{fmt(load.get('busy_cores'), 2)} cores busy with other work when identification started; "
            "compare figures within this run only."]


def engine_text(res: dict) -> str:
    """The Engine line: what was enrolled and how, with where the fingerprint threshold was set."""
    text = ENGINE_TEXT.get(res["engine_label"], res["engine_label"])
    return text.format(source=calibration_source(res.get("split") or {}, res.get("calibration") or {}))


def split_lines(res: dict) -> list[str]:
    """The split, its packages and hashes."""
    s = res["split"]
    sizes = {r: len(s.get(r, [])) for r in ("catalog", "unseen", "wrong", "spare", "reserved")}
    sha = {r: s["sha256"][r][:12] for r in ("catalog", "unseen", "wrong")}
    if s["kind"] == "package":
        pk = s["packages"]
        return [f"- **Split** (by Debian package, seed {s['seed']}, {res['corpus_tracks']} corpus tracks; "
                f"`split.json`): catalogue {sizes['catalog']} tracks from {', '.join(pk['catalog'])}; unseen "
                f"{sizes['unseen']} from {', '.join(pk['unseen'])}; wrong {sizes['wrong']} (calibration hold-out "
                f"{len(s['calibration'])}) from the other {len(pk['wrong'])} packages, {sizes['spare']} spare, "
                f"{sizes['reserved']} reserved. SHA-256 of the sorted ids: catalogue {sha['catalog']}…, unseen "
                f"{sha['unseen']}…, wrong {sha['wrong']}…."]
    return [f"- **Split** (pre-restructure track split, seed {s['seed']}, {res['corpus_tracks']} corpus tracks, "
            f"packages not kept apart): catalogue {sizes['catalog']}, wrong {sizes['wrong']}, unseen "
            f"{sizes['unseen']}, spare {sizes['spare']}. SHA-256: catalogue {sha['catalog']}…, unseen "
            f"{sha['unseen']}…."]


def query_lines(res: dict) -> list[str]:
    """How the queries were made."""
    cfg = res["config"]
    names = set(cfg["conditions"])
    speech = bool(names & {"speech-0db", "room"})
    text = (f"- **Queries:** {cfg['k']} fragment(s) of {res['fragment_seconds']:g} s per catalogue and unseen track "
            f"(random offsets at least 1 s from either end of the "
            f"{'track' if cfg['legacy'] else 'track’s audible span (trailing digital silence left out)'}, the same "
            "offsets in every condition) × "
            f"{len(cfg['conditions'])} conditions = {res['queries']['count']} query files, one condition each, "
            f"seeded per file. Distorted by sox, ffmpeg/lame{' and espeak-ng' if speech else ''}, never by the "
            f"training augmentation code; noise{', other music and speech' if speech else ' and other music'} are "
            "mixed at an exact SNR (ratio of mean powers). Other music comes from a non-catalogue track.")
    out = [text]
    if "room" in names:
        out.append("- **Room chain** (`tools/bench/room.py`, parameters drawn per query, all in "
                   "`queries/params.json`): small speaker (sox `highpass` 150–400 Hz + `equalizer` resonance "
                   "+4…+10 dB at 0.6–3 kHz), room (sox `reverb`: reverberance 30–90 %, HF damping 20–80 %, "
                   "room "
                   "scale 30–100 %, pre-delay 0–40 ms, fed 0.5 s of music before the fragment), room noise at the "
                   "mic (pink or brown noise at 15–25 dB SNR plus babble of 3–6 espeak-ng voices through the same "
                   "room at 8–15 dB), band-limited mic (sox `sinc` 100–250 Hz to 4–7 kHz), compression/AGC (sox "
                   "`compand`, attack 5–50 ms, decay 0.1–1 s, threshold −40…−20 dB, ratio 2–6).")
    if "speech-0db" in names:
        out.append("- **Speech:** one espeak-ng clip (24 seeded clips: 12 voices of several languages reading "
                   "English sentences, 140–190 words/min) over the music at 0 dB.")
    return out


def render_accuracy(res: dict) -> str:
    """The accuracy section of one engine (``tools/evaluate.py``)."""
    acc, cfg = res["accuracy"], res["config"]
    title = ("## Accuracy before/after the restructure: " if cfg["legacy"]
             else f"## Accuracy on {res['fragment_seconds']:g} s fragments: ")
    lines = [title + res["engine_label"], "",
             f"Measured on {res['date']} with `tools/evaluate.py`; to reproduce, from the repository root:", "",
             f"    {res['command']}", "", *machine_lines(res),
             f"- **Tools:** {'; '.join(res['tool_versions'].values())}.", *split_lines(res),
             f"- **Engine:** {engine_text(res)}.",
             f"- **Encoder:** `{res['encoder']['path']}` (weights sha256 {res['encoder']['sha256'][:12]}…). "
             f"{res['provenance']['sentence']} {res['provenance'].get('generated_text', '')}".rstrip(),
             *query_lines(res)]
    if cfg.get("quick"):
        lines.append("- **Quick smoke run** (`--quick`): tiny split and few conditions; these figures say nothing "
                     "about accuracy.")
    lines += ["", "### Accuracy at both operating points", "", operating_points_text(acc, res["fragment_seconds"]), "",
              *accuracy_table(acc), "",
              f"Identification: {res['identify']['per_query_ms']} ms per query file on average (decode, resample, "
              "analyse; one process)."]
    if res.get("before"):
        lines += ["", *before_after(res)]
    if res.get("cnnbin"):
        from .report_cnnbin import cnnbin_cost_lines

        lines += ["", *cnnbin_cost_lines(res)]
    lines += ["", f"Raw results: `{res['results_file']}`."]
    return "\n".join(lines) + "\n"


def old_commands(before: dict) -> list[str]:
    """The commands that made the *before* figures with the old code (indented as a markdown code block)."""
    old = "/work/old"
    work, fp = before.get("old_work", "OLD_WORK"), before.get("old_fp_work", "OLD_FP_WORK")
    run = f"(cd {old} && PYTHONPATH={old} $OLDPWD/.venv/bin/python"
    return [f"    git worktree add {old} {before.get('commit', 'ecb7fb0')}",
            f"    {run} tools/evaluate.py --corpus CORPUS_DIR --work {work} --stop-after queries)",
            f"    {run} tools/bench_fingerprint.py --corpus CORPUS_DIR --bench-work {work} --work {fp} "
            f"--steps accuracy --doc {fp}/benchmarks.md)",
            f"    PYTHONPATH={old} .venv/bin/python tools/bench/old_answers.py --bench-work {work} --db {fp}/db "
            f"--out {fp}/answers.json"]


def same_text(res: dict) -> str:
    """What the run found when it compared its query files with another folder's (``--same-queries-as``)."""
    same = res.get("queries", {}).get("generation", {}).get("same_as")
    if not same:
        return "The query files were not compared with the pre-restructure run's."
    return (f"{same['identical']} of {same['files']} query files are byte-identical to those the pre-restructure "
            f"`evaluate.py` made in `{same['folder']}`.")


def before_after(res: dict) -> list[str]:
    """The restructure's before/after table: the same queries, the old code and this one."""
    before = res["before"]
    old_w = {r["label"]: r for r in table_rows(before["accuracy"])}
    old_l = {r["label"]: r for r in table_rows(before["stream_accuracy"])} if before.get("stream_accuracy") else {}
    lines = ["### Before and after the restructure (same query files)", "",
             f"*Before*: commit `{before.get('commit', 'ecb7fb0')}` (`tools/bench_fingerprint.py --steps accuracy` "
             "of that commit on this work folder's catalogue, wrong tracks and query files): its window path "
             "(`Recognizer.detect_windows` without stream memory, what its `identify` answered for a fragment) and "
             "its live path (`score_stream`). *After*: this run (one path for every window, the answer through the "
             f"stream decision). {same_text(res)} The *before* side, from the repository root:", "",
             *old_commands(before), "",
             "| condition | before: hit % at FP ≤ 1 % (window path) | before: live path "
             "| **after: hit % at FP ≤ 1 %** "
             "| before: shipped hit % | after: shipped hit % | before / after: shipped FP % |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in table_rows(res["accuracy"]):
        o, live = old_w.get(r["label"], {}), old_l.get(r["label"], {})
        lines.append(f"| {label_of(r['label'])} | {fmt(o.get('hit_at_fpr'))} | {fmt(live.get('hit_at_fpr'))} | "
                     f"{fmt(r['hit_at_fpr'])} | {fmt(o.get('hit'))} | {fmt(r['hit'])} | "
                     f"{fmt(o.get('fp'))} / {fmt(r['fp'])} |")
    old_threshold = fmt(before["accuracy"].get("threshold_at_fpr"), 3)
    lines += ["", f"Pooled-negative threshold at FP ≤ 1 %: before {old_threshold}, "
                  f"after {fmt(res['accuracy']['threshold_at_fpr'], 3)} (window margins)."]
    if before.get("per_query"):
        lines += ["", *per_query_lines(res)]
    return lines


def per_query_lines(res: dict) -> list[str]:
    """Why the columns differ, query by query (``--before-answers``)."""
    q, after = res["before"]["per_query"], res.get("calibration", {}).get("threshold")
    lines = [f"Query by query ({q['queries']} files): every answer after equals the old live path's in "
             f"{q['queries'] - q['differ_live']} of {q['queries']} (margins within {q['max_gap_live']:.1e}); "
             f"against the old window path {len(q['differ_window'])} answers differ, margins by up to "
             f"{q['max_gap_window']:.3f} (median {q['median_gap_window']:.1e}); the best candidate changed for "
             f"{q['top_differs']} queries ({q['top_differs_positive']} of them catalogue queries). Why: the old "
             "window path cut the encoder's one-second sub-windows out of the window's spectrogram, floored 80 dB "
             "under the *whole window's* peak; the old live path, and now every window (one path: files, "
             "fragments, streams), floors each sub-window under its *own* peak, as enrolment does. The "
             "calibrated window threshold went from "
             f"{fmt(q.get('threshold'), 6)} to {fmt(after, 6)}: calibration now scores band levels through that "
             "same path (`raw_level_scores`) instead of the old window features. A 2.5 s file's answer now goes "
             "through the stream decision; for a fragment that is its window's own decision "
             f"({res['accuracy']['answer_differs']} answers differ from the window decision here)."]
    if q["differ_window"]:
        lines += ["", "| query | expected | before (window path): answer, margin | after: answer, margin |",
                  "|---|---|---|---|"]
        for d in q["differ_window"]:
            lines.append(f"| `{d['file']}` | {d['expected'] or '(negative)'} | {d['before'] or 'no match'}, "
                         f"{d['before_margin']:+.5f} | {d['after'] or 'no match'}, {d['after_margin']:+.5f} |")
    return lines
