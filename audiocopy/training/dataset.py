"""Training dataset: augmented feature windows of licensed and wrong tracks.

Place in the pipeline: the offline side. It reads ``data/audio/wav_licensed``
(one track per file, track id = file stem) and ``data/audio/wav_wrong``
(music that is *not* in the catalogue), draws distorted 2.5 s windows with
``augment.random_distortion``, turns them into features with
``features.log_spectrogram`` and stores them on disk. Training then reads
them back without recomputing any audio.

Layout (``OUT/``)::

    manifest.json        parameters + one entry per source track
    windows/<name>.npy   (n, frames, bands) float16 features of one source

One file per source is the shard: building holds one source in memory at a
time (peak RAM stays far below 1 GB whatever the number of tracks), a crash
loses at most the source in progress, and a rerun skips every source whose
file is complete. Features are stored as float16: they are standardised to
unit variance, so half precision keeps ~3 decimal digits, more than the
augmentation noise, at half the disk and I/O.

Roles and splits:

* ``licensed``: positives of their own track and negatives for every other.
* ``wrong`` / ``train``: negatives for every track.
* ``wrong`` / ``calibration``: about a fifth of the wrong tracks, chosen by a
  hash, that no model ever trains on. Each track's threshold is calibrated
  on them, so the false-positive rate it promises was measured on music the
  model has never seen. Where the ids name groups (``GROUP__TRACK``), whole
  groups are held out (``sources.calibration_holdout``): music of a group
  the models trained against is easier to reject than music they never met.
  The share is the hold-out rule's (``sources.holdout_tracks``), by default
  the shipped encoder's, so the embedding heads, which read that encoder,
  are calibrated on music neither the heads nor it heard.
  A dataset whose roles would change (say, groups added to the folder) is
  refused, not resumed: its shards and its music bank follow the roles.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write_json, read_json
from ..config import AudioParams, AugmentParams, DatasetParams, FeatureParams, as_dict, check_compatible, from_dict
from ..engines import catalog
from ..errors import AudiocopyError, DatasetError
from ..signal.audio import load_audio
from .sources import holdout_tracks, list_audio, stable_seed

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WINDOWS_DIR = "windows"
#: Below this many wrong tracks the negatives are too narrow; the seed asks for 100 (1000 recommended).
MIN_WRONG_TRACKS = 100
#: Source excerpt length relative to the window: speed/stretch need spare material.
EXCERPT_FACTOR = 1.3
#: Excerpts of other music kept for the "music mixed in" distortion.
MUSIC_BANK_SIZE = 48


@dataclass(frozen=True)
class Source:
    """One track the dataset draws windows from."""

    track_id: str
    path: str
    role: str  # "licensed" | "wrong"
    split: str  # "train" | "calibration"
    file: str  # relative to the dataset directory

    def to_json(self) -> dict:
        return dict(track_id=self.track_id, path=self.path, role=self.role, split=self.split, file=self.file)


@dataclass(frozen=True)
class BuildPlan:
    """Everything that determines the dataset's content."""

    audio: AudioParams
    features: FeatureParams
    augment: AugmentParams
    dataset: DatasetParams

    def to_json(self) -> dict:
        return {"audio": as_dict(self.audio), "features": as_dict(self.features),
                "augment": as_dict(self.augment), "dataset": as_dict(self.dataset)}




def plan_sources(licensed: list[Path], wrong: list[Path], holdout: str = "group") -> list[Source]:
    """Assign roles, splits and shard names to the source files.

    holdout: the calibration hold-out rule (``sources.holdout_tracks``; the
    encoder's, ``calibration_windows.encoder_file_holdout_rule``, so the
    embedding heads' thresholds are set on music their encoder never heard).
    """
    held_out = holdout_tracks([p.stem for p in wrong], holdout)
    sources = []
    for p in licensed:
        sources.append(Source(p.stem, str(p), "licensed", "train",
                              f"{WINDOWS_DIR}/L-{catalog.track_filename(p.stem)}.npy"))
    for p in wrong:
        split = "calibration" if p.stem in held_out else "train"
        sources.append(Source(p.stem, str(p), "wrong", split,
                              f"{WINDOWS_DIR}/W-{catalog.track_filename(p.stem)}.npy"))
    return sources



def windows_for_source(signal: np.ndarray, n_windows: int, rng: np.random.Generator, *,
                       plan: BuildPlan, music_bank: list[np.ndarray]) -> np.ndarray:
    """Draw ``n_windows`` distorted windows from one track.

    signal: (n,) float32 at ``plan.audio.sample_rate``, at least one window
    long. A share ``clean_fraction`` of windows is only cropped; the rest go
    through ``augment.random_distortion`` with another random bank excerpt
    as possible background music.
    Returns (n_windows, window_samples) float32.
    """
    from .augment import random_distortion
    from .augment.mixing import random_crop

    length = plan.audio.window_samples
    excerpt_len = int(length * EXCERPT_FACTOR)
    out = np.empty((n_windows, length), dtype=np.float32)
    for i in range(n_windows):
        start = int(rng.integers(0, max(1, signal.size - excerpt_len + 1)))
        excerpt = signal[start:start + excerpt_len]
        if rng.random() < plan.dataset.clean_fraction:
            out[i] = random_crop(excerpt, length, rng)
            continue
        other = music_bank[int(rng.integers(len(music_bank)))] if music_bank else None
        out[i] = random_distortion(excerpt, rng, params=plan.augment, sample_rate=plan.audio.sample_rate,
                                   length=length, other_music=other)
    return out


