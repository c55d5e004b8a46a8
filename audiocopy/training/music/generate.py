"""Generate a corpus of synthetic music tracks with a manifest (resumable, parallel).

Place in the pipeline: produces WAV training tracks for the encoder
(``tools/train_encoder.py --corpus``) alongside the dev corpus. Offline
only; nothing here is used at serve time.

Ideas. Track ``i`` of a corpus depends only on the corpus ``seed``, ``i``
and the settings: its style (styles are dealt in shuffled rounds so every
style gets its share), composition seed, length, renderer (fluidsynth with
one of the installed soundfonts, or the NumPy synthesiser for a
``synth_share`` of tracks) and mixing choices. So a corpus can be extended
with more tracks, resumed after an interruption (finished files are
skipped) or rebuilt bit-for-bit on a machine with the same soundfonts. The
manifest records the settings, including every soundfont's sha256; a
folder whose manifest has other settings is refused rather than mixed.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import render, synth
from .compose import compose
from .errors import BadSetting, ManifestMismatch, OutputError, RendererUnavailable
from .styles import STYLES

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"
MANIFEST = "manifest.json"
SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Settings:
    """What determines a corpus's tracks (the manifest's ``settings`` record)."""

    seed: int
    seconds_range: tuple[float, float]
    styles: tuple[str, ...]
    synth_share: float
    sample_rate: int
    soundfonts: tuple[render.SoundFont, ...]
    version: str = GENERATOR_VERSION

    def record(self) -> dict:
        return {"seed": self.seed, "seconds_range": list(self.seconds_range), "styles": list(self.styles),
                "synth_share": self.synth_share, "sample_rate": self.sample_rate, "version": self.version,
                "soundfonts": [sf.record() for sf in self.soundfonts]}


@dataclass(frozen=True)
class TrackPlan:
    """Everything needed to make track ``index``: style, composition seed, length, renderer, soundfont."""

    index: int
    track_id: str
    style: str
    comp_seed: int
    seconds: float
    renderer: str
    soundfont: int | None
    fluid: render.FluidSettings | None
    finish_seed: int


def plan_track(settings: Settings, index: int) -> TrackPlan:
    """The deterministic plan of track ``index`` (0-based) of a corpus with ``settings``."""
    rounds = random.Random(f"audiocopy-gen:styles:{settings.seed}:{index // len(settings.styles)}")
    order = list(settings.styles)
    rounds.shuffle(order)
    style = order[index % len(order)]
    rng = random.Random(f"audiocopy-gen:track:{settings.seed}:{index}")
    comp_seed = rng.getrandbits(40)
    seconds = round(rng.uniform(*settings.seconds_range), 2)
    use_synth = not settings.soundfonts or rng.random() < settings.synth_share
    soundfont = None if use_synth else rng.randrange(len(settings.soundfonts))
    fluid = None if use_synth else render.random_fluid_settings(rng)
    return TrackPlan(index, f"gen-{settings.seed}-{index:05d}-{style}", style, comp_seed, seconds,
                     "numpy" if use_synth else "fluidsynth", soundfont, fluid, rng.getrandbits(32))


def make_track(settings: Settings, plan: TrackPlan, out_dir: str) -> dict:
    """Compose, render and write one track; returns its manifest record. Runs in worker processes."""
    import numpy as np
    import soundfile as sf

    started = time.perf_counter()
    comp = compose(plan.style, plan.comp_seed, plan.seconds)
    if plan.renderer == "numpy":
        audio, font = synth.render(comp, settings.sample_rate, seed=plan.finish_seed), None
    else:
        font = settings.soundfonts[plan.soundfont]
        audio = render.render_fluidsynth(comp, font, plan.fluid, settings.sample_rate)
    audio = render.finish(audio, settings.sample_rate, random.Random(plan.finish_seed))
    path = Path(out_dir) / f"{plan.track_id}.wav"
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".wav", dir=out_dir)
    os.close(fd)
    sf.write(tmp, audio, settings.sample_rate, subtype="PCM_16")
    os.replace(tmp, path)
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return {"file": path.name, "id": plan.track_id, "index": plan.index, "style": plan.style,
            "seed": plan.comp_seed, "target_seconds": plan.seconds,
            "duration": round(len(audio) / settings.sample_rate, 3),
            "tempo": round(comp.tempo, 2), "meter": f"{comp.meter[0]}/{comp.meter[1]}", "key": comp.key,
            "keys": [f"{k.beat:g}:{k.tonic}:{k.mode}" for k in comp.keys],
            "form": [f"{s.name}:{s.bars}" for s in comp.sections],
            "programs": {p.role: p.program for p in comp.parts}, "renderer": plan.renderer,
            "soundfont": font.record() if font else None, "fluidsynth": asdict(plan.fluid) if plan.fluid else None,
            "rms_dbfs": round(20 * math.log10(max(rms, 1e-9)), 2),
            "render_seconds": round(time.perf_counter() - started, 2)}


def _validate(n_tracks, seconds_range, styles, jobs, synth_share) -> tuple[tuple[float, float], tuple[str, ...]]:
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, int) or n_tracks <= 0:
        raise BadSetting(f"n_tracks must be a positive integer, got {n_tracks!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs <= 0:
        raise BadSetting(f"jobs must be a positive integer, got {jobs!r}")
    try:
        low, high = (float(s) for s in seconds_range)
    except (TypeError, ValueError) as exc:
        raise BadSetting(f"seconds_range must be two numbers (min, max), got {seconds_range!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high) and 1.0 <= low <= high <= 1800.0):
        raise BadSetting(f"seconds_range must satisfy 1 <= min <= max <= 1800 seconds, got ({low:g}, {high:g})")
    names = tuple(STYLES) if styles is None else tuple(styles)
    if not names:
        raise BadSetting("styles is empty; give None for all styles or some of: " + ", ".join(STYLES))
    unknown = [s for s in names if s not in STYLES]
    if unknown:
        raise BadSetting(f"unknown style(s) {', '.join(map(repr, unknown))}; known styles: {', '.join(STYLES)}")
    if not 0.0 <= synth_share <= 1.0:
        raise BadSetting(f"synth_share must be between 0 and 1, got {synth_share!r}")
    return (low, high), tuple(dict.fromkeys(names))


def _prepare_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from exc


def _load_manifest(out_dir: Path, settings: Settings) -> dict[int, dict]:
    """Records of tracks already made with the same settings (file present); refuses other settings."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestMismatch(f"{path} is unreadable ({exc}); remove it or use another folder") from exc
    if old.get("settings") != settings.record():
        theirs, ours = old.get("settings") or {}, settings.record()
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ManifestMismatch(f"{out_dir} holds a corpus generated with other settings (differs in: "
                               f"{', '.join(diff)}); use another --out folder or the same settings")
    return {t["index"]: t for t in old.get("tracks", []) if (out_dir / t["file"]).exists()}


