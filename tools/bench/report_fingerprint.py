"""The markdown of ``tools/bench_fingerprint.py``'s section: accuracy beside cnnbin, enrolment speed, scale.

Place in ``tools/bench``: pure functions from that script's results to text.
"""
from __future__ import annotations

from .common import fmt
from .conditions import label_of
from .scoring import table_rows

SCALE_TEXT = (
    "Index: the default backend (faiss; exact inner product up to 250,000 vectors, then IVF-PQ with 16-byte "
    "codes, nprobe 16). Times are medians per 2.5 s window for the whole engine (features, sub-window "
    "embeddings, top-k search each, offset vote, decision), the best of {rounds} rounds over all sizes (other "
    "work on a shared machine only slows a round down; every round is in the JSON); the split columns are "
    "the window path per window at batch 32. *Live, batch 32*: 32 streams of consecutive windows, one window "
    "of each per call, each with its `StreamState`, after two warm-up windows: each window embeds and searches "
    "only the sub-windows its last 0.5 s adds. Streams: live streams of one window every 0.5 s that the live "
    "batch-32 throughput holds on this machine. Top-1 source: clean corpus windows whose best candidate is "
    "their track or one of its copies.")


def accuracy_lines(acc: dict) -> list[str]:
    """Accuracy at both operating points, beside cnnbin's hit % at FP ≤ 1 % on the same queries when known."""
    a, cnn = acc["accuracy"], acc.get("cnnbin")
    cnn_rows = {r["label"]: r for r in table_rows(cnn)} if cnn else {}
    lines = ["### Accuracy beside cnnbin (same queries)", "",
             f"The {acc['queries']} queries of `tools/evaluate.py` in `{acc['bench_work']}` ({acc['split']}), its "
             "catalogue enrolled with the fingerprint engine and calibrated on the hold-out of its wrong tracks "
             "that its encoder never trained on, answered and scored by the same code (`tools/bench`): the "
             "shipped decision (what `identify` answers; the targets apply to it) and the hit % at FP ≤ 1 % on "
             "the pooled unseen negatives "
             f"({a['pooled_negatives']} queries). {acc['provenance']}", "",
             "| condition | shipped hit / wrong / FP % | fingerprint hit % at FP ≤ 1 % | "
             f"cnnbin (`{acc.get('cnnbin_label') or 'not run'}`) hit % at FP ≤ 1 % | target (shipped hit %) |",
             "|---|---|---:|---:|---|"]
    for r in table_rows(a):
        c = cnn_rows.get(r["label"], {})
        target = "" if r["target"] is None else f"≥ {r['target']:g}" + (" ✓" if r["met"] else " ✗")
        lines.append(f"| {label_of(r['label'])} | {fmt(r['hit'])} / {fmt(r['wrong'])} / {fmt(r['fp'])} | "
                     f"{fmt(r['hit_at_fpr'])} | {fmt(c.get('hit_at_fpr'))} | {target} |")
    return lines + [""]


def enrol_lines(en: dict) -> list[str]:
    """The enrolment-speed paragraph."""
    return ["### Enrolment speed", "",
            f"All {en['tracks']} corpus tracks ({en['audio_hours']} h of audio, {en['vectors']} vectors) "
            f"enrolled into an empty database in {en['wall_s']} s: **{en['x_realtime']}× real time** "
            f"end to end (decode, resample, band levels, encoder, index, files); the encoder alone runs at "
            f"{en['encoder_x_realtime']}× real time. Other load before the run: "
            f"{fmt(en['busy_cores_before'], 2)} busy cores.", ""]


def scale_lines(sc: dict) -> list[str]:
    """The cost-by-catalogue-size table and its summary line."""
    lines = ["### Identify cost and index RAM by catalogue size", "",
             f"Up to {sc['real_tracks']} tracks are the corpus itself; beyond, each track is a distorted copy of a "
             f"corpus track ({sc['copy_rule']}), {sc['copies']} copies in all, embedded like an enrolment. "
             + SCALE_TEXT.format(rounds=sc.get("rounds", 1)), "",
             "| tracks | vectors | index | index RAM (MiB) | ms/window, batch 1 | ms/window, batch 32 | "
             "features | encoder | search | vote | live, batch 32 | streams | top-1 source % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sc["rows"]:
        lines.append(f"| {r['tracks']:,} | {r['vectors']:,} | {r['structure']} | {fmt(r['index_mib'])} | "
                     f"{fmt(r['window_b1_ms'], 2)} | {fmt(r['window_b32_ms'], 2)} | {fmt(r['features_b32_ms'], 2)} | "
                     f"{fmt(r['encoder_b32_ms'], 2)} | {fmt(r['search_b32_ms'], 2)} | {fmt(r['vote_b32_ms'], 2)} | "
                     f"{fmt(r['live_b32_ms'], 2)} | {r['streams']} | {fmt(r['top1_source'])} |")
    first, last = sc["rows"][0], sc["rows"][-1]
    return lines + ["", f"Identify cost from {first['tracks']:,} to {last['tracks']:,} tracks: "
                        f"×{last['window_b32_ms'] / first['window_b32_ms']:.2f} at batch 32, "
                        f"×{last['window_b1_ms'] / first['window_b1_ms']:.2f} at batch 1, "
                        f"×{last['live_b32_ms'] / first['live_b32_ms']:.2f} live (target ≤ 2×). "
                        f"Other load before the run: {fmt(sc.get('busy_cores_before'), 2)} busy cores.", ""]


def render(res: dict) -> str:
    """The whole section; steps never run on this machine are left out."""
    m = res["machine"]
    steps = ", ".join(f"{k} {res[k].get('date', 'an earlier day')}" for k in ("accuracy", "enrol", "scale") if k in res)
    lines = ["## fingerprint engine: accuracy, enrolment and scale", "",
             f"Written on {res['date']} by `tools/bench_fingerprint.py` from steps measured on {steps}; to "
             "reproduce, from the repository root (after `tools/evaluate.py` has made its queries):", "",
             f"    {res['command']}", "",
             f"- **Machine:** {m['cpu']}, {m['cores']} cores, {fmt(m['ram_gib'])} GiB RAM; {m['os']}, "
             f"Python {m['python']}; CPU only.",
             f"- **Encoder:** `audiocopy/weights/fingerprint_encoder.json` (sha256 {res['encoder'][:12]}…), "
             f"{res['encoder_info']}.", ""]
    if res.get("accuracy"):
        lines += accuracy_lines(res["accuracy"])
    if res.get("enrol"):
        lines += enrol_lines(res["enrol"])
    if res.get("scale"):
        lines += scale_lines(res["scale"])
    return "\n".join(lines)