def windows_wanted(source: Source, params: DatasetParams) -> int:
    """How many windows the builder draws from ``source``."""
    if source.role == "licensed":
        return params.positives_per_track
    return params.windows_per_calibration if source.split == "calibration" else params.windows_per_wrong


def _build_one(args) -> tuple[str, int, str | None]:
    """Worker: decode one source, draw windows, save features. Returns (file, n, error)."""
    source, out_dir, plan, music_bank = args
    from ..signal.features import log_spectrogram

    n_windows = windows_wanted(source, plan.dataset)
    try:
        signal = load_audio(source.path, params=plan.audio)
    except AudiocopyError as exc:
        return source.file, 0, str(exc)
    rng = np.random.default_rng(stable_seed(plan.dataset.seed, source.role, source.track_id))
    feats = []
    for lo in range(0, n_windows, 64):  # bounded memory: 64 windows of audio at a time
        batch = windows_for_source(signal, min(64, n_windows - lo), rng, plan=plan, music_bank=music_bank)
        feats.append(log_spectrogram(batch, audio=plan.audio, params=plan.features).astype(np.float16))
    target = Path(out_dir) / source.file
    tmp = target.with_name(target.name + ".part.npy")
    np.save(tmp, np.concatenate(feats))
    os.replace(tmp, target)
    return source.file, n_windows, None


def _music_bank(sources: list[Source], plan: BuildPlan, seed: int) -> list[np.ndarray]:
    """Short excerpts of training "wrong" tracks used as background music."""
    rng = np.random.default_rng(seed)
    pool = [s for s in sources if s.role == "wrong" and s.split == "train"] or \
           [s for s in sources if s.role == "licensed"]
    if not pool:
        return []
    picks = rng.choice(len(pool), size=min(MUSIC_BANK_SIZE, len(pool)), replace=False)
    bank, length = [], int(plan.audio.window_samples * EXCERPT_FACTOR)
    for i in picks:
        try:
            sig = load_audio(pool[i].path, params=plan.audio, min_seconds=0)
        except AudiocopyError:
            continue
        start = int(rng.integers(0, max(1, sig.size - length)))
        bank.append(sig[start:start + length].copy())
    return bank


def build_dataset(licensed_dir: Path, wrong_dir: Path | None, out_dir: Path, plan: BuildPlan, *,
                  jobs: int | None = None, progress: bool = True,
                  roles: tuple[str, ...] = ("licensed", "wrong"), holdout: str | None = None) -> dict:
    """Build (or resume) the dataset; returns the manifest dict.

    licensed_dir: folder of catalogue tracks; wrong_dir: folder of negative
    tracks (may be None, with a warning). out_dir: dataset directory; an
    existing dataset built with other parameters is refused with
    ``DatasetError`` (delete it or choose another directory).
    jobs: worker processes (default: all cores).
    roles: build only the shards of these roles ("licensed", "wrong"); the
    seed's menu builds the licensed and the wrong part as separate steps.
    holdout: which wrong tracks no model trains on (``plan_sources``);
    default the shipped encoder's rule, so the embedding heads, which read
    that encoder, are calibrated on music it never heard. A dataset whose
    hold-out it would change is refused like other changes.
    The manifest is marked complete once every source's shard exists.
    Sources that fail to decode are reported in the manifest's ``failed``
    list and skipped; the build goes on.
    """
    out_dir = Path(out_dir)
    licensed = list_audio(licensed_dir)
    if not licensed:
        raise DatasetError(f"no audio files in {licensed_dir}")
    wrong = list_audio(wrong_dir) if wrong_dir is not None else []
    if len(wrong) < MIN_WRONG_TRACKS:
        log.warning("only %d wrong tracks in %s: at least %d are needed for reliable negatives "
                    "(1000 recommended); false-positive calibration will be coarse",
                    len(wrong), wrong_dir, MIN_WRONG_TRACKS)
    if holdout is None:
        # Imported here: calibration_windows builds on this module.
        from .calibration_windows import encoder_file_holdout_rule

        holdout = encoder_file_holdout_rule()
    sources = plan_sources(licensed, wrong, holdout)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        old = read_manifest(out_dir)
        diffs = _plan_diffs(old, plan) + _role_diffs(old, sources, holdout)
        if diffs:
            raise DatasetError(f"{out_dir} holds a dataset built with other parameters ({'; '.join(diffs)}); "
                               "remove it or choose another --out")
    (out_dir / WINDOWS_DIR).mkdir(parents=True, exist_ok=True)
    manifest = {"format_version": 1, **plan.to_json(), "sources": [s.to_json() for s in sources],
                "complete": False, "failed": []}
    atomic_write_json(manifest_path, manifest)

    todo = [s for s in sources if s.role in roles and not (out_dir / s.file).exists()]
    log.info("dataset %s: %d sources, %d to build", out_dir, len(sources), len(todo))
    failed = _build_shards(todo, sources, out_dir, plan, jobs=jobs, progress=progress) if todo else []
    by_file = {f["file"]: f for f in failed}
    manifest["sources"] = [s.to_json() for s in sources if s.file not in by_file]
    manifest["failed"] = failed
    manifest["complete"] = all((out_dir / s["file"]).exists() for s in manifest["sources"])
    atomic_write_json(manifest_path, manifest)
    return manifest


