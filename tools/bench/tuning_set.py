"""A tuning set for the fingerprint vote, made only of the benchmark's ``wrong`` tracks.

Place in ``tools/bench``: used by ``tools/tune_density.py``, beside the
accuracy benchmark but never touching its test music. A setting chosen by
looking at the catalogue and unseen queries of ``tools/evaluate.py`` would
be tuned on the test set, and its figures would flatter it; this set is
built so that the choice never sees them:

* **Which tracks.** The ``wrong`` role of a benchmark split (``split.json``)
  holds music from packages that give neither catalogue nor unseen tracks.
  Its calibration hold-out (by the encoder's rule, whole packages for the
  encoders trained since the rule existed) stays what it is in the
  product: the windows every threshold is set on. The rest is split
  *by package* into a tuning catalogue (about half of the tracks) and tuning
  negatives, so that no tuning negative shares a composer with a tuning
  catalogue track, as in the benchmark.
* **Which distortions.** The product's own augmentation code
  (``audiocopy.training.augment``): its room and phone chains, other music
  at 5 dB, white noise at 0 dB, and the clean fragment. The benchmark's
  queries are made by SoX and ffmpeg instead, so the two share no code.
* **Which windows.** A few 2.5 s fragments per track at seeded offsets at
  least ``EDGE_S`` from either end, each through every condition (the
  same fragment in every condition). A room or phone chain gets
  ``LEAD_S`` of music before the fragment, so the reverberation of what
  came before is in it, as in a real room.

The result is band levels (``signal.features.band_db``) of every query
window: what ``FingerprintEngine.raw_level_scores`` scores, the path the
calibration windows take too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiocopy.config import AudioParams, CalibrationParams, DecisionParams, FeatureParams
from audiocopy.decision.recognizer import silent_windows
from audiocopy.signal.audio import load_audio
from audiocopy.signal.features import band_db, power_spectrogram
from audiocopy.training.augment import ambience, chain, mixing, transcode
from audiocopy.training.calibration_windows import calibration_tracks
from audiocopy.training.sources import list_audio

from .common import BenchError, rng_for
from .split import choose_packages

log = logging.getLogger(__name__)

#: Conditions of the tuning queries (labels of the report's columns).
CONDITIONS = ("clean", "room", "phone", "music-5db", "noise-0db")
#: Seconds a fragment keeps from either end of its track.
EDGE_S = 2.0
#: Seconds of music fed to a room or phone chain before the fragment.
LEAD_S = 0.5


@dataclass(frozen=True)
class TuningSplit:
    """The tuning roles: audio files of the tuning catalogue and negatives, and their packages."""

    catalog: tuple[Path, ...]
    negatives: tuple[Path, ...]
    catalog_packages: tuple[str, ...]
    negative_packages: tuple[str, ...]
    held_out: int


def tuning_split(wrong_dir: Path, split: dict, *, seed: int, rule: str) -> TuningSplit:
    """Split the wrong tracks outside the calibration hold-out by package (module docstring).

    wrong_dir: the benchmark's ``WORK/wrong`` (one file per wrong track);
    split: its ``split.json`` record (``track_packages`` names each track's
    package); rule: the hold-out rule of the encoder the tuning database
    uses (``calibration_windows.encoder_holdout_rule``). The hold-out left
    out is the one its calibration reads (``calibration_windows.
    calibration_tracks`` by that rule): a tuning catalogue track among the
    calibration negatives would set the threshold above its own copies, and
    a tuning negative among them would measure false positives on the
    windows the threshold was set on. Raises ``BenchError`` when the tracks
    span fewer than two packages.
    """
    files = list_audio(Path(wrong_dir))
    known = split.get("track_packages", {})
    held = {f.stem for f in calibration_tracks(files, CalibrationParams(), rule)}
    rest = [f for f in files if f.stem not in held]
    if files and not rest:
        raise BenchError(f"the calibration reads every wrong track of {wrong_dir} (its {rule!r} hold-out is too "
                         "small to stand alone): nothing is left to tune on")
    missing = [f.stem for f in rest if f.stem not in known]
    if missing:
        raise BenchError(f"{len(missing)} tracks of {wrong_dir} are not in the split's track_packages "
                         f"(first: {missing[0]}): is this the split of that work folder?")
    sizes: dict[str, int] = {}
    for f in rest:
        sizes[known[f.stem]] = sizes.get(known[f.stem], 0) + 1
    if len(sizes) < 2:
        raise BenchError(f"the wrong tracks outside the calibration hold-out span {len(sizes)} package(s); "
                         "a tuning split by package needs at least two")
    # The largest package alone may pass half: cap the wish so the negatives keep a package.
    want = min(len(rest) // 2, len(rest) - max(sizes.values()))
    catalog_pk = choose_packages(sizes, max(want, 1), seed=seed, label="tuning catalogue")
    catalog = tuple(f for f in rest if known[f.stem] in catalog_pk)
    negatives = tuple(f for f in rest if known[f.stem] not in catalog_pk)
    if not negatives:
        raise BenchError("every wrong track fell into the tuning catalogue: no tuning negatives are left")
    return TuningSplit(catalog, negatives, tuple(catalog_pk), tuple(sorted(set(sizes) - set(catalog_pk))),
                       len(files) - len(rest))


@dataclass(frozen=True)
class QuerySet:
    """Band levels of the tuning query windows and what each one is.

    levels: (n, frames, bands) float16 dB; condition: (n,) labels of
    ``CONDITIONS``; expected: (n,) track id of a tuning catalogue query,
    "" for a negative.
    """

    levels: np.ndarray
    condition: np.ndarray
    expected: np.ndarray


def _distort(kind: str, chunk: np.ndarray, length: int, rng: np.random.Generator, *, other: np.ndarray,
             sample_rate: int, voice_bank, codecs: tuple[str, ...]) -> np.ndarray:
    """One condition applied to ``chunk`` (lead + fragment); returns the fragment's ``length`` samples."""
    lead = chunk.size - length
    if kind in ("room", "phone"):
        drawn = chain.random_chain(rng, kind=kind, codecs=codecs)
        return chain.apply_chain(chunk, drawn, sample_rate=sample_rate, rng=rng, voice_bank=voice_bank)[lead:]
    x = chunk[lead:]
    if kind == "music-5db":
        return mixing.mix_music(x, mixing.random_crop(other, length, rng), 5.0)
    if kind == "noise-0db":
        return mixing.add_noise(x, 0.0, rng, color="white")
    return x.copy()


