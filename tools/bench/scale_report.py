"""The scale section of ``docs/benchmarks.md`` and its projection to 10^6 tracks and 10^4 streams.

Place in ``tools/bench``: the last step of ``tools/bench_scale.py``. Every
figure comes from the results dictionary ``bench_scale.run`` returns (also
saved as ``WORK/scale_results.json``); the projection's assumptions are
command-line options, printed beside the table.
"""
from __future__ import annotations

from .common import fmt
from .scale_vectors import DERIVED_NOISE, project

#: Targets of the scale section.
MAX_BYTES_PER_TRACK = 20_000
MAX_COST_RATIO = 2.0
MAX_TOP1_LOSS = 2.0
PROJECT_TRACKS, PROJECT_STREAMS = 1_000_000, 10_000


def cost_at(rows: list[dict], tracks: int) -> tuple[float, str]:
    """(live ms per window, how it was had) at ``tracks``: measured, or extrapolated from the largest size.

    Extrapolation: IVF lists stop growing in number at 4,096, so past the
    largest measured size each list, and the search, grows with the
    catalogue; the estimate adds the search's batch-32 cost (all ten
    sub-windows, more than the live path searches) times the growth, a
    deliberately high figure.
    """
    for r in rows:
        if r["tracks"] == tracks:
            return r["timing"]["live_b32_ms"], "measured"
    top = max(rows, key=lambda r: r["tracks"])
    growth = tracks / top["tracks"] - 1.0
    ms = top["timing"]["live_b32_ms"] + growth * top["timing"]["search_b32_ms"]
    return ms, f"extrapolated from {top['tracks']:,} tracks"


def projections(res: dict) -> list[dict]:
    """The projection rows: the largest measured catalogue and 10^6 tracks, each serving 10^4 streams."""
    rows, a = res["rows"], res["assumptions"]
    small = min(rows, key=lambda r: r["tracks"])
    top = max(rows, key=lambda r: r["tracks"])
    out = []
    for tracks in sorted({top["tracks"], PROJECT_TRACKS}):
        ms, how = cost_at(rows, tracks)
        p = project(tracks=tracks, streams=PROJECT_STREAMS, bytes_per_track=top["bytes_per_track"],
                    process_base_mib=a["worker_base_mib"], streams_per_worker=a["streams_per_worker"],
                    cores_per_worker=a["cores_per_worker"], ms_per_window_at_size=ms,
                    ms_per_window_measured_base=small["timing"]["live_b32_ms"],
                    usd_per_core_hour=a["usd_per_core_hour"])
        out.append({**p, "ms_per_window": ms, "how": how})
    return out


def catalogue_text(res: dict) -> list[str]:
    """How the catalogue and the queries were made."""
    r, q, top = res["real"], res["queries"], max(res["rows"], key=lambda x: x["tracks"])
    n_real = r["n_corpus"] + r["n_gen"] + r["n_copies"]
    return [
        (f"- **Real tracks** ({n_real:,}, {r['real_vectors']:,} vectors, all embedded by the shipped encoder as "
        f"enrolment embeds them): the {r['n_corpus']} corpus tracks (`WORK/corpus_db` of "
        f"`tools/bench_fingerprint.py`), {r['n_gen']} generated tracks (`tools/generate_music.py` output) and "
        f"{r['n_copies']} distorted copies of corpus tracks (`tools/bench/fpscale.py`: speed 0.85-1.15 without 1.0, "
        "white noise at 30 dB). Catalogue keys take the corpus tracks first, so every size holds the query tracks."),
        (f"- **Derived tracks** ({top['derived']:,} at {top['tracks']:,} tracks): encoding that many copies would take "
        "hours, so derived track *d* is real track *d* mod "
        f"{n_real:,}'s whole vector sequence times a random orthogonal 64×64 matrix drawn for *d* alone "
        f"(QR of a Gaussian matrix), plus Gaussian noise σ = {DERIVED_NOISE} per dimension, each vector "
        "renormalised (`tools/bench/scale_vectors.py`). A derived track keeps a real track's length and the "
        "similarity of its neighbouring vectors, and matches no other track; it fills the sphere more evenly than "
        "one encoder's real embeddings do, which spreads the IVF lists more evenly than real music would."),
        (f"- **Queries**: {q['windows']} clean 2.5 s windows of {q['tracks']} corpus tracks the encoder never trained "
        f"on ({q['provenance']}), each also *distorted*: speed ×0.96 or ×1.04 (soxr) and pink noise at 5 dB SNR. "
        "Top-1: the track with the best offset vote (`match.vote`, the engine's own) is the query's track or one of "
        "its distorted copies. *Exact*: the same query vectors searched exhaustively over the same catalogue "
        "(faiss `knn`, chunk by chunk), through the same vote."),
    ]


