"""Small pieces every benchmark step uses: the error type, JSON files, seeds, number formatting.

Place in ``tools/bench``: the bottom; imports nothing else from it.

Seeds. Every random draw of a benchmark comes from ``rng_for(seed, *parts)``:
a generator seeded by a hash of the run seed and a description of its use
(``"offsets", track``). Adding a condition or a track therefore leaves every
other query unchanged, and two machines make the same queries.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: The repository root (``tools/bench/common.py`` -> two levels up).
REPO = Path(__file__).resolve().parents[2]


class BenchError(RuntimeError):
    """A benchmark step cannot go on; the message says which and why (printed as one ``error:`` line)."""


def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file, so a crash never leaves half a file (the package's atomic writer)."""
    from audiocopy.atomic_files import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), obj)


def per_engine(name: str, engine: str) -> str:
    """A folder or docs-section name for one engine's run: ``name`` for the fingerprint engine (the names runs
    had before there was a choice), ``name-ENGINE`` for another."""
    return name if engine == "fingerprint" else f"{name}-{engine}"


def run_results_path(latest: Path, when) -> Path:
    """Where one run's results are kept for good: ``runs/<stem>-<UTC time>.json`` beside ``latest``.

    latest: the file every run overwrites (``WORK/results.json``); when: the
    run's ``datetime`` (made UTC). A report names this path, so a later run
    (a smoke test of the tool, another engine) can never replace the readings
    a committed section points to.
    """
    import datetime

    stamp = when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(latest).parent / "runs" / f"{Path(latest).stem}-{stamp}.json"


def write_run_results(latest: Path, res: dict, when) -> Path:
    """Write ``res`` to its run's own file (``run_results_path``) and to ``latest``; returns the run's file.

    ``res["results_file"]`` is set to the run's file before either is written.
    """
    kept = run_results_path(latest, when)
    res["results_file"] = str(kept)
    write_json(kept, res)
    write_json(latest, res)
    return kept


def read_json(path: Path, default=None):
    """The JSON content of ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def run_logged(fn, *args):
    """``fn(*args)`` with INFO logs (timestamped) on stderr; a ``BenchError`` becomes one ``error:`` line and None.

    The ``main`` of a benchmark script: it returns exit code 1 on None.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return fn(*args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def rng_for(seed: int, *parts) -> np.random.Generator:
    """A generator seeded from the run seed and a description of its use (see the module docstring).

    The hash (SHA-1 of ``"seed:part1:part2..."``, first 64 bits) is the one the
    pre-restructure ``evaluate.py`` used, so ``--legacy`` reproduces its queries.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return np.random.default_rng(int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:16], 16))


def ids_sha256(ids) -> str:
    """SHA-256 (hex) of a set of track ids: sorted, joined by newlines (as the music generator's manifest)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def fmt(value, digits: int = 1) -> str:
    """A number for a table cell; an en dash when there is none."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def calibration_source(split: dict, calibration: dict) -> str:
    """Where a database's window threshold was set, in words: how many windows of which held-out negatives.

    split: the work folder's ``split.json`` (its ``calibration`` ids are the
    wrong tracks whose packages the encoder never trained on, at the default
    share); calibration: the database's calibration record
    (``calibration_windows``, and the ``holdout`` rule it was set with, which
    names the tracks when its encoder held out another share).
    """
    from audiocopy.training.sources import holdout_tracks, track_group

    rule = calibration.get("holdout")
    ids = split.get("calibration") or []
    if rule and split.get("wrong"):
        ids = sorted(holdout_tracks(split["wrong"], rule))
    windows = calibration.get("calibration_windows")
    counted = f"{windows} windows of " if windows else ""
    if not ids:
        return f"{counted}the hold-out of the wrong tracks its encoder never trained on"
    packages = sorted({split.get("track_packages", {}).get(t, track_group(t)) for t in ids})
    return (f"{counted}the {len(ids)} wrong tracks of {len(packages)} package(s) its encoder never trained on "
            f"({', '.join(packages)})")


def generic_paths(argv: list[str], placeholders: dict[str, str]) -> list[str]:
    """A command line with the values of the options in ``placeholders`` (e.g. ``{"--corpus": "CORPUS_DIR"}``)
    replaced by those names, in both ``--opt VALUE`` and ``--opt=VALUE`` forms, every time the option occurs."""
    out = list(argv)
    for i, arg in enumerate(out):
        option, sep, _ = arg.partition("=")
        if sep and option in placeholders:
            out[i] = f"{option}={placeholders[option]}"
        elif arg in placeholders and i + 1 < len(out):
            out[i + 1] = placeholders[arg]
    return out


def generic_corpus(argv: list[str]) -> list[str]:
    """A command line as a report shows it: the corpus folder is this machine's, so it reads CORPUS_DIR."""
    return generic_paths(argv, {"--corpus": "CORPUS_DIR"})


def check_work_config(work: Path, cfg: dict) -> None:
    """Refuse a work folder made with other settings (its caches would not match); record ``cfg`` otherwise."""
    path = Path(work) / "config.json"
    old = read_json(path)
    if old is not None and old != cfg:
        diffs = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
        raise BenchError(f"{work} was made with other settings ({', '.join(diffs)}); "
                         "delete it or choose another --work")
    write_json(path, cfg)