def _fragments(signal: np.ndarray, n: int, length: int, lead: int, edge: int, rng) -> list[np.ndarray]:
    """``n`` chunks of ``lead + length`` samples at seeded offsets ``edge`` from either end (fewer if too short)."""
    lo, hi = edge + lead, signal.size - edge - length
    if hi < lo:
        return []
    return [signal[s - lead:s + length] for s in (int(rng.integers(lo, hi + 1)) for _ in range(n))]


def query_levels(split: TuningSplit, *, fragments: int, seed: int, audio: AudioParams, features: FeatureParams,
                 voice_dir: Path, progress: bool = True) -> QuerySet:
    """Every tuning query window (module docstring), as band levels.

    fragments: fragments per track, each in every condition of ``CONDITIONS``.
    voice_dir: where the babble voices of the room chains are cached.
    Silent windows are left out (the product answers them "silent" before
    any score), and logged.
    """
    from tqdm import tqdm

    length, rate = audio.window_samples, audio.sample_rate
    lead, edge = int(LEAD_S * rate), int(EDGE_S * rate)
    bank = ambience.cached_voice_bank(voice_dir, sample_rate=rate)
    codecs = tuple(transcode.available_codecs())
    negatives = [load_audio(f, params=audio) for f in split.negatives]
    windows, conds, expected = [], [], []
    roles = [(f, f.stem) for f in split.catalog] + [(f, "") for f in split.negatives]
    for path, track in tqdm(roles, desc="tuning queries", unit="track", disable=not progress):
        signal = load_audio(path, params=audio)
        rng = rng_for(seed, "tune", path.stem)
        others = [i for i, f in enumerate(split.negatives) if f != path]
        for chunk in _fragments(signal, fragments, length, lead, edge, rng):
            other = negatives[others[int(rng.integers(len(others)))]]
            for kind in CONDITIONS:
                windows.append(_distort(kind, chunk, length, rng, other=other, sample_rate=rate, voice_bank=bank,
                                        codecs=codecs))
                conds.append(kind)
                expected.append(track)
    if not windows:
        raise BenchError("no tuning track is long enough for one fragment")
    stack = np.stack(windows).astype(np.float32)
    heard = ~silent_windows(stack, silence_dbfs=DecisionParams().silence_dbfs)
    if not heard.all():
        log.info("tuning set: %d silent window(s) left out", int((~heard).sum()))
    levels = np.concatenate([band_db(power_spectrogram(stack[i:i + 256][heard[i:i + 256]], params=features),
                                     audio=audio, params=features) for i in range(0, len(stack), 256)])
    return QuerySet(levels.astype(np.float16), np.array(conds)[heard], np.array(expected)[heard])