def tables(res: dict) -> list[str]:
    """Index, timing and accuracy tables, one row per size."""
    lines = [("| tracks | vectors | index | index MiB | bytes/track | train s | add s | vectors/s into the index "
             "| tracks/s | process RSS growth, MiB |"), "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['tracks']:,} | {r['vectors']:,} | {r['structure']} | {r['index_bytes'] / 2**20:.1f} | "
                     f"{r['bytes_per_track']:,.0f} | {r['train_s']} | {r['add_s']} | {r['vectors_per_s']:,.0f} | "
                     f"{r['tracks_per_s']:,.0f} | {r['rss_delta_mib']} |")
    lines += ["", ("| tracks | ms/window, batch 1 | ms/window, batch 32 | features | encoder | search | vote "
              "| live, batch 32 | busy cores per round |"), "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        t = r["timing"]
        lines.append(f"| {r['tracks']:,} | {t['window_b1_ms']:.2f} | {t['window_b32_ms']:.2f} | "
                     f"{t['features_b32_ms']:.2f} | {t['encoder_b32_ms']:.2f} | {t['search_b32_ms']:.2f} | "
                     f"{t['vote_b32_ms']:.2f} | {t['live_b32_ms']:.2f} | {r['busy_cores_per_round']} |")
    lines += ["", ("| tracks | clean: PQ | clean: exact | distorted: PQ | distorted: exact | PQ loss, points "
              "(clean / distorted) |"), "|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        a = r["accuracy"]
        lines.append(f"| {r['tracks']:,} | {a['clean']['pq']['top1_source']:.1f} | "
                     f"{a['clean']['exact']['top1_source']:.1f} | {a['distorted']['pq']['top1_source']:.1f} | "
                     f"{a['distorted']['exact']['top1_source']:.1f} | {loss(a, 'clean'):+.1f} / "
                     f"{loss(a, 'distorted'):+.1f} |")
    return lines


def loss(acc: dict, cond: str) -> float:
    """Top-1 points the PQ index loses against exact search (negative: it did better)."""
    return acc[cond]["exact"]["top1_source"] - acc[cond]["pq"]["top1_source"]


def targets(res: dict) -> list[str]:
    """The three targets, each with its figure and pass/miss."""
    rows = res["rows"]
    top, small = max(rows, key=lambda r: r["tracks"]), min(rows, key=lambda r: r["tracks"])

    def verdict(ok):
        return "pass" if ok else "**miss**"

    ratios = {key: top["timing"][key] / small["timing"][key] for key in ("window_b1_ms", "window_b32_ms",
                                                                           "live_b32_ms")}
    worst = max(loss(top["accuracy"], c) for c in ("clean", "distorted"))
    return [
        (f"- Index memory at {top['tracks']:,} tracks ({top['structure']}): **{top['bytes_per_track'] / 1000:.1f} kB "
        f"per track** (target ≤ {MAX_BYTES_PER_TRACK // 1000} kB): "
        f"{verdict(top['bytes_per_track'] <= MAX_BYTES_PER_TRACK)}."),
        (f"- Identify cost at {top['tracks']:,} vs {small['tracks']:,} tracks: ×{ratios['window_b1_ms']:.2f} at "
        f"batch 1, ×{ratios['window_b32_ms']:.2f} at batch 32, ×{ratios['live_b32_ms']:.2f} live (target ≤ "
        f"{MAX_COST_RATIO:g}×): {verdict(max(ratios.values()) <= MAX_COST_RATIO)}."),
        (f"- Top-1 loss of the PQ index against exact search at {top['tracks']:,} tracks: {worst:+.1f} points at "
        f"worst (target ≤ {MAX_TOP1_LOSS:g}): {verdict(worst <= MAX_TOP1_LOSS)}."),
    ]


def search_note(res: dict) -> list[str]:
    """Where the identify cost of the largest size goes: the IVF lists the search scans, against the smallest's."""
    from audiocopy.config import IndexParams

    nprobe = IndexParams().nprobe
    rows = sorted(res["rows"], key=lambda r: r["tracks"])
    small, top = rows[0], rows[-1]

    def per_list(r):
        """Mean vectors per inverted list (the whole index for exact search)."""
        return r["vectors"] / int(r["structure"].split(",")[0][3:]) if r["structure"].startswith("IVF") else None

    if per_list(top) is None or per_list(small) is None:
        return []
    t = top["timing"]
    share = 100 * t["search_b32_ms"] / t["window_b32_ms"]
    ratio = top["tracks"] / small["tracks"]
    return [(f"Where the time goes: at {top['tracks']:,} tracks the search takes {t['search_b32_ms']:.2f} of the "
            f"{t['window_b32_ms']:.2f} ms of a batch-32 window ({share:.0f} %). "
            f"The number of IVF lists stops growing at 4,096, so each list holds ~{per_list(top):,.0f} vectors "
            f"and a sub-window's {nprobe} visited lists ~{nprobe * per_list(top):,.0f} codes, against "
            f"~{nprobe * per_list(small):,.0f} at {small['tracks']:,} tracks. Index memory per track and top-1 hold "
            f"at {ratio:g} times the catalogue. "
            + ("The largest index scans them with FastScan (4-bit codes, SIMD look-ups; "
               "`IndexParams.fastscan_min_vectors`)." if top["structure"].endswith("fs") else
               "With these defaults the search cost does not."))]


def projection_text(res: dict) -> list[str]:
    """The projection table and its assumptions."""
    a = res["assumptions"]
    small = min(res["rows"], key=lambda r: r["tracks"])
    lines = [(f"**On paper: {PROJECT_STREAMS:,} concurrent streams.** Assumptions: one worker of "
             f"{a['cores_per_worker']} cores holds {a['streams_per_worker']} real-time streams at "
             f"{small['timing']['live_b32_ms']:.2f} ms per live window (the `server-fingerprint-100` load test: "
             f"{a['streams_per_worker']} streams on 2 cores at p95 < 300 ms; its per-window cost taken as this "
             f"run's at {small['tracks']:,} "
             "tracks) and fewer in proportion as a window costs more; every worker holds the whole faiss index "
             f"in RAM beside {a['worker_base_mib']:.0f} MiB of its own (the footprint benchmark measured 192 MiB "
             "after 8 streams at 1,000 tracks; the default allows twice that for the state of a few hundred streams); "
             f"{a['usd_per_core_hour']} USD per core-hour (an assumed on-demand cloud price), 730 h a month; "
             "index bytes per track as measured at the largest size. The 10^6 row keeps today's index parameters "
             "(lists capped at 4,096), so its search cost grows with the catalogue: it shows what must change "
             "(more lists, or the index sharded across servers) before 10^6 tracks, not a plan."), "",
             ("| tracks | ms/window (live) | streams/worker | workers | cores | index GiB per worker "
             "| RAM per worker, GiB | RAM in all, GiB | USD/hour | USD/month |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in res["projection"]:
        lines.append(f"| {p['tracks']:,} | {p['ms_per_window']:.2f} ({p['how']}) | {p['streams_per_worker']} | "
                     f"{p['workers']} | {p['cores']} | {p['index_gib']:.2f} | {p['ram_per_worker_gib']:.2f} | "
                     f"{p['ram_total_gib']:,.0f} | {p['usd_per_hour']:,.2f} | {p['usd_per_month']:,.0f} |")
    return lines


def milvus_text(res: dict) -> list[str]:
    """The Milvus rows, or why there are none."""
    m = res.get("milvus")
    if not m:
        return ["**Milvus**: not run this time (`--milvus-tracks` empty)."]
    when = f" Measured {m['date']}, command `{m['command']}`." if m.get("command") else ""
    lines = [m["note"] + when, "", ("| tracks | vectors | index | insert s | vectors/s | index build s | search ms/window "
                             "(batch 1) | top-1 clean | server RSS, MiB | stopped because |"),
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in m["rows"]:
        lines.append(f"| {r['tracks']:,} | {r.get('vectors', 0):,} | {r.get('structure', '-')} | "
                     f"{fmt(r.get('insert_s'))} | {fmt(r.get('vectors_per_s'), 0)} | {fmt(r.get('build_s'))} | "
                     f"{fmt(r.get('search_ms'), 2)} | {fmt(r.get('top1_clean'))} | {fmt(r.get('server_rss_mib'), 0)} | "
                     f"{r.get('stopped', '')} |")
    return lines


def render(res: dict) -> str:
    """The whole markdown section."""
    m = res["machine"]
    lb, la = res["load_before"], res["load_after"]
    head = [
        "## Scale: the fingerprint index at up to 100,000 tracks (tools/bench_scale.py)", "",
        (f"Measured {res['date']} on {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}; "
        f"load average before {lb['loadavg']} (other work: {lb['busy_cores']} busy cores), after {la['loadavg']}."),
        f"Command: `{res['command']}`", "",
        ("Index: the engine's own faiss backend with the default `IndexParams` (exact up to 250,000 vectors, "
         "then IVF-PQ, 16-byte codes, nlist ≈ 4√n capped at 4,096, nprobe 16; from 4,000,000 vectors the same 16 "
         "bytes as 32 4-bit codes scanned with faiss FastScan, `PQ32x4fs`), trained on ~64 vectors per list "
         "drawn from "
        "the whole catalogue, then filled 2,000 tracks at a time (`FaissIndex.add_batch`). *Index memory*: the "
        "serialised index (codes, ids, lists, quantisers). *Add s*: time inside the index's adds only (deriving "
        "the vectors and the exact search are timed apart). Identify: `fpscale.time_round`, medians per 2.5 s "
        f"window of the whole engine, best of {res['rounds']} rounds."), "",
    ]
    body = head + catalogue_text(res) + [""] + tables(res) + ["", "Targets:", ""] + targets(res) + [""]
    body += search_note(res) + [""]
    body += milvus_text(res) + [""] + projection_text(res)
    return "\n".join(body) + "\n"