def _build_shards(todo: list[Source], sources: list[Source], out_dir: Path, plan: BuildPlan, *, jobs: int | None,
                  progress: bool) -> list[dict]:
    """Write the shards of ``todo`` (in worker processes when ``jobs`` > 1); returns the failures."""
    from tqdm import tqdm

    bank = _music_bank(sources, plan, plan.dataset.seed)
    jobs = jobs or os.cpu_count() or 1
    args = [(s, out_dir, plan, bank) for s in todo]
    failed = []
    with tqdm(total=len(todo), desc="dataset", unit="track", disable=not progress) as bar:
        if jobs == 1:
            results = map(_build_one, args)
            for file, _n, err in results:
                failed += _note(file, err)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for file, _n, err in pool.map(_build_one, args, chunksize=1):
                    failed += _note(file, err)
                    bar.update()
    return failed


def _note(file: str, err: str | None) -> list[dict]:
    if err is None:
        return []
    log.warning("skipped a source: %s", err)
    return [{"file": file, "error": err}]


def _plan_diffs(manifest: dict, plan: BuildPlan) -> list[str]:
    diffs = []
    for key, cls, current in (("audio", AudioParams, plan.audio), ("features", FeatureParams, plan.features),
                              ("augment", AugmentParams, plan.augment), ("dataset", DatasetParams, plan.dataset)):
        try:
            saved = from_dict(cls, manifest[key])
        except (KeyError, TypeError, ValueError):
            diffs.append(f"{key}: unreadable")
            continue
        diffs += check_compatible(saved, current, key)
    return diffs


def _role_diffs(manifest: dict, sources: list[Source], holdout: str = "group") -> list[str]:
    """Tracks of an existing manifest whose split the current plan changes (at most a few named).

    holdout: the rule the current plan holds out by, named in the message:
    it moves tracks when groups join the folder or when the shipped encoder
    was trained with another hold-out share.
    """
    old = {(s.get("track_id"), s.get("role")): s.get("split") for s in manifest.get("sources", [])}
    moved = sorted(s.track_id for s in sources if old.get((s.track_id, s.role), s.split) != s.split)
    if not moved:
        return []
    return [f"the calibration hold-out (rule {holdout!r}) changed for {len(moved)} track(s), "
            f"e.g. {', '.join(moved[:3])}"]


def read_manifest(out_dir: Path) -> dict:
    """The manifest of a dataset directory; ``DatasetError`` if absent or corrupt."""
    try:
        return read_json(Path(out_dir) / MANIFEST, "dataset manifest")
    except AudiocopyError as exc:
        raise DatasetError(str(exc)) from None


class Dataset:
    """Read access to a complete dataset (memory-mapped shards)."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir)
        self.manifest = read_manifest(self.dir)
        if not self.manifest.get("complete"):
            raise DatasetError(f"dataset {self.dir} is incomplete: run `audiocopy dataset` again to finish it")
        try:
            self.audio = from_dict(AudioParams, self.manifest["audio"])
            self.features = from_dict(FeatureParams, self.manifest["features"])
            self.sources = [Source(**s) for s in self.manifest["sources"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.dir / MANIFEST} is malformed ({exc})") from None
        self._cache: dict[str, np.ndarray] = {}

    def licensed_ids(self) -> list[str]:
        return [s.track_id for s in self.sources if s.role == "licensed"]

    def calibration_sources(self) -> list[Source]:
        """The wrong tracks held out for calibration (no model trains on them), in manifest order."""
        return [s for s in self.sources if s.role == "wrong" and s.split == "calibration"]

    def source(self, track_id: str, role: str = "licensed") -> Source:
        for s in self.sources:
            if s.track_id == track_id and s.role == role:
                return s
        raise DatasetError(f"track {track_id!r} is not in dataset {self.dir}")

    def windows(self, source: Source) -> np.ndarray:
        """(n, frames, bands) float16 memory-mapped features of one source."""
        if source.file not in self._cache:
            path = self.dir / source.file
            try:
                self._cache[source.file] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DatasetError(f"dataset shard {path} is missing or corrupt ({exc})") from None
        return self._cache[source.file]
