#!/usr/bin/env python3
"""Accuracy and speed benchmark of the recognizer; writes ``docs/benchmarks.md``.

What it measures. A corpus of tracks is split (deterministically, by
``--seed``) into a catalogue that is enrolled, "wrong" tracks used as
training negatives, and "unseen" tracks that no model ever trains on. From
every catalogue and unseen track, ``--k`` random 2.5 s fragments are cut and
distorted in each test condition (clean, white noise, other music, speed,
tempo, pitch, MP3, phone). A query from a catalogue track must be
recognised as that track; a query from an unseen track must be called "no
match". The report gives, per condition and for groups of conditions, the
hit rate at the calibrated decision, the wrong-track rate, the
false-positive rate on unseen negatives, and the hit rate at one shared
operating point (the threshold that keeps false positives <= 1 % on the
pooled unseen negatives of all conditions), against the targets of the
project. It also reports the enrolment cost (dataset build time and peak
RAM, training time per track, model size) and the scoring speed.

Why the distortions come from other tools. The training data is distorted
by ``audiocopy.training.augment``; testing with that same code would only show that
the model learned our own implementation of "speed" or "phone". Here every
distortion with an effect in a standard tool is made by that tool (sox for
speed, tempo, pitch, reverb and band-pass; ffmpeg's libmp3lame or lame for
MP3), run as a subprocess. Only noise generation and mixing at an exact
signal-to-noise ratio are done with NumPy: an SNR is a ratio of mean powers,
nothing a tool does better.

Steps, each cached under ``--work`` (rerunning skips what is complete, so an
interrupted run resumes; delete a step's output to redo it)::

    WORK/config.json                   settings the folder was made with
    WORK/catalog|wrong|unseen/         symlinks into the corpus (the split)
    WORK/queries/<condition>/*.wav     distorted 2.5 s queries
    WORK/queries/truth.tsv             file, expected track id (empty = negative), condition
    WORK/dataset/, WORK/db/            training dataset and recognizer database
    WORK/timings.json                  wall time and peak RAM of dataset and training
    WORK/detections.json               one answer per query (tied to the database's content)
    WORK/speed.json                    scoring and feature timings (tied to database and machine)
    WORK/results.json                  everything above in one file

Enrolment is what ``audiocopy.training.enroll_cnnbin.enroll(WORK/catalog, WORK/db,
negatives_dir=WORK/wrong, work_dir=WORK/dataset)`` does, but its two steps
run as separate ``audiocopy`` CLI processes so that each one's wall time and
the dataset step's peak memory (including its worker processes) can be
measured.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR
    PYTHONPATH=. .venv/bin/python tools/evaluate.py --corpus CORPUS_DIR --quick --work /tmp/benchquick

``CORPUS_DIR`` holds mono WAV tracks and ``manifest-dev.tsv`` (columns
file, package, version, kind, license, seconds, path). ``--quick`` is a
tiny smoke run (a few tracks, conditions and epochs); its report goes to
``WORK/benchmarks.md`` unless ``--doc`` says otherwise, so it never
overwrites real figures.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import logging
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    BenchError,
    busy_cores,
    clone_db,
    generic_corpus,
    machine_info,
    median_ms,
    read_json,
    run_measured,
    update_section,
    write_json,
)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: the package lives beside tools/
    sys.path.insert(0, str(REPO))

log = logging.getLogger("evaluate")

#: Length of every query, in seconds (the product's promise).
FRAGMENT_SECONDS = 2.5
#: Fragments never start or end within this many seconds of a track's ends
#: (fade-ins, silence and count-ins are not what users play to the recognizer).
EDGE_SECONDS = 1.0
#: Audio before the fragment fed to the reverb, so the fragment starts with a
#: room already ringing, as a real recording would.
REVERB_PREROLL_SECONDS = 0.5
#: Queries per recognizer call: all are exactly one window, so they batch.
IDENTIFY_BATCH = 64
#: Operating point of the "hit at FP <= x" column.
MAX_FPR = 0.01
MANIFEST = "manifest-dev.tsv"
SECTION_NAME = "cnnbin"
SECTION_TITLE = "## cnnbin accuracy and speed (offline core)"
INSTALL_HINT = "apt-get install sox libsox-fmt-all lame ffmpeg"


# ---------------------------------------------------------------------------
# Test conditions


@dataclass(frozen=True)
class Condition:
    """One distortion applied to queries.

    kind: clean | noise | music | speed | tempo | pitch | mp3 | phone.
    value: SNR in dB (noise, music), factor (speed, tempo), semitones (pitch),
        bit rate in kbit/s (mp3); None otherwise.
    """

    name: str
    kind: str
    value: float | None
    label: str

    @property
    def source_factor(self) -> float:
        """Source length / query length: speed and tempo shorten their input."""
        return float(self.value) if self.kind in ("speed", "tempo") else 1.0


CONDITIONS = [
    Condition("clean", "clean", None, "clean"),
    Condition("noise-10db", "noise", 10, "white noise, 10 dB SNR"),
    Condition("noise-5db", "noise", 5, "white noise, 5 dB SNR"),
    Condition("noise-0db", "noise", 0, "white noise, 0 dB SNR"),
    Condition("music-5db", "music", 5, "other music, 5 dB SNR"),
    Condition("speed-0.90", "speed", 0.90, "speed ×0.90 (pitch+tempo)"),
    Condition("speed-0.95", "speed", 0.95, "speed ×0.95 (pitch+tempo)"),
    Condition("speed-1.05", "speed", 1.05, "speed ×1.05 (pitch+tempo)"),
    Condition("speed-1.10", "speed", 1.10, "speed ×1.10 (pitch+tempo)"),
    Condition("tempo-0.90", "tempo", 0.90, "tempo ×0.90"),
    Condition("tempo-1.10", "tempo", 1.10, "tempo ×1.10"),
    Condition("pitch-2", "pitch", -2, "pitch −2 semitones"),
    Condition("pitch-1", "pitch", -1, "pitch −1 semitone"),
    Condition("pitch+1", "pitch", 1, "pitch +1 semitone"),
    Condition("pitch+2", "pitch", 2, "pitch +2 semitones"),
    Condition("mp3-64k", "mp3", 64, "MP3 64 kbit/s"),
    Condition("phone", "phone", 10, "phone (reverb, 300–3400 Hz, pink noise 10 dB)"),
]
CONDITION_BY_NAME = {c.name: c for c in CONDITIONS}
#: The --quick subset: every distortion code path once, and one complete group.
QUICK_CONDITIONS = ["clean", "noise-5db", "music-5db", "speed-0.95", "speed-1.05", "tempo-1.10",
                    "pitch-2", "mp3-64k", "phone"]

#: Rows that pool several conditions (label, members).
GROUPS = [
    ("speed ±5 %", ["speed-0.95", "speed-1.05"]),
    ("speed ±10 %", ["speed-0.90", "speed-1.10"]),
    ("pitch ±2 semitones", ["pitch-2", "pitch+2"]),
    ("tempo ±10 %", ["tempo-0.90", "tempo-1.10"]),
]
#: The project's targets: minimum hit % at FP <= 1 %, per condition or group row.
TARGETS = {
    "clean": 95.0,
    "speed ±5 %": 90.0,
    "speed ±10 %": 80.0,
    "pitch ±2 semitones": 80.0,
    "tempo ±10 %": 85.0,
    "noise-5db": 70.0,
    "phone": 70.0,
}


# ---------------------------------------------------------------------------
# Small helpers


def rng_for(seed: int, *parts) -> np.random.Generator:
    """A generator seeded from the run seed and a description of its use.

    Hashing the description (instead of drawing from one shared stream)
    keeps every query's randomness independent of how many other queries
    exist, so adding a condition or a track leaves the others unchanged.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return np.random.default_rng(int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:16], 16))


