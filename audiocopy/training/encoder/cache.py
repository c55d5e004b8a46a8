"""The training cache: each track's clean band levels and distorted audio views.

Place in the pipeline: the first step of encoder training. The faithful
distortions (``training.augment``: phase vocoder, soxr, real codecs) cost
10-30 ms per view, too much per training step on two cores, so each track's
views are made once here, with their exact time map back to the clean track,
and saved (one ``.npz`` per track, skipped when present: a rerun resumes).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...config import ENCODER_AUGMENT, AudioParams, AugmentParams, EncoderTrainParams, FeatureParams, as_dict
from ...engines import catalog
from ...errors import DatasetError
from ...signal.features import track_band_db
from ..augment.chain import apply_chain, random_chain
from ..sources import stable_seed

log = logging.getLogger(__name__)

#: Kinds of acoustic chain a view may go through, room twice as often: the
#: first use the product exists for is a microphone in a room.
CHAIN_KINDS = ("room", "room", "phone", "broadcast")
CACHE_DIR = "cache"


CACHE_FILE = "cache.json"


@dataclass
class TrackCache:
    """Cached features of one training track (all levels in dB).

    clean: (T, bands) band levels; energy: (T,) frame energies.
    views: (V, Tv, bands) audio-domain distorted views; view_energy (V, Tv);
    view_frame0, view_scale: (V,) view frame i shows clean frame
    ``view_frame0 + i * view_scale`` (fractional).
    """

    track_id: str
    clean: np.ndarray
    energy: np.ndarray
    views: np.ndarray
    view_energy: np.ndarray
    view_frame0: np.ndarray
    view_scale: np.ndarray



def _make_view(signal: np.ndarray, rng: np.random.Generator, *, audio: AudioParams, aug: AugmentParams,
               length: int, bank: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
    """One audio-domain view: the dataset's edit and damage, or an acoustic chain.

    Returns (view (length,) float32, source start sample, time scale): view
    sample n shows source sample ``start + n * scale``.
    """
    from .. import augment
    from ..augment.recipe import add_damage, apply_edit, codec_bitrates, draw_edit

    sr = audio.sample_rate
    kind, value = draw_edit(aug, rng)
    scale = value if kind in ("speed", "stretch") else 1.0
    need = int(math.ceil(length * scale)) + 256
    start = int(rng.integers(0, max(1, signal.size - need)))
    x = apply_edit(signal[start:start + need], kind, value, sample_rate=sr)
    x = np.ascontiguousarray(augment.fit_length(np.asarray(x, dtype=np.float32), length))
    other = bank[int(rng.integers(len(bank)))] if bank else None
    if rng.random() < aug.p_chain:
        # A whole loudspeaker-room-microphone (or phone, or broadcast) chain;
        # it keeps the view's time alignment, so the time map still holds.
        x = apply_chain(x, random_chain(rng, kind=str(rng.choice(CHAIN_KINDS))), sample_rate=sr, rng=rng)
    else:
        x = add_damage(x, rng, params=aug, sample_rate=sr, other_music=other, codec_kbps=codec_bitrates(aug, sr))
    return x.astype(np.float32, copy=False), float(start), float(scale)


def _cache_one(path: Path, out: Path, *, audio: AudioParams, features: FeatureParams, aug: AugmentParams,
               train: EncoderTrainParams, bank: list[np.ndarray]) -> np.ndarray:
    """Compute and save one track's cache file; returns its signal (for the music bank)."""
    from ...signal.audio import load_audio

    signal = load_audio(path, params=audio)
    clean, energy = track_band_db(signal, audio=audio, features=features, with_energy=True)
    rng = np.random.default_rng(stable_seed(train.seed, "views", path.stem))
    length = int(train.view_seconds * audio.sample_rate)
    views, view_e, frame0, scales = [], [], [], []
    half = features.n_fft / 2
    for _ in range(train.views_per_track):
        x, start, scale = _make_view(signal, rng, audio=audio, aug=aug, length=length, bank=bank)
        v, e = track_band_db(x, audio=audio, features=features, with_energy=True)
        views.append(v)
        view_e.append(e)
        # View frame i is centred on view sample i*hop + n_fft/2, which shows
        # source sample start + (i*hop + n_fft/2)*scale, the centre of clean frame
        # (that - n_fft/2) / hop.
        frame0.append((start + half * scale - half) / features.hop_length)
        scales.append(scale)
    with atomic_open(out) as fh:
        np.savez(fh, clean=clean.astype(np.float16), energy=energy, views=np.stack(views).astype(np.float16),
                 view_energy=np.stack(view_e), view_frame0=np.array(frame0, dtype=np.float64),
                 view_scale=np.array(scales, dtype=np.float64))
    return signal


