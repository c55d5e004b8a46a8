"""cnnbin's enrolment cost and scoring speed in the accuracy section.

Place in ``tools/bench``: called by ``report.render_accuracy`` when the run
enrolled with cnnbin (training per track is that engine's cost; the
fingerprint engine's enrolment and scale figures are
``tools/bench_fingerprint.py``'s section).
"""
from __future__ import annotations

from .common import fmt


def cnnbin_cost_lines(res: dict) -> list[str]:
    """Enrolment cost and scoring speed tables of a cnnbin run."""
    c = res["cnnbin"]
    ds, tr, dbs, speed = c.get("dataset"), c.get("train"), c["db"], c["speed"]
    lines = ["### Enrolment cost", "", "| measure | value |", "|---|---|"]
    if ds:
        lines += [f"| dataset build wall time ({res['config']['jobs']} worker processes) | {ds['wall_s']:.0f} s"
                  f"{' (resumed run: partial)' if ds.get('resumed') else ''} |",
                  f"| dataset build peak RAM, largest process | {ds['peak_process_mib']:.0f} MiB |",
                  "| dataset build peak RAM, whole process tree (sampled every 0.2 s) | "
                  f"{ds['peak_tree_mib']:.0f} MiB |"]
    else:
        lines.append("| dataset build | not measured (dataset reused) |")
    if tr:
        lines += [f"| training wall time | {tr['wall_s']:.0f} s for {tr['tracks_trained']} tracks"
                  f"{' (resumed run: partial)' if tr.get('resumed') else ''} |",
                  f"| training wall time per track (incl. start-up and catalogue calibration) | "
                  f"{fmt(tr['wall_per_track_s'])} s |",
                  f"| training peak RAM | {tr['peak_process_mib']:.0f} MiB |"]
    else:
        lines.append("| training | not measured (database reused) |")
    lines += [f"| fitting time per track (`metrics.train_seconds`), mean / max | {fmt(dbs['fit_seconds_mean'])} / "
              f"{fmt(dbs['fit_seconds_max'])} s |",
              f"| model size per track (`.keras`), mean / max | {fmt(dbs['model_kib_mean'])} / "
              f"{fmt(dbs['model_kib_max'])} KiB |",
              f"| enrolment settings | {c['settings']} |"]
    return lines + ["", *speed_lines(speed)]


def speed_lines(speed: dict) -> list[str]:
    """The scoring speed table (median ms per batch and per window)."""
    what = ("the encoder's ten sub-window embeddings per window, then all track heads in one pass (`StackedHeads`)"
            if speed.get("kind") == "embedding" else "the stacked forward pass of all track CNNs (`StackedCnn`)")
    lines = ["### Scoring speed", "",
             "Median of repeated calls after a warm-up, in one process using all cores. Scoring is "
             f"`CnnBinEngine.score_features` on ready features: {what}; feature extraction is "
             "`signal.features.log_spectrogram` on 2.5 s windows. Cores kept busy by other processes just before "
             f"timing: {fmt(speed.get('busy_cores_before'), 2)}.", "",
             "| step | tracks | batch | ms per batch | ms per window |", "|---|---:|---:|---:|---:|"]
    for f in speed["features"]:
        lines.append(f"| feature extraction | – | {f['batch']} | {f['ms_per_batch']:.2f} | "
                     f"{f['ms_per_window']:.2f} |")
    for s in speed["scoring"]:
        lines.append(f"| scoring | {s['tracks']}{'*' if s['repeated'] else ''} | {s['batch']} | "
                     f"{s['ms_per_batch']:.2f} | {s['ms_per_window']:.2f} |")
    for e in speed.get("encoder", []):
        lines.append(f"| encoder embeddings alone (part of scoring) | – | {e['batch']} | {e['ms_per_batch']:.2f} | "
                     f"{e['ms_per_window']:.2f} |")
    if any(s["repeated"] for s in speed["scoring"]):
        lines += ["", f"\\* Only {speed['trained_models']} models were trained: the timing catalogue repeats them "
                      "(`bench.speed.clone_db`); the cost depends on the number and size of the models, not on "
                      "their weights."]
    return lines
