#!/usr/bin/env python3
"""FFT feature benchmark: NumPy (CPU) against CuPy (GPU), speed and agreement.

Why it exists: the live server computes the FFT step of every window on the
GPU with CuPy when one is usable (``xp.get_xp`` in ``Recognizer``), and on
the CPU with NumPy/SciPy otherwise. Whether that pays off, and from which
batch size, is a measurement, not a given: a 2.5 s window is small, the
server hands the features NumPy audio, so every GPU call also pays a
host->device copy of its input and a device->host copy of its result. And
the two devices must compute the *same* features (a model trained on CPU
features is served GPU features), so the benchmark also reports the largest
difference between them.

Two steps, each on NumPy and on CuPy:

* ``log_spectrogram``: the features of whole windows (cnnbin, the batch path).
* **stream**: ``frame_power`` + ``band_db`` on the frames a live stream has
  not analysed yet, as ``engines.fingerprint.stream`` calls them (frames cut on the
  host, copied to ``xp``, band levels copied back). By default the new
  frames of one 0.5 s hop per window (16 frames of 32 ms).

CuPy runs in two variants: *on device* (input already in GPU memory, output
left there; the stream is synchronised inside the timed call, so the time is
the GPU's work, not just the launch) and *with copies* (NumPy in, NumPy out:
what the server really pays). Timings are ``bench.machine.median_ms`` after
warm-up calls (which compile CuPy's kernels and make cuFFT's plans).

On a machine without a usable GPU the CuPy rows say so; nothing fails.

Usage (repository root; ``python3`` where there is no ``.venv``)::

    PYTHONPATH=. .venv/bin/python tools/bench_features.py --json data/bench/features_gpu.json
    PYTHONPATH=. .venv/bin/python tools/bench_features.py --render data/bench/features_gpu.json

The first command measures and writes the JSON; the second writes the
``features-gpu`` section of ``docs/benchmarks.md`` from it, so a run made on
a GPU machine can be rendered elsewhere.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench.common import read_json, write_json  # noqa: E402
from bench.doc import update_section  # noqa: E402
from bench.gpu import NO_GPU, fmt_ms, gpu_module, synchronize  # noqa: E402
from bench.machine import busy_cores, machine_info, timed  # noqa: E402

from audiocopy.config import AudioParams, FeatureParams, as_dict  # noqa: E402
from audiocopy.signal import xp as xpmod  # noqa: E402
from audiocopy.signal.features import band_db, frame_power, log_spectrogram  # noqa: E402

log = logging.getLogger("bench_features")

SECTION = "features-gpu"
DEFAULT_JSON = Path("data/bench/features_gpu.json")
STEPS = ("log_spectrogram", "stream")
VARIANTS = ("numpy", "cupy", "cupy+copies")
VARIANT_LABELS = {"numpy": "NumPy (CPU)", "cupy": "CuPy, on device", "cupy+copies": "CuPy + host copies"}


# --------------------------------------------------------------------------- input

def synthetic_windows(batch: int, *, audio: AudioParams, seed: int) -> np.ndarray:
    """(batch, window_samples) float32: per window three seeded tones (110 Hz-4 kHz) plus white noise.

    The noise (about 25 dB below the tones) keeps every band well above
    float32 round-off, so the NumPy/CuPy difference measures the FFTs, not
    the logarithm of round-off.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(audio.window_samples) / audio.sample_rate
    out = 0.01 * rng.standard_normal((batch, audio.window_samples))
    for _ in range(3):
        freq = 110.0 * 2.0 ** rng.uniform(0.0, np.log2(4000 / 110), size=(batch, 1))
        amp = rng.uniform(0.05, 0.3, size=(batch, 1))
        phase = rng.uniform(0.0, 2 * np.pi, size=(batch, 1))
        out += amp * np.sin(2 * np.pi * freq * t + phase)
    return out.astype(np.float32)


