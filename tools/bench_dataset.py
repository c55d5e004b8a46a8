#!/usr/bin/env python3
"""Dataset-build memory benchmark: peak RAM for a catalogue of N licensed and M wrong tracks.

The seed's dataset step held everything in one in-RAM array and needed
2.5 GB; ours writes one shard per track, so its peak memory should not grow
with the number of tracks. This script checks that claim at the issue's
scale (100 licensed + 1000 wrong tracks by default): it lays out that many
tracks as symbolic links into a corpus folder (cycling through the corpus
under distinct names when it has fewer tracks; the builder decodes and
augments every link independently, so the work is real), runs
``audiocopy dataset`` as a child process, samples the resident memory of its
whole process tree every 0.2 s, and writes the result into the
``dataset-ram`` section of ``docs/benchmarks.md``.

Usage (repository root)::

    PYTHONPATH=. .venv/bin/python tools/bench_dataset.py --corpus CORPUS_DIR [--licensed 100 --wrong 1000]
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO, REPO / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench.common import BenchError  # noqa: E402
from bench.doc import update_section  # noqa: E402
from bench.machine import busy_cores, machine_info, run_measured  # noqa: E402

log = logging.getLogger("bench_dataset")


def lay_out(corpus: Path, work: Path, n_licensed: int, n_wrong: int) -> None:
    """Symlink ``n_licensed`` + ``n_wrong`` tracks under unique names into WORK/licensed|wrong."""
    tracks = sorted(corpus.glob("*.wav"))
    if not tracks:
        raise BenchError(f"no .wav files in {corpus}")
    for sub, n, prefix in (("licensed", n_licensed, "L"), ("wrong", n_wrong, "W")):
        folder = work / sub
        if folder.is_dir() and len(list(folder.iterdir())) == n:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        offset = 0 if sub == "licensed" else n_licensed
        for i in range(n):
            src = tracks[(offset + i) % len(tracks)]
            os.symlink(src.resolve(), folder / f"{prefix}{i:04d}__{src.name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="folder of WAV tracks")
    p.add_argument("--work", type=Path, default=Path("data/bench-dataset"))
    p.add_argument("--licensed", type=int, default=100)
    p.add_argument("--wrong", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        lay_out(args.corpus, args.work, args.licensed, args.wrong)
        out = args.work / "dataset"
        shutil.rmtree(out, ignore_errors=True)  # measure a build from scratch
        env = dict(os.environ, PYTHONPATH=str(REPO))
        busy = busy_cores()
        result = run_measured([sys.executable, "-m", "audiocopy.cli", "-q", "dataset",
                               "--licensed", str(args.work / "licensed"), "--wrong", str(args.work / "wrong"),
                               "--out", str(out), "--jobs", str(args.jobs)], env)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manifest = json.loads((out / "manifest.json").read_text())
    windows = sum(os.path.getsize(out / s["file"]) for s in manifest["sources"])
    m = machine_info()
    cmd = (f"PYTHONPATH=. .venv/bin/python tools/bench_dataset.py --corpus CORPUS_DIR "
           f"--licensed {args.licensed} --wrong {args.wrong} --jobs {args.jobs}")
    body = "\n".join([
        "## Dataset build: peak memory", "",
        f"Measured on {datetime.date.today()} with `tools/bench_dataset.py`:", "", f"    {cmd}", "",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; "
        f"cores busy with other work before the run: {busy}.",
        f"- **Input:** {args.licensed} licensed + {args.wrong} wrong tracks (links cycling through "
        f"{len(list(args.corpus.glob('*.wav')))} corpus tracks under distinct names), default dataset "
        f"parameters, {args.jobs} worker processes.", "",
        "| figure | value |", "|---|---:|",
        f"| wall time | {result['wall_s'] / 60:.1f} min |",
        f"| peak RSS, largest single process | {result['peak_process_mib']:.0f} MiB |",
        f"| peak RSS, whole process tree (parent + workers) | {result['peak_tree_mib']:.0f} MiB |",
        f"| shards on disk | {windows / 2**20:.0f} MiB in {len(manifest['sources'])} files |",
        f"| failed sources | {len(manifest['failed'])} |", "",
        "Target: peak RAM ≤ 1 GB for 100 licensed + 1000 wrong tracks (the seed needed 2.5 GB).",
    ])
    update_section(args.doc, "dataset-ram", body)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