def _write_manifest(out_dir: Path, settings: Settings, records: dict[int, dict]) -> dict:
    tracks = [records[i] for i in sorted(records)]
    ids = sorted(t["id"] for t in tracks)
    manifest = {"generator": "audiocopy.training.music", "version": GENERATOR_VERSION, "settings": settings.record(),
                "track_count": len(tracks), "total_seconds": round(sum(t["duration"] for t in tracks), 2),
                "track_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "tracks": tracks}
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=out_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(tmp, out_dir / MANIFEST)
    return manifest


def generate_corpus(out_dir, *, n_tracks: int, seed: int, seconds_range=(60, 180), styles=None,
                    jobs: int | None = None, progress: bool = True, synth_share: float = 0.2) -> dict:
    """Write ``n_tracks`` synthetic tracks and ``manifest.json`` into ``out_dir``; returns the manifest.

    Args:
        out_dir: folder (created if missing) for ``gen-<seed>-<index>-<style>.wav`` files
            (22050 Hz mono 16-bit) and ``manifest.json``.
        n_tracks: how many tracks the corpus should have (tracks already there are kept).
        seed: corpus seed; with the settings below it determines every track.
        seconds_range: (min, max) track length in seconds, each track's drawn uniformly.
        styles: style names (see ``styles.STYLES``), None for all.
        jobs: worker processes (default: all CPU cores).
        progress: show a tqdm progress bar on stderr.
        synth_share: fraction of tracks played by the NumPy synthesiser instead of fluidsynth.
    Raises ``BadSetting``, ``OutputError``, ``RendererUnavailable`` (fluidsynth or soundfonts
    missing while needed, or rendering failed) and ``ManifestMismatch``. Run one generator per
    folder at a time.
    """
    seconds_range, names = _validate(n_tracks, seconds_range, styles, 1 if jobs is None else jobs, synth_share)
    out_dir = Path(out_dir)
    _prepare_dir(out_dir)
    fonts = render.find_soundfonts() if synth_share < 1.0 else ()
    if synth_share < 1.0 and (render.fluidsynth_path() is None or not fonts):
        raise RendererUnavailable("rendering needs the fluidsynth command and a General MIDI soundfont "
                                  "(apt-get install fluidsynth fluid-soundfont-gm), or synth_share=1.0")
    settings = Settings(int(seed), seconds_range, names, float(synth_share), SAMPLE_RATE, fonts)
    records = _load_manifest(out_dir, settings)
    for stale in out_dir.glob(".part-*.wav"):
        # Left by an interrupted run (files are renamed into place only when complete).
        stale.unlink()
    todo = [plan_track(settings, i) for i in range(n_tracks) if i not in records]
    log.info("%d tracks in %s, %d to make with %d job(s)", n_tracks, out_dir, len(todo), jobs or os.cpu_count())
    _run(settings, todo, out_dir, records, jobs or os.cpu_count() or 1, progress)
    return _write_manifest(out_dir, settings, records)


def _run(settings: Settings, todo: list[TrackPlan], out_dir: Path, records: dict[int, dict], jobs: int,
         progress: bool) -> None:
    """Make the planned tracks (in a spawn process pool when jobs > 1), saving the manifest after each."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="track", disable=not progress, desc="generating")

    def done(record: dict) -> None:
        records[record["index"]] = record
        _write_manifest(out_dir, settings, records)
        log.info("made %s (%s, %.0f s, %s) in %.1f s", record["file"], record["style"], record["duration"],
                 record["renderer"], record["render_seconds"])
        bar.update(1)

    try:
        if jobs == 1 or len(todo) <= 1:
            for plan in todo:
                done(make_track(settings, plan, str(out_dir)))
            return
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(make_track, settings, plan, str(out_dir)) for plan in todo]
            try:
                for future in concurrent.futures.as_completed(futures):
                    done(future.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()