def stream_frames(windows: np.ndarray, *, params: FeatureParams, per_window: int) -> np.ndarray:
    """(batch * per_window, n_fft) float32: the last ``per_window`` frames of each window, contiguous.

    Cut as ``engines.fingerprint.stream`` cuts a hop's new frames (strided views, one
    concatenation); that host-side cutting is the same for both devices and
    not timed.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    n_frames = params.n_frames(windows.shape[1])
    if not 1 <= per_window <= n_frames:
        raise ValueError(f"frames per window must be in 1..{n_frames}, got {per_window}")
    views = sliding_window_view(windows, params.n_fft, axis=-1)[:, ::params.hop_length][:, n_frames - per_window:n_frames]
    return np.ascontiguousarray(views.reshape(-1, params.n_fft))


def standardise_levels(levels: np.ndarray, *, batch: int, floor_db: float) -> np.ndarray:
    """Stream band levels (batch * frames, bands) in dB -> floored, standardised per window, float64.

    What the fingerprint encoder consumes of band levels (it floors and
    standardises each sub-window the same way), so a NumPy/CuPy difference
    here is on the scale of ``log_spectrogram``'s and the same tolerance
    applies. Raw dB levels keep every band, also those 60-80 dB below the
    peak, where float32 FFT round-off alone moves a level by up to about
    1e-3 dB whichever device computes it (and far below the floor, where
    only round-off is left, by whole dB).
    """
    x = np.asarray(levels, dtype=np.float64).reshape(batch, -1, levels.shape[-1])
    x = np.maximum(x, x.max(axis=(1, 2), keepdims=True) - floor_db)
    return (x - x.mean(axis=(1, 2), keepdims=True)) / np.maximum(x.std(axis=(1, 2), keepdims=True), 1e-3)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def step_function(step: str, *, audio: AudioParams, params: FeatureParams):
    """``f(x, xp)`` computing ``step`` on ``x`` (NumPy or ``xp`` array); returns an ``xp`` array."""
    if step == "log_spectrogram":
        return lambda x, xp: log_spectrogram(x, audio=audio, params=params, xp=xp)
    if step == "stream":
        # As engines.fingerprint.stream: frame_power copies the cut frames to xp, FFT power, band levels in dB.
        return lambda x, xp: band_db(frame_power(x, xp=xp), audio=audio, params=params, xp=xp)
    raise ValueError(f"unknown step {step!r}")


# --------------------------------------------------------------------------- measurement

def measure(*, batches: list[int], steps: tuple[str, ...] = STEPS, frames_per_window: int, seed: int,
            max_runs: int, budget_s: float, gpu: ModuleType | None,
            audio: AudioParams = AudioParams(), params: FeatureParams = FeatureParams()) -> list[dict]:
    """One row per (step, variant, batch): ms per batch and per window, runs, max |CuPy - NumPy|."""
    rows = []
    windows_all = synthetic_windows(max(batches), audio=audio, seed=seed)
    for step in steps:
        fn = step_function(step, audio=audio, params=params)
        for batch in batches:
            windows = windows_all[:batch]
            host = windows if step == "log_spectrogram" else stream_frames(windows, params=params,
                                                                         per_window=frames_per_window)
            base = {"step": step, "batch": batch, "input_shape": list(host.shape)}
            reference = np.asarray(fn(host, np))
            ms, runs = timed(lambda: fn(host, np), max_runs=max_runs, budget_s=budget_s)
            rows.append({**base, "variant": "numpy", "ms_per_batch": ms, "ms_per_window": ms / batch,
                         "runs": runs, "output_shape": list(reference.shape)})
            log.info("%s batch %d numpy: %.3f ms", step, batch, ms)
            if gpu is None:
                rows += [{**base, "variant": v, "ms_per_batch": None, "ms_per_window": None, "runs": 0}
                         for v in VARIANTS[1:]]
                continue
            device_in = gpu.asarray(host)
            synchronize(gpu)

            def on_device():
                out = fn(device_in, gpu)
                synchronize(gpu)
                return out

            def with_copies():
                out = xpmod.to_numpy(fn(host, gpu))  # host -> device inside fn, device -> host here
                synchronize(gpu)
                return out

            for variant, call in (("cupy", on_device), ("cupy+copies", with_copies)):
                out = np.asarray(xpmod.to_numpy(call()))
                ms, runs = timed(call, max_runs=max_runs, budget_s=budget_s)
                row = {**base, "variant": variant, "ms_per_batch": ms, "ms_per_window": ms / batch,
                       "runs": runs, "output_shape": list(out.shape)}
                if out.shape != reference.shape:
                    row["max_abs_diff"] = float("inf")
                elif step == "log_spectrogram":
                    row["max_abs_diff"] = _max_abs_diff(out, reference)
                else:
                    row["max_abs_diff_db"] = _max_abs_diff(out, reference)
                    row["max_abs_diff"] = _max_abs_diff(
                        standardise_levels(out, batch=batch, floor_db=params.floor_db),
                        standardise_levels(reference, batch=batch, floor_db=params.floor_db))
                rows.append(row)
                log.info("%s batch %d %s: %.3f ms, max |diff| %.2e", step, batch, variant, ms, row["max_abs_diff"])
    return rows


def reproduce_command(args: argparse.Namespace) -> str:
    """The measuring command as a report shows it (this machine's JSON path left out)."""
    in_venv = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
    cmd = ["tools/bench_features.py", "--json", str(DEFAULT_JSON)]
    if args.batches != "1,32,256":
        cmd += ["--batches", args.batches]
    if args.stream_frames is not None:
        cmd += ["--stream-frames", str(args.stream_frames)]
    if args.seed != 0:
        cmd += ["--seed", str(args.seed)]
    if args.numpy_only:
        cmd.append("--numpy-only")
    return f"PYTHONPATH=. {'.venv/bin/python' if in_venv else 'python3'} {shlex.join(cmd)}"


def run_benchmark(args: argparse.Namespace) -> dict:
    audio, params = AudioParams(), FeatureParams()
    frames_per_window = args.stream_frames or max(1, round(audio.hop_samples / params.hop_length))
    batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    if not batches or batches[0] < 1:
        raise ValueError(f"--batches needs positive sizes, got {args.batches!r}")
    busy = busy_cores()
    gpu, device = gpu_module("numpy" if args.numpy_only else "auto")
    log.info("GPU: %s", device)
    rows = measure(batches=batches, frames_per_window=frames_per_window, seed=args.seed, max_runs=args.runs,
                   budget_s=args.budget_s, gpu=gpu, audio=audio, params=params)
    import scipy

    return {
        "date": datetime.date.today().isoformat(),
        "command": reproduce_command(args),
        "machine": machine_info(),
        "busy_cores": busy,
        "gpu": device if gpu is not None else None,
        "gpu_status": device,
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "cupy": gpu.__version__ if gpu is not None else None},
        "audio": as_dict(audio),
        "features": as_dict(params),
        "seed": args.seed,
        "stream_frames_per_window": frames_per_window,
        "tolerance": args.tolerance,
        "rows": rows,
    }