def fmt(value, digits: int = 1) -> str:
    """A number for a table cell; an en dash when there is none."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------------------
# External tools


@dataclass(frozen=True)
class Tools:
    sox: str
    mp3: str  # "ffmpeg" (libmp3lame inside ffmpeg) or "lame"
    ffmpeg: str | None
    lame: str | None
    versions: dict


def check_tools() -> Tools:
    """Find sox and an MP3 encoder, or fail with the command that installs them."""
    sox, ffmpeg, lame = shutil.which("sox"), shutil.which("ffmpeg"), shutil.which("lame")
    ffmpeg_mp3 = False
    if ffmpeg:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
        ffmpeg_mp3 = "libmp3lame" in out
    missing = []
    if not sox:
        missing.append("sox")
    if not ffmpeg_mp3 and not lame:
        missing.append("an MP3 encoder (ffmpeg with libmp3lame, or lame)")
    if missing:
        raise BenchError(f"missing {' and '.join(missing)}; the queries are distorted with these tools. "
                         f"Install them: {INSTALL_HINT}")
    mp3 = "ffmpeg" if ffmpeg_mp3 else "lame"
    versions = {"sox": _first_line([sox, "--version"]),
                mp3: _first_line([ffmpeg, "-version"] if ffmpeg_mp3 else [lame, "--version"])}
    return Tools(sox, mp3, ffmpeg, lame, versions)


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    if not text:
        return "?"
    # "/usr/bin/sox:  SoX v14.4.2", "ffmpeg version 5.1 Copyright ...": keep name and version only.
    return re.sub(r"\s+Copyright.*", "", text[0].split(":", 1)[-1] if text[0].startswith("/") else text[0]).strip()


def _run(cmd: list[str], data: bytes | None = None) -> bytes:
    """Run a tool, feeding ``data`` on stdin; its stdout, or an error naming the command."""
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


def sox_effect(tools: Tools, signal: np.ndarray, sample_rate: int, effects: list[str]) -> np.ndarray:
    """Apply sox effects to a mono float32 signal through pipes (no temporary files)."""
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(sample_rate)]
    # Output rate is pinned: after `speed`, sox resamples back to it by itself.
    out = _run([tools.sox, "-V1", *raw, "-", *raw, "-", *effects], signal.astype(np.float32).tobytes())
    return np.frombuffer(out, dtype=np.float32).copy()


def mp3_roundtrip(tools: Tools, signal: np.ndarray, sample_rate: int, kbps: int, tmp_dir: Path) -> np.ndarray:
    """Encode to MP3 and decode back.

    The MP3 goes to a real file, not a pipe: only a seekable output gets the
    LAME header with the encoder delay, which lets the decoder return
    sample-aligned audio instead of a shifted one.
    """
    import soundfile as sf

    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        mp3 = Path(tmp) / "q.mp3"
        if tools.mp3 == "ffmpeg":
            _run([tools.ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1",
                  "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", f"{kbps}k", str(mp3)],
                 signal.astype(np.float32).tobytes())
            out = _run([tools.ffmpeg, "-v", "error", "-i", str(mp3), "-f", "f32le", "-ac", "1",
                        "-ar", str(sample_rate), "pipe:1"])
            return np.frombuffer(out, dtype=np.float32).copy()
        pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
        _run([tools.lame, "--quiet", "-r", "-s", f"{sample_rate / 1000:g}", "--signed", "--bitwidth", "16",
              "--little-endian", "-m", "m", "-b", str(kbps), "-", str(mp3)], pcm)
        wav = Path(tmp) / "q.wav"
        _run([tools.lame, "--quiet", "--decode", str(mp3), str(wav)])
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        if rate != sample_rate:
            raise RuntimeError(f"lame decoded at {rate} Hz instead of {sample_rate} Hz")
        return data.mean(axis=1)


# ---------------------------------------------------------------------------
# Corpus and split


def read_corpus(corpus: Path) -> list[dict]:
    """Rows of the corpus manifest whose WAV exists, with duration and rate."""
    import soundfile as sf

    path = corpus / MANIFEST
    if not path.is_file():
        raise BenchError(f"{path} not found: --corpus must be a folder of WAV tracks with {MANIFEST}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "file" not in rows[0]:
        raise BenchError(f"{path} has no 'file' column")
    tracks, missing = [], []
    for row in rows:
        wav = corpus / row["file"]
        if not wav.is_file():
            missing.append(row["file"])
            continue
        info = sf.info(str(wav))
        tracks.append({**row, "id": Path(row["file"]).stem, "wav": str(wav.resolve()),
                       "rate": info.samplerate, "channels": info.channels, "duration": info.frames / info.samplerate})
    if missing:
        raise BenchError(f"{len(missing)} files of {path} are missing, e.g. {missing[:3]}")
    rates = sorted({t["rate"] for t in tracks})
    if len(rates) != 1:
        raise BenchError(f"the corpus mixes sample rates {rates}; convert it to one rate first")
    return sorted(tracks, key=lambda t: t["file"])


def make_split(tracks: list[dict], *, seed: int, n_catalog: int, n_wrong: int, n_unseen: int) -> dict:
    """Deterministic split of track ids into catalog, wrong, unseen and spare."""
    need = n_catalog + n_wrong + n_unseen
    if len(tracks) < need:
        raise BenchError(f"the corpus has {len(tracks)} tracks; the split needs {need}")
    ids = [t["id"] for t in tracks]  # sorted by file name, so the order does not depend on the file system
    order = rng_for(seed, "split").permutation(len(ids))
    shuffled = [ids[i] for i in order]
    return {
        "catalog": sorted(shuffled[:n_catalog]),
        "wrong": sorted(shuffled[n_catalog:n_catalog + n_wrong]),
        "unseen": sorted(shuffled[n_catalog + n_wrong:need]),
        "spare": sorted(shuffled[need:]),
    }


def lay_out_split(work: Path, split: dict, by_id: dict) -> None:
    """Symlink each role's tracks into WORK/<role>/ (the folders enrolment reads)."""
    for role in ("catalog", "wrong", "unseen"):
        folder = work / role
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {Path(by_id[t]["wav"]).name: by_id[t]["wav"] for t in split[role]}
        for link in folder.iterdir():
            if link.name not in wanted and link.is_symlink():  # only ever remove our own links
                link.unlink()
        for name, target in wanted.items():
            link = folder / name
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to(target)