#: Fields of ``AugmentParams`` that only the feature-space positives read: a
#: cache of audio views does not depend on them.
FEATURE_ONLY_FIELDS = ("p_speech", "speech_snr_db_range", "music_snr_db_range")


def view_params(aug: AugmentParams) -> dict:
    """The distortion parameters the cached audio views depend on (the cache's identity)."""
    return {k: v for k, v in as_dict(aug).items() if k not in FEATURE_ONLY_FIELDS}


def build_cache(tracks: list[Path], work: Path, *, audio: AudioParams = AudioParams(),
                features: FeatureParams = FeatureParams(), aug: AugmentParams = ENCODER_AUGMENT,
                train: EncoderTrainParams = EncoderTrainParams(), progress: bool = True) -> list[Path]:
    """Cache the clean features and audio-domain views of every training track.

    tracks: audio files (track id = file stem). work: the training folder.
    Tracks already cached are skipped (resume); a cache made with other
    parameters is refused with ``DatasetError``. A file that cannot be
    decoded is skipped with a warning. Returns the cache files in track order.
    """
    from tqdm import tqdm

    from ...errors import AudiocopyError

    cache_dir = Path(work) / CACHE_DIR
    meta = {"audio": as_dict(audio), "features": as_dict(features), "augment": view_params(aug),
            "views_per_track": train.views_per_track, "view_seconds": train.view_seconds, "seed": train.seed}
    meta_path = cache_dir / CACHE_FILE
    if meta_path.exists():
        old = read_json(meta_path, "encoder training cache")
        if {k: old.get(k) for k in meta} != json.loads(json.dumps(meta)):
            raise DatasetError(f"{cache_dir} was built with other parameters; delete it or use another --work")
    atomic_write_json(meta_path, meta)
    bank: list[np.ndarray] = []
    bank_rng = np.random.default_rng(stable_seed(train.seed, "bank"))
    files = []
    for path in tqdm(tracks, desc="cache", unit="track", disable=not progress):
        out = cache_dir / f"{catalog.track_filename(path.stem)}.npz"
        if out.exists():
            files.append(out)
            continue
        try:
            signal = _cache_one(path, out, audio=audio, features=features, aug=aug, train=train, bank=bank)
        except AudiocopyError as exc:
            log.warning("skipped %s: %s", path, exc)
            continue
        files.append(out)
        # Background music for later tracks' views: a few seconds of this one.
        n = int(6 * audio.sample_rate)
        if signal.size > n:
            s = int(bank_rng.integers(0, signal.size - n))
            bank.append(signal[s:s + n].copy())
            bank = bank[-32:]
    return files


def load_cache(files: list[Path]) -> list[TrackCache]:
    """Read cache files into memory (float16 band levels: ~10 MB per audio hour)."""
    out = []
    for f in files:
        with np.load(f) as z:
            out.append(TrackCache(Path(f).stem, z["clean"], z["energy"].astype(np.float32), z["views"],
                                  z["view_energy"].astype(np.float32), z["view_frame0"], z["view_scale"]))
    return out