# --------------------------------------------------------------------------- report

def table(result: dict) -> str:
    """The markdown table of a result."""
    tol = result["tolerance"]
    numpy_ms = {(r["step"], r["batch"]): r["ms_per_batch"] for r in result["rows"] if r["variant"] == "numpy"}
    lines = ["| step | variant | batch | ms per batch | ms per window | speed-up vs NumPy | max abs diff vs NumPy |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        head = f"| {r['step']} | {VARIANT_LABELS.get(r['variant'], r['variant'])} | {r['batch']} |"
        if r["ms_per_batch"] is None:
            lines.append(f"{head} {NO_GPU} | – | – | – |")
            continue
        speedup = numpy_ms[(r["step"], r["batch"])] / r["ms_per_batch"] if r["variant"] != "numpy" else None
        diff = r.get("max_abs_diff")
        diff_s = "–" if diff is None else f"{diff:.1e}" + ("" if diff <= tol else f" **> {tol:g}**")
        if r.get("max_abs_diff_db") is not None:
            diff_s += f" ({r['max_abs_diff_db']:.1e} dB)"
        lines.append(f"{head} {fmt_ms(r['ms_per_batch'])} | {fmt_ms(r['ms_per_window'])} | "
                     f"{'–' if speedup is None else f'{speedup:.1f}×'} | {diff_s} |")
    return "\n".join(lines)


def render(result: dict, json_path: str) -> str:
    """The ``features-gpu`` section of ``docs/benchmarks.md``."""
    m, v, f = result["machine"], result["versions"], result["features"]
    a = result["audio"]
    n_frames = 1 + (round(a["window_seconds"] * a["sample_rate"]) - f["n_fft"]) // f["hop_length"]
    render_cmd = result["command"].split(" --json ")[0] + f" --render {json_path}"
    counts = [r["runs"] for r in result["rows"] if r["runs"]]
    runs = f"{min(counts)}–{max(counts)}" if counts and min(counts) != max(counts) else str(max(counts, default=0))
    diffs = [r["max_abs_diff"] for r in result["rows"] if r.get("max_abs_diff") is not None]
    if diffs:
        worst = max(diffs)
        agree = (f"Largest NumPy/CuPy difference over all rows: {worst:.1e} "
                 f"({'within' if worst <= result['tolerance'] else '**beyond**'} the {result['tolerance']:g} "
                 "tolerance). Compared: `log_spectrogram`'s standardised features; for the stream step its dB "
                 "levels floored and standardised per window as the fingerprint encoder sees them (in brackets: "
                 "the raw dB levels: float32 FFT round-off alone, on either device, moves the levels of bands "
                 "60-80 dB below the peak by up to about 1e-3 dB).")
    else:
        agree = f"CuPy rows: {result['gpu_status']}, so nothing was compared."
    return "\n".join([
        "## FFT features: NumPy (CPU) vs CuPy (GPU)", "",
        "The server computes each window's FFT features on the GPU with CuPy when one is usable, "
        "else with NumPy/SciPy. This measures both, with and without the host/device copies the server pays.", "",
        f"Measured on {result['date']} with `tools/bench_features.py`; to reproduce, from the repository root:", "",
        f"    {result['command']}", f"    {render_cmd}", "",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; {m['os']}, Python {m['python']}; "
        f"GPU: {result['gpu_status']}. NumPy {v['numpy']}, SciPy {v['scipy']}, CuPy {v['cupy'] or '–'}. "
        f"Cores busy with other work before the run: {result['busy_cores']}.",
        f"- **Input:** seeded synthetic 2.5 s windows (seed {result['seed']}: three tones plus white noise each) "
        f"at {a['sample_rate']} Hz; default feature parameters (n_fft {f['n_fft']}, hop {f['hop_length']}: "
        f"{n_frames} frames × {f['n_bins']} bands per window).",
        "- **Steps:** `log_spectrogram` on whole windows; *stream* = `frame_power` + `band_db` on "
        f"{result['stream_frames_per_window']} new frames per window (one 0.5 s hop of a live stream, "
        "as `engines.fingerprint.stream` calls them; frames cut on the host, not timed).",
        "- **Variants:** NumPy = SciPy's float32 FFT on one thread; *CuPy, on device* = input already in GPU "
        "memory, output left there, stream synchronised inside the timed call; *CuPy + host copies* = NumPy in, "
        "NumPy out (host→device copy of the input, device→host copy of the output), as the server calls it.",
        f"- **Timing:** `bench.machine.median_ms`, median of {runs} timed calls per row (fewer for slow rows) after "
        "warm-up calls that compile CuPy's kernels and make cuFFT's plans.", "",
        table(result), "",
        agree, "",
        f"Raw results: `{json_path}`.",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--json", type=Path, default=None,
                      help=f"measure and write the results here (default {DEFAULT_JSON})")
    mode.add_argument("--render", type=Path, metavar="JSON",
                      help="write the docs section from this results file instead of measuring")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--batches", default="1,32,256", help="comma-separated batch sizes (windows per call)")
    p.add_argument("--stream-frames", type=int, default=None,
                   help="new frames per window in the stream step (default: one 0.5 s hop, 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=30, help="most timed calls per row")
    p.add_argument("--budget-s", type=float, default=2.0, help="about this many seconds of timed calls per row")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest NumPy/CuPy difference that passes")
    p.add_argument("--numpy-only", action="store_true", help="do not use a GPU even if there is one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    if args.render is not None:
        result = read_json(args.render)
        if not result or "rows" not in result:
            print(f"error: {args.render} is not a results file of this benchmark", file=sys.stderr)
            return 1
        shown = args.render.resolve()
        shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else args.render
        update_section(args.doc, SECTION, render(result, str(shown)))
        log.info("wrote section %s of %s", SECTION, args.doc)
        print(table(result))
        return 0

    try:
        result = run_benchmark(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = args.json or DEFAULT_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    log.info("wrote %s", out)
    print(table(result))
    bad = [r for r in result["rows"] if r.get("max_abs_diff", 0.0) > args.tolerance]
    if bad:
        log.error("%d rows differ from NumPy by more than %g", len(bad), args.tolerance)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