# ---------------------------------------------------------------------------
# Queries


@dataclass(frozen=True)
class Query:
    """One query file and how to make it."""

    file: str  # relative to WORK/queries
    condition: str
    track: str  # source track id
    expected: str | None  # track id for catalogue tracks, None for unseen negatives
    fragment: int
    offset_s: float
    other: str | None = None  # background track of the "music" condition
    other_offset_s: float | None = None


def plan_queries(split: dict, by_id: dict, *, conditions: list[Condition], k: int, seed: int) -> list[Query]:
    """Every query of the run, fully determined by the split and the seed.

    A track's K fragment offsets are shared by all conditions, so the
    conditions are compared on the same music (a paired design): a
    difference between two rows is the distortion, not the draw.
    """
    longest = FRAGMENT_SECONDS * max(c.source_factor for c in CONDITIONS)
    pool = split["wrong"] + split["unseen"] + split["spare"]  # background music never comes from the catalogue
    queries = []
    for role in ("catalog", "unseen"):
        for track in split[role]:
            duration = by_id[track]["duration"]
            hi = duration - EDGE_SECONDS - longest
            if hi < EDGE_SECONDS:
                raise BenchError(f"track {track} lasts {duration:.1f} s; at least "
                                 f"{2 * EDGE_SECONDS + longest:.1f} s are needed")
            offsets = rng_for(seed, "offsets", track).uniform(EDGE_SECONDS, hi, size=k)
            for j, offset in enumerate(offsets):
                rng = rng_for(seed, "other", track, j)
                others = [t for t in pool if t != track]
                other = others[int(rng.integers(len(others)))]
                other_hi = by_id[other]["duration"] - EDGE_SECONDS - FRAGMENT_SECONDS
                other_offset = float(rng.uniform(EDGE_SECONDS, max(EDGE_SECONDS, other_hi)))
                for cond in conditions:
                    music = cond.kind == "music"
                    queries.append(Query(
                        file=f"{cond.name}/{track}__k{j}.wav", condition=cond.name, track=track,
                        expected=track if role == "catalog" else None, fragment=j, offset_s=round(float(offset), 4),
                        other=other if music else None, other_offset_s=round(other_offset, 4) if music else None))
    return queries


def read_segment(wav: str, start_s: float, seconds: float) -> tuple[np.ndarray, int]:
    """A mono float32 excerpt of a WAV file, read without decoding the rest."""
    import soundfile as sf

    info = sf.info(wav)
    start = int(round(start_s * info.samplerate))
    frames = int(round(seconds * info.samplerate))
    data, rate = sf.read(wav, start=start, frames=frames, dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def fit_length(signal: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Crop or zero-pad to exactly ``n`` samples; also returns how many were padded."""
    if signal.size >= n:
        return signal[:n], 0
    return np.concatenate([signal, np.zeros(n - signal.size, np.float32)]), n - signal.size


def peak_normalise(signal: np.ndarray, peak: float) -> np.ndarray:
    """Scale to the given peak. Features are level-invariant, so only headroom changes."""
    m = float(np.max(np.abs(signal))) if signal.size else 0.0
    return signal if m == 0 else (signal * (peak / m)).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that mean power ratio signal/noise is ``snr_db``."""
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_signal == 0 or p_noise == 0:
        return signal
    gain = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    return (signal + gain * noise).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum (-3 dB per octave)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # no infinite DC gain
    return np.fft.irfft(spectrum / np.sqrt(f), n).astype(np.float32)


def make_query(q: Query, by_id: dict, tools: Tools, out: Path, tmp_dir: Path, seed: int) -> int:
    """Cut, distort and write one query; returns the number of padded samples."""
    from audiocopy.signal.audio import write_wav

    cond = CONDITION_BY_NAME[q.condition]
    wav = by_id[q.track]["wav"]
    rate = by_id[q.track]["rate"]
    n = int(round(FRAGMENT_SECONDS * rate))
    rng = rng_for(seed, "noise", q.file)
    if cond.kind == "phone":
        x, _ = read_segment(wav, q.offset_s - REVERB_PREROLL_SECONDS, FRAGMENT_SECONDS + REVERB_PREROLL_SECONDS)
    else:
        x, _ = read_segment(wav, q.offset_s, FRAGMENT_SECONDS * cond.source_factor)
    # sox works in fixed point: leave headroom so its effects never clip.
    x = peak_normalise(x, 0.3)

    if cond.kind == "clean":
        y = x
    elif cond.kind == "noise":
        y = mix_at_snr(x, rng.standard_normal(x.size).astype(np.float32), cond.value)
    elif cond.kind == "music":
        other, _ = read_segment(by_id[q.other]["wav"], q.other_offset_s, FRAGMENT_SECONDS)
        other, _ = fit_length(other, x.size)
        y = mix_at_snr(x, other, cond.value)
    elif cond.kind == "speed":  # resampling: pitch and tempo change together
        y = sox_effect(tools, x, rate, ["speed", f"{cond.value:g}"])
    elif cond.kind == "tempo":  # time stretch, pitch kept (WSOLA)
        y = sox_effect(tools, x, rate, ["tempo", f"{cond.value:g}"])
    elif cond.kind == "pitch":  # pitch shift, tempo kept; sox takes cents
        y = sox_effect(tools, x, rate, ["pitch", f"{100 * cond.value:g}"])
    elif cond.kind == "mp3":
        y = mp3_roundtrip(tools, x, rate, int(cond.value), tmp_dir)
    elif cond.kind == "phone":
        # A phone held up in a room: the room's reverb, room noise at the
        # microphone (SNR measured there, before the line), then the
        # telephone band 300-3400 Hz.
        y = sox_effect(tools, x, rate, ["reverb", "50", "50", "60"])
        y = y[int(round(REVERB_PREROLL_SECONDS * rate)):]
        y = mix_at_snr(y, pink_noise(y.size, rng), cond.value)
        y = sox_effect(tools, peak_normalise(y, 0.3), rate, ["sinc", "300-3400"])
    else:  # pragma: no cover - CONDITIONS is fixed above
        raise ValueError(cond.kind)
    y, padded = fit_length(y, n)
    path = out / q.file
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, peak_normalise(y, 0.9), rate)
    return padded


def generate_queries(work: Path, queries: list[Query], by_id: dict, tools: Tools, *, seed: int, jobs: int) -> dict:
    """Write every missing query WAV, then truth.tsv; returns timing and padding stats.

    Threads are enough for parallelism: each query's work happens in a sox
    or ffmpeg subprocess, and ``jobs`` threads keep ``jobs`` of them busy.
    """
    from tqdm import tqdm

    out = work / "queries"
    truth = out / "truth.tsv"
    todo = [q for q in queries if not (out / q.file).is_file()]
    stats = {"queries": len(queries), "generated": len(todo), "seconds": 0.0, "max_padded_ms": 0.0}
    if not todo and truth.is_file():
        log.info("queries: all %d exist, skipped", len(queries))
        return stats
    tmp_dir = work / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    max_pad = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(make_query, q, by_id, tools, out, tmp_dir, seed): q for q in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="queries", unit="file"):
            q = futures[fut]
            try:
                padded = fut.result()
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise BenchError(f"making query {q.file} failed: {exc}") from exc
            max_pad = max(max_pad, padded / by_id[q.track]["rate"])
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    stats["max_padded_ms"] = round(1000 * max_pad, 2)
    if max_pad > 0.01:  # a tool returned noticeably less audio than expected
        log.warning("some queries were zero-padded by up to %.1f ms", 1000 * max_pad)
    lines = ["file\texpected\tcondition"] + [f"{q.file}\t{q.expected or ''}\t{q.condition}" for q in queries]
    tmp = truth.with_name("truth.tsv.part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, truth)
    return stats


# ---------------------------------------------------------------------------
# Enrolment, measured


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def dataset_complete(dataset_dir: Path) -> bool:
    manifest = read_json(dataset_dir / "manifest.json", {})
    return bool(manifest.get("complete"))


def training_complete(db: Path, catalog_ids: list[str]) -> bool:
    """Every catalogue track enrolled and the catalogue offset calibrated."""
    from audiocopy.engines import catalog
    from audiocopy.engines.cnnbin import engine as cnnbin

    if not (db / catalog.DB_FILE).is_file():
        return False
    info = catalog.open_db(db)
    return set(catalog_ids) <= cnnbin.enrolled_track_ids(db) and "score_offset" in info.calibration


def db_dir(work: Path, model: str) -> Path:
    """The database of one cnnbin model kind: ``WORK/db`` (embedding) or ``WORK/db-<kind>``.

    Both kinds train on the same dataset and answer the same queries, so one
    work folder holds both and either can be rerun without the other.
    """
    return work / "db" if model == "embedding" else work / f"db-{model}"


def enrol(work: Path, catalog_ids: list[str], *, model: str, jobs: int, dataset_flags: list[str],
          train_flags: list[str]) -> dict:
    """Build the dataset and train the database in two measured child processes."""
    timings_path = work / "timings.json"
    timings = read_json(timings_path, {})
    py = [sys.executable, "-m", "audiocopy.cli"]
    dataset_dir, db = work / "dataset", db_dir(work, model)
    train_key = f"train-{model}"
    if dataset_complete(dataset_dir):
        log.info("dataset: %s is complete, skipped", dataset_dir)
    else:
        resumed = (dataset_dir / "windows").is_dir() and any((dataset_dir / "windows").iterdir())
        timings["dataset"] = {**run_measured(py + ["dataset", "--licensed", str(work / "catalog"),
                                                   "--wrong", str(work / "wrong"), "--out", str(dataset_dir),
                                                   "--jobs", str(jobs), *dataset_flags], child_env()),
                              "resumed": resumed}
        write_json(timings_path, timings)
    if training_complete(db, catalog_ids):
        log.info("train: every catalogue track of %s is trained, skipped", db)
    else:
        from audiocopy.engines.cnnbin import engine as cnnbin

        before = len(cnnbin.enrolled_track_ids(db)) if db.is_dir() else 0
        result = run_measured(py + ["train", "--dataset", str(dataset_dir), "--db", str(db), "--model", model,
                                    *train_flags], child_env())
        trained = len(cnnbin.enrolled_track_ids(db)) - before
        # A rerun that trained nothing (only recalibrated) must not replace the real measurement.
        if trained or train_key not in timings:
            timings[train_key] = {**result, "tracks_trained": trained, "resumed": before > 0,
                                "wall_per_track_s": round(result["wall_s"] / trained, 2) if trained else None}
            write_json(timings_path, timings)
    return timings


def db_stats(db: Path) -> dict:
    """Per-track training seconds and model sizes from the database's files."""
    from audiocopy.engines import catalog

    records = catalog.track_records(db)
    fit = [r["metrics"]["train_seconds"] for r in records if "train_seconds" in r.get("metrics", {})]
    sizes = [(db / catalog.TRACKS_DIR / r["model_file"]).stat().st_size for r in records]
    info = catalog.open_db(db)
    return {
        "tracks": len(records),
        "fit_seconds_mean": round(statistics.mean(fit), 2) if fit else None,
        "fit_seconds_max": round(max(fit), 2) if fit else None,
        "model_kib_mean": round(statistics.mean(sizes) / 1024, 1) if sizes else None,
        "model_kib_max": round(max(sizes) / 1024, 1) if sizes else None,
        "calibration": info.calibration,
    }


def db_signature(db: Path) -> str:
    """Hash of the database's records: a cached answer is only valid for the same models."""
    h = hashlib.sha1()
    for path in [db / "db.json", *sorted((db / "tracks").glob("*.json")), *sorted((db / "tracks").glob("*.keras"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# Identification and metrics


def identify(work: Path, db: Path, queries: list[Query]) -> list[dict]:
    """One answer per query, batched through the recognizer (cached per database)."""
    from tqdm import tqdm

    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.signal.audio import load_audio

    cache_path = work / f"detections-{db.name}.json"
    signature = db_signature(db)
    cache = read_json(cache_path, {})
    files = [q.file for q in queries]
    if cache.get("db") == signature and [r["file"] for r in cache.get("rows", [])] == files:
        log.info("identify: cached answers for %d queries, skipped", len(files))
        return cache["rows"]
    recognizer = Recognizer.open(db)
    n = recognizer.audio.window_samples
    rows = []
    t0 = time.perf_counter()
    with tqdm(total=len(queries), desc="identify", unit="query") as bar:
        for lo in range(0, len(queries), IDENTIFY_BATCH):
            batch = queries[lo:lo + IDENTIFY_BATCH]
            windows = np.stack([fit_length(load_audio(work / "queries" / q.file, params=recognizer.audio), n)[0]
                                for q in batch])
            for q, det in zip(batch, recognizer.detect_windows(windows)):
                rows.append({"file": q.file, "condition": q.condition, "expected": q.expected,
                             "decided": det.track, "top": det.candidates[0].track if det.candidates else None,
                             "score": float(det.score)})
            bar.update(len(batch))
    seconds = time.perf_counter() - t0
    write_json(cache_path, {"db": signature, "seconds": round(seconds, 2), "rows": rows})
    return rows


def accuracy_tables(rows: list[dict], conditions: list[Condition]) -> dict:
    """Per-condition, per-group and overall metrics.

    ``hit``, ``wrong`` and ``fp`` are measured on each row's own queries; the
    ``hit_at_fpr`` threshold comes from the unseen negatives of *all*
    conditions pooled, so every row is read at one operating point.
    """
    from audiocopy.training.evaluate import QueryResult, summarize

    by_cond: dict[str, list] = {c.name: [] for c in conditions}
    for r in rows:
        by_cond[r["condition"]].append(QueryResult(r["expected"], r["decided"], r["top"], r["score"]))
    pooled_negatives = [r for rs in by_cond.values() for r in rs if r.expected is None]

    def row(label: str, members: list[str]) -> dict:
        results = [r for m in members for r in by_cond.get(m, [])]
        own = summarize(results, max_fpr=MAX_FPR)  # fp on this row's negatives
        shared = summarize(results, max_fpr=MAX_FPR, negatives=pooled_negatives)
        target = TARGETS.get(label)
        hit = shared["hit_at_fpr"]
        return {"label": label, "conditions": members, "positives": own["positives"],
                "negatives": own["negatives"], "hit": own["hit"], "wrong": own["wrong"], "fp": own["fp"],
                "hit_at_fpr": hit, "target": target,
                "met": None if target is None or hit is None else hit >= target}

    per_condition = [row(c.name, [c.name]) for c in conditions]
    present = set(by_cond)
    groups = [row(label, [m for m in members if m in present]) for label, members in GROUPS
              if all(m in present for m in members)]
    overall = row("all conditions", [c.name for c in conditions])
    shared = summarize(pooled_negatives, max_fpr=MAX_FPR)
    return {"conditions": per_condition, "groups": groups, "all": overall,
            "pooled_negatives": len(pooled_negatives), "threshold_at_fpr": shared["threshold_at_fpr"]}


# ---------------------------------------------------------------------------
# Speed


def measure_speed(work: Path, db: Path, queries: list[Query]) -> dict:
    """Scoring ms/window for 10 and 100 tracks, and feature extraction ms/window.

    Scoring is ``CnnBinEngine.score`` on ready features: for the embedding
    kind it includes the encoder's ten sub-window embeddings per window
    (measured alone too), for the spectrogram kind the stacked CNNs. The
    10- and 100-track catalogues are timing copies of the trained database
    (``benchlib.clone_db``) under ``WORK/speed``; the cost depends on the
    number and size of the models, not on their weights.
    """
    from audiocopy.engines import catalog
    from audiocopy.engines.cnnbin import engine as cnnbin
    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.features import log_spectrogram
    from audiocopy.signal.xp import device_name, get_xp, to_numpy

    info = catalog.open_db(db)
    records = catalog.track_records(db)
    if not records:
        raise BenchError(f"{db} holds no trained tracks")
    clean = [q for q in queries if q.condition == "clean"] or queries
    n = info.audio.window_samples
    windows = np.stack([fit_length(load_audio(work / "queries" / q.file, params=info.audio), n)[0]
                        for q in clean[:32]])
    windows = np.resize(windows, (32, n)).astype(np.float32)  # repeat when there are fewer than 32
    xp = get_xp()
    feats = np.asarray(to_numpy(log_spectrogram(windows, audio=info.audio, params=info.features, xp=xp)))
    out = {"trained_models": len(records), "feature_device": device_name(xp), "scoring": [], "encoder": []}
    out["features"] = per_batch_ms(lambda b: to_numpy(log_spectrogram(windows[:b], audio=info.audio,
                                                                     params=info.features, xp=xp)))
    speed_dir = work / "speed"
    shutil.rmtree(speed_dir, ignore_errors=True)
    for n_tracks in (10, 100):
        engine = cnnbin.load(clone_db_for_speed(db, speed_dir / f"db{n_tracks}", n_tracks))
        out["kind"] = engine.cnn.kind
        out["scoring"] += per_batch_ms(lambda b: engine.score(feats[:b]), tracks=n_tracks,
                                       repeated=n_tracks > len(records))
    if engine.encoder is not None:
        from audiocopy.engines.cnnbin.stacked_head import embed_query_windows

        out["encoder"] = per_batch_ms(lambda b: embed_query_windows(engine.encoder, feats[:b],
                                                                    hop_frames=engine.cnn.hop_frames))
    shutil.rmtree(speed_dir, ignore_errors=True)
    import tensorflow as tf

    out["tensorflow"] = tf.__version__
    out["tf_devices"] = [d.device_type for d in tf.config.list_physical_devices()]
    return out


def per_batch_ms(fn, **fields) -> list[dict]:
    """Median ms of ``fn(batch)`` for batches of 1 and 32 windows, one row each (with ``fields``)."""
    rows = []
    for batch in (1, 32):
        ms = median_ms(lambda: fn(batch), 50 if batch == 1 else 15)
        rows.append({**fields, "batch": batch, "ms_per_batch": round(ms, 3), "ms_per_window": round(ms / batch, 3)})
    return rows


def clone_db_for_speed(db: Path, dst: Path, n_tracks: int) -> Path:
    """``db`` itself when it has exactly ``n_tracks`` tracks, else a timing copy of that size."""
    from audiocopy.engines import catalog

    if len(catalog.track_records(db)) == n_tracks:
        return db
    clone_db(db, dst, n_tracks)
    return dst


# ---------------------------------------------------------------------------
# Report


def accuracy_markdown(acc: dict) -> list[str]:
    lines = ["| condition | positives | negatives | hit % | wrong % | FP % | hit % at FP ≤ 1 % | target | met |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]

    def line(r, label):
        target = "" if r["target"] is None else f"≥ {r['target']:g}"
        met = "" if r["met"] is None else ("pass" if r["met"] else "**miss**")
        lines.append(f"| {label} | {r['positives']} | {r['negatives']} | {fmt(r['hit'])} | {fmt(r['wrong'])} | "
                     f"{fmt(r['fp'])} | {fmt(r['hit_at_fpr'])} | {target} | {met} |")

    for r in acc["conditions"]:
        line(r, CONDITION_BY_NAME[r["label"]].label)
    for r in acc["groups"]:
        line(r, f"*{r['label']}* ({', '.join(r['conditions'])})")
    line(acc["all"], "**all conditions**")
    return lines


MODEL_TEXT = {
    "embedding": "`--model embedding`: per track, a CNN head over the shipped fingerprint encoder's sub-window "
                 "embeddings (`models.build_track_head`; the encoder was trained on none of the catalogue or "
                 "unseen tracks), initialised from the track's own embeddings, biased by the wrong tracks, "
                 "fine-tuned on the track's augmented windows.",
    "spectrogram": "`--model spectrogram`: per track, the seed's CNN trained from scratch on the log-frequency "
                   "spectrogram (`models.build_track_cnn`).",
}


def render_section(res: dict, other: dict | None = None) -> str:
    """The markdown body of the section (``benchlib.update_section`` adds the markers).

    other: the results of the other track model on the same work folder, if
    it was run; a comparison table is appended.
    """
    cfg, m, split = res["config"], res["machine"], res["split_sizes"]
    acc, speed, tim, dbs = res["accuracy"], res["speed"], res["timings"], res["db"]
    n_cond = len(cfg["conditions"])
    lines = [SECTION_TITLE, "",
             f"Measured on {res['date']} with `tools/evaluate.py`; to reproduce, from the repository root:", "",
             f"    {res['command']}", "",
             f"- **Machine:** {m['cpu']}, {m['cores']} cores, {fmt(m['ram_gib'])} GiB RAM; {m['os']}, "
             f"Python {m['python']}, TensorFlow {speed['tensorflow']} "
             f"(devices: {', '.join(speed['tf_devices'])}), features on {speed['feature_device']}.",
             f"- **Tools for the distortions:** {'; '.join(res['tool_versions'].values())}.",
             f"- **Split** (seed {cfg['seed']}, from {split['corpus']} corpus tracks): "
             f"{split['catalog']} catalogue tracks (enrolled), {split['wrong']} wrong tracks (training "
             f"negatives), {split['unseen']} unseen tracks (negatives never trained on), "
             f"{split['spare']} unused.",
             "- **Track model:** " + MODEL_TEXT.get(res.get("model", "spectrogram"), res.get("model", "?")),
             f"- **Queries:** {cfg['k']} fragment{'s' if cfg['k'] > 1 else ''} of {FRAGMENT_SECONDS:g} s per catalogue and unseen track "
             f"(random offsets, at least {EDGE_SECONDS:g} s from either end, the same offsets in every "
             f"condition) × {n_cond} conditions = {res['queries']['count']} queries. Each is distorted by "
             f"sox or {'ffmpeg (libmp3lame)' if res['mp3_tool'] == 'ffmpeg' else 'lame'}, not by the training "
             f"augmentation code; white/pink noise and other music are mixed at an exact SNR "
             f"(ratio of mean powers). Speed and tempo read {FRAGMENT_SECONDS:g} s × factor of source so "
             f"every query lasts {FRAGMENT_SECONDS:g} s. Other music comes from a non-catalogue track.",
             ]
    if cfg.get("quick"):
        lines.append("- **Quick smoke run** (`--quick`): tiny split, few conditions, short training; "
                     "these figures say nothing about accuracy.")
    lines += ["", "### Accuracy", "",
              "Hit: the decision is the expected track. Wrong: a positive decided as another track. "
              "FP: unseen negatives of that row decided as any track. These three use the calibrated "
              "decision (score > 0). *Hit % at FP ≤ 1 %* counts a positive when its top candidate is "
              "the expected track with a score above one shared threshold, set on the "
              f"**pooled unseen negatives of all conditions** ({acc['pooled_negatives']} queries, "
              f"threshold {fmt(acc['threshold_at_fpr'], 3)}) so that at most 1 % of them pass it: every "
              "row is read at the same operating point. Targets apply to that column.", ""]
    lines += accuracy_markdown(acc)
    ds, tr = tim.get("dataset"), tim.get("train")
    lines += ["", "### Enrolment cost", "", "| measure | value |", "|---|---|"]
    if ds:
        lines.append(f"| dataset build wall time ({cfg['jobs']} worker processes) | {ds['wall_s']:.0f} s"
                     f"{' (resumed run: partial)' if ds.get('resumed') else ''} |")
        lines.append(f"| dataset build peak RAM, largest process | {ds['peak_process_mib']:.0f} MiB |")
        lines.append(f"| dataset build peak RAM, whole process tree (sampled every 0.2 s) | "
                     f"{ds['peak_tree_mib']:.0f} MiB |")
    else:
        lines.append("| dataset build | not measured (dataset reused) |")
    if tr:
        lines.append(f"| training wall time | {tr['wall_s']:.0f} s for {tr['tracks_trained']} tracks"
                     f"{' (resumed run: partial)' if tr.get('resumed') else ''} |")
        lines.append(f"| training wall time per track (incl. start-up and catalogue calibration) | "
                     f"{fmt(tr['wall_per_track_s'])} s |")
        lines.append(f"| training peak RAM | {tr['peak_process_mib']:.0f} MiB |")
    else:
        lines.append("| training | not measured (database reused) |")
    lines.append(f"| fitting time per track (`metrics.train_seconds`), mean / max | "
                 f"{fmt(dbs['fit_seconds_mean'])} / {fmt(dbs['fit_seconds_max'])} s |")
    lines.append(f"| model size per track (`.keras`), mean / max | {fmt(dbs['model_kib_mean'])} / "
                 f"{fmt(dbs['model_kib_max'])} KiB |")
    lines.append(f"| enrolment settings | {cfg['enrol_settings']} |")
    lines += ["", "### Scoring speed", "",
              "Median of repeated calls after a warm-up, in one process using all cores. Scoring is "
              "`CnnBinEngine.score` on ready features: "
              + ("the encoder's ten sub-window embeddings per window, then all track heads in one pass "
                 "(`StackedHeads`)" if speed.get("kind") == "embedding" else
                 "the stacked forward pass of all track CNNs (`StackedCnn`)")
              + "; feature extraction is `features.log_spectrogram` on 2.5 s windows. Cores kept busy by other "
              f"processes just before timing: {fmt(speed.get('busy_cores_before'), 2)}.", "",
              "| step | tracks | batch | ms per batch | ms per window |", "|---|---:|---:|---:|---:|"]
    for f in speed["features"]:
        lines.append(f"| feature extraction | – | {f['batch']} | {f['ms_per_batch']:.2f} | {f['ms_per_window']:.2f} |")
    for s in speed["scoring"]:
        lines.append(f"| scoring | {s['tracks']}{'*' if s['repeated'] else ''} | {s['batch']} | "
                     f"{s['ms_per_batch']:.2f} | {s['ms_per_window']:.2f} |")
    for e in speed.get("encoder", []):
        lines.append(f"| encoder embeddings alone (part of scoring, any number of tracks) | – | {e['batch']} | "
                     f"{e['ms_per_batch']:.2f} | {e['ms_per_window']:.2f} |")
    if any(s["repeated"] for s in speed["scoring"]):
        lines += ["", f"\\* Only {speed['trained_models']} models were trained: the timing catalogue repeats them "
                      "(`benchlib.clone_db`) to reach "
                      "that many tracks (the cost depends on the number and size of the models, not on their weights)."]
    if other:
        lines += ["", *comparison_markdown(res, other)]
    lines += ["", f"Raw results: `{res['results_file']}`."]
    return "\n".join(lines) + "\n"


def comparison_markdown(res: dict, other: dict) -> list[str]:
    """Both cnnbin track models side by side, from this run and the other kind's last run."""
    kinds = [res.get("model", "spectrogram"), other.get("model", "spectrogram")]
    rows_of = [{r["label"]: r for r in (x["accuracy"]["conditions"] + x["accuracy"]["groups"]
                                         + [x["accuracy"]["all"]])} for x in (res, other)]
    lines = ["### Both track models on the same queries", "",
             f"`--model {kinds[1]}` measured on {other['date']} (`{Path(other['results_file']).with_name('results-' + kinds[1] + '.json')}`), "
             f"same split, queries and dataset (to reproduce: the command above with `--model {kinds[1]}`); "
             "hit % at FP ≤ 1 % on the unseen negatives:", "",
             f"| condition | {kinds[0]} | {kinds[1]} | target |", "|---|---:|---:|---:|"]
    for label, r in rows_of[0].items():
        o = rows_of[1].get(label, {})
        target = "" if r["target"] is None else f"≥ {r['target']:g}"
        name = CONDITION_BY_NAME[label].label if label in CONDITION_BY_NAME else label
        lines.append(f"| {name} | {fmt(r['hit_at_fpr'])} | {fmt(o.get('hit_at_fpr'))} | {target} |")
    costs = []
    for x in (res, other):
        tr, db = x["timings"].get("train") or {}, x["db"]
        score = next((s["ms_per_window"] for s in x["speed"]["scoring"] if s["tracks"] == 100 and s["batch"] == 32),
                     None)
        costs.append((tr.get("wall_per_track_s"), db.get("model_kib_mean"), score))
    lines += ["", f"| cost | {kinds[0]} | {kinds[1]} |", "|---|---:|---:|",
              f"| training wall time per track, s | {fmt(costs[0][0])} | {fmt(costs[1][0])} |",
              f"| model size per track, mean KiB | {fmt(costs[0][1])} | {fmt(costs[1][1])} |",
              f"| scoring 100 tracks, batch 32, ms per window | {fmt(costs[0][2], 2)} | {fmt(costs[1][2], 2)} |"]
    return lines


# ---------------------------------------------------------------------------
# Main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Accuracy/speed benchmark: split a corpus, make distorted queries, "
                                            "enrol the catalogue, identify, and write docs/benchmarks.md.")
    p.add_argument("--corpus", required=True, type=Path, help=f"folder of WAV tracks with {MANIFEST}")
    p.add_argument("--work", type=Path, default=Path("data/bench"), help="folder for all intermediate files "
                   "(default data/bench); every step found complete there is skipped")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, offsets and noise (default 0)")
    p.add_argument("--catalog", type=int, default=50, help="catalogue tracks (default 50)")
    p.add_argument("--wrong", type=int, default=100, help="wrong tracks, training negatives (default 100)")
    p.add_argument("--unseen", type=int, default=30, help="unseen negative tracks, never trained on (default 30)")
    p.add_argument("--k", type=int, default=3, help="fragments per catalogue/unseen track (default 3)")
    p.add_argument("--engine", default="cnnbin", choices=["cnnbin"], help="recognition engine (only cnnbin)")
    p.add_argument("--model", default="embedding", choices=["embedding", "spectrogram"],
                   help="cnnbin track model (default embedding); each kind has its own database in WORK")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes for queries and dataset (default 2)")
    p.add_argument("--skip-train", action="store_true", help="reuse WORK/db as it is (no dataset or training)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 5 catalogue, 10 wrong, 5 unseen tracks, K=1, a few conditions, "
                        "60 positives and 8 wrong windows per track, 3 epochs")
    p.add_argument("--doc", type=Path, default=None,
                   help="markdown file to update (default docs/benchmarks.md; WORK/benchmarks.md with --quick)")
    p.add_argument("--stop-after", choices=["queries", "enrol", "identify"],
                   help="stop after this step (e.g. make the queries on one machine, train on another)")
    args = p.parse_args(argv)
    if args.quick:
        args.catalog, args.wrong, args.unseen, args.k = 5, 10, 5, 1
    for name in ("catalog", "wrong", "unseen", "k", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def settings(args, tracks: list[dict]) -> dict:
    """What the work folder's contents depend on (compared on every rerun)."""
    dataset_flags = ["--positives", "60", "--wrong-windows", "8"] if args.quick else []
    train_flags = ["--epochs", "3"] if args.quick else []
    return {
        "corpus": str(args.corpus.resolve()), "corpus_tracks": len(tracks), "seed": args.seed,
        "catalog": args.catalog, "wrong": args.wrong, "unseen": args.unseen, "k": args.k,
        "engine": args.engine, "quick": args.quick,
        "conditions": QUICK_CONDITIONS if args.quick else [c.name for c in CONDITIONS],
        "dataset_flags": dataset_flags, "train_flags": train_flags,
    }


def check_work(work: Path, cfg: dict) -> None:
    path = work / "config.json"
    old = read_json(path)
    if old is not None and old != cfg:
        diffs = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
        raise BenchError(f"{work} was made with other settings ({', '.join(diffs)}); "
                         "delete it or choose another --work")
    write_json(path, cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return run(args, argv)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def run(args, argv) -> int:
    work = args.work
    tools = check_tools()
    tracks = read_corpus(args.corpus)
    by_id = {t["id"]: t for t in tracks}
    cfg = settings(args, tracks)
    split = make_split(tracks, seed=args.seed, n_catalog=args.catalog, n_wrong=args.wrong, n_unseen=args.unseen)
    work.mkdir(parents=True, exist_ok=True)
    check_work(work, cfg)
    write_json(work / "split.json", split)
    lay_out_split(work, split, by_id)
    log.info("split: %s", ", ".join(f"{k} {len(v)}" for k, v in split.items()))

    conditions = [CONDITION_BY_NAME[c] for c in cfg["conditions"]]
    queries = plan_queries(split, by_id, conditions=conditions, k=args.k, seed=args.seed)
    gen = generate_queries(work, queries, by_id, tools, seed=args.seed, jobs=args.jobs)
    if gen["generated"]:
        log.info("queries: made %d of %d in %.1f s", gen["generated"], gen["queries"], gen["seconds"])
    if args.stop_after == "queries":
        return 0

    db = db_dir(work, args.model)
    if args.skip_train:
        if not (db / "db.json").is_file():
            raise BenchError(f"--skip-train needs a trained database in {db}")
        timings = read_json(work / "timings.json", {})
    else:
        timings = enrol(work, split["catalog"], model=args.model, jobs=args.jobs,
                        dataset_flags=cfg["dataset_flags"], train_flags=cfg["train_flags"])
    if args.stop_after == "enrol":
        return 0

    rows = identify(work, db, queries)
    acc = accuracy_tables(rows, conditions)
    if args.stop_after == "identify":
        return 0

    machine = machine_info()
    busy = busy_cores()
    if busy is not None and busy > 0.25:  # other work on the machine inflates every timing
        log.warning("other processes keep %.2f cores busy: speed figures will be pessimistic", busy)
    speed_path = work / f"speed-{db.name}.json"
    speed_key = {"db": db_signature(db), "machine": machine}
    cached = read_json(speed_path, {})
    if cached.get("key") == speed_key:
        log.info("speed: cached, skipped")
        speed = cached["speed"]
    else:
        speed = {**measure_speed(work, db, queries), "busy_cores_before": busy}
        write_json(speed_path, {"key": speed_key, "speed": speed})

    doc = args.doc or (work / "benchmarks.md" if args.quick else REPO / "docs" / "benchmarks.md")
    # Reproducing means training too: --skip-train only reuses models already on this machine.
    command = shlex.join(["PYTHONPATH=.", ".venv/bin/python", "tools/evaluate.py",
                          *generic_corpus([a for a in (sys.argv[1:] if argv is None else argv)
                                           if a != "--skip-train"])])
    settings_text = ("dataset CLI defaults" if not cfg["dataset_flags"] else "dataset " + " ".join(cfg["dataset_flags"]))
    settings_text += ", " + ("training CLI defaults" if not cfg["train_flags"] else "train " + " ".join(cfg["train_flags"]))
    results = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": {**cfg, "jobs": args.jobs, "enrol_settings": settings_text},
        "machine": machine,
        "tool_versions": tools.versions,
        "mp3_tool": tools.mp3,
        "split_sizes": {"corpus": len(tracks), **{k: len(v) for k, v in split.items()}},
        "split": split,
        "queries": {"count": len(queries), "generation": gen},
        "model": args.model,
        "timings": {"dataset": timings.get("dataset"), "train": timings.get(f"train-{args.model}")},
        "db": db_stats(db),
        "accuracy": acc,
        "speed": speed,
        "results_file": str(work / "results.json"),
        "answers": rows,
    }
    write_json(work / "results.json", results)
    write_json(work / f"results-{args.model}.json", {**results, "results_file": str(work / f"results-{args.model}.json")})
    other = read_json(work / f"results-{'spectrogram' if args.model == 'embedding' else 'embedding'}.json")
    section = render_section(results, other)
    update_section(doc, SECTION_NAME, section)
    print(section)
    print(f"wrote {doc} and {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
