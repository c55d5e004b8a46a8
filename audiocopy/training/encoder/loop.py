"""Contrastive training of the fingerprint encoder (NT-Xent on distorted views).

Place in the pipeline: the offline side of the ``fingerprint`` engine, run
once by ``tools/train_encoder.py`` to produce the shipped weights
(``audiocopy/weights/``). Enrolment never trains: it only embeds.

What is learned. A batch holds B pairs. In each pair the *anchor* is a clean
one-second sub-window of a training track, exactly as enrolment will see it,
and the *positive* is the same music as a query might reach us: played
faster or slower, transposed, time-stretched, noisy, mixed with other
music, through a phone, in a room, as low-bitrate MP3, and cut up to a few
frames off the anchor's grid (enrolment keeps a vector every 0.256 s, a
query's sub-windows fall anywhere in between). NT-Xent (Chen et al. 2020,
as in Chang et al. 2021's neural audio fingerprint) pulls each positive
towards its anchor and pushes it from the 2B - 2 other sub-windows in the
batch. Other sub-windows of the *same* track are left out of the
denominator, not used as negatives: a chorus repeated later in a song is
not a mistake to punish.

Where the distortions come from, and why two sources. The project's own
``augment`` functions are the faithful ones (a phase vocoder for tempo,
soxr for speed, a real MP3 codec), but at 10-30 ms per view they would
leave two CPU cores starved of batches. So the training cache
(``build_cache``) precomputes, per track, the clean band levels of the whole
track and ``views_per_track`` audio-domain views made with ``augment`` (with
their exact time map back to the clean track). Half of the positives come
from those views. The other half are made on the fly in *feature space*,
which is nearly free on the log-frequency axis: a pitch shift is a shift of
the band axis, a tempo change is a resampling of the frame axis, a speed
change is both; white/pink noise and other music are added in the power
domain at an exact SNR (frame energies are cached); a phone is a band-pass
response multiplied onto the bands plus pink noise; a room is an
exponential smear of band power over frames; an MP3 at low rate is a
low-pass. Both halves go through the same floor and per-sub-window
standardisation as enrolment and queries (``fpencoder.standardize``).

Resumable. Everything lives under ``--work``: the cache (one file per
track, skipped when present), and ``checkpoint.npz`` + ``checkpoint.json``
written atomically at the end of every epoch (weights, optimizer state,
history). Epoch e draws its batches from a generator seeded with (seed, e),
so a resumed run continues exactly where an uninterrupted one would have.
The best encoder so far (by validation top-1) is exported after every
epoch, so a time budget or a Ctrl-C still leaves usable weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import atomic_open, atomic_write_json, read_json
from ...config import (
    ENCODER_AUGMENT,
    AudioParams,
    AugmentParams,
    EncoderParams,
    EncoderTrainParams,
    FeatureParams,
    as_dict,
)
from ...encoder.artifact import build_model, save_encoder
from ...encoder.subwindows import standardize
from ...engines import catalog
from ...errors import DatasetError
from ...signal.features import track_band_db

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
CACHE_FILE = "cache.json"
CHECKPOINT = "checkpoint"
#: MP3 bit rates of the audio-domain views (kbit/s at 16 kHz): where the codec
#: actually changes the features (see ``config.AugmentParams.codec_kbps_range``).
VIEW_MP3_KBPS = (16, 24, 32, 48, 64)


# --------------------------------------------------------------------------
# the cache


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


def _seed(*parts) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _make_view(signal: np.ndarray, rng: np.random.Generator, *, audio: AudioParams, aug: AugmentParams,
               length: int, bank: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
    """One audio-domain view with the ``augment`` functions.

    Returns (view (length,) float32, source start sample, time scale): view
    sample n shows source sample ``start + n * scale``.
    """
    from .. import augment

    sr = audio.sample_rate
    u = rng.random()
    kind = "speed" if u < aug.p_speed else "pitch" if u < aug.p_speed + aug.p_pitch else \
        "tempo" if u < aug.p_speed + aug.p_pitch + aug.p_stretch else "none"
    scale = 1.0
    if kind == "speed":
        scale = rng.uniform(*aug.speed_range)
    elif kind == "tempo":
        scale = rng.uniform(*aug.stretch_range)
    need = int(math.ceil(length * scale)) + 256
    start = int(rng.integers(0, max(1, signal.size - need)))
    x = signal[start:start + need]
    if kind == "speed":
        x = augment.speed_change(x, scale, sample_rate=sr)
    elif kind == "tempo":
        x = augment.time_stretch(x, scale, sample_rate=sr)
    elif kind == "pitch":
        x = augment.pitch_shift(x, rng.uniform(*aug.pitch_semitones), sample_rate=sr)
    x = np.ascontiguousarray(augment.fit_length(np.asarray(x, dtype=np.float32), length))
    if bank and rng.random() < aug.p_music:
        other = bank[int(rng.integers(len(bank)))]
        if other.size > length:
            other = augment.random_crop(other, length, rng)
        x = augment.mix_music(x, other, rng.uniform(0.0, 15.0))
    if rng.random() < aug.p_reverb:
        x = augment.reverb(x, rng, sample_rate=sr)
    if rng.random() < aug.p_phone:
        x = augment.phone(x, rng, sample_rate=sr)
    if rng.random() < 0.25 and augment.mp3_available():
        x = augment.mp3_roundtrip(x, sample_rate=sr, bitrate_kbps=int(rng.choice(VIEW_MP3_KBPS)))
    if rng.random() < aug.p_noise:
        x = augment.add_noise(x, rng.uniform(*aug.snr_db_range), rng, color="pink" if rng.random() < 0.5 else "white")
    return x.astype(np.float32, copy=False), float(start), float(scale)


def _cache_one(path: Path, out: Path, *, audio: AudioParams, features: FeatureParams, aug: AugmentParams,
               train: EncoderTrainParams, bank: list[np.ndarray]) -> np.ndarray:
    """Compute and save one track's cache file; returns its signal (for the music bank)."""
    from ...signal.audio import load_audio

    signal = load_audio(path, params=audio)
    clean, energy = track_band_db(signal, audio=audio, features=features, with_energy=True)
    rng = np.random.default_rng(_seed(train.seed, "views", path.stem))
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
    meta = {"audio": as_dict(audio), "features": as_dict(features), "augment": as_dict(aug),
            "views_per_track": train.views_per_track, "view_seconds": train.view_seconds, "seed": train.seed}
    meta_path = cache_dir / CACHE_FILE
    if meta_path.exists():
        old = read_json(meta_path, "encoder training cache")
        if {k: old.get(k) for k in meta} != json.loads(json.dumps(meta)):
            raise DatasetError(f"{cache_dir} was built with other parameters; delete it or use another --work")
    atomic_write_json(meta_path, meta)
    bank: list[np.ndarray] = []
    bank_rng = np.random.default_rng(_seed(train.seed, "bank"))
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


# --------------------------------------------------------------------------
# feature-space distortions


def _db_to_power(x: np.ndarray) -> np.ndarray:
    return np.power(np.float32(10.0), np.asarray(x, dtype=np.float32) / np.float32(10.0))


def _interp_frames(levels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of (T, bands) rows at fractional ``positions`` (clipped)."""
    positions = np.clip(positions, 0, len(levels) - 1)
    i0 = np.floor(positions).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(levels) - 1)
    w = (positions - i0).astype(np.float32)[:, None]
    a, b = levels[i0].astype(np.float32), levels[i1].astype(np.float32)
    return a + w * (b - a)


def _shift_bands(power: np.ndarray, shift: float) -> np.ndarray:
    """Move content up the band axis by ``shift`` bands (fractional), as a transposition does.

    Bands that the shift brings in from outside take each frame's minimum.
    """
    n = power.shape[-1]
    src = np.arange(n, dtype=np.float32) - np.float32(shift)
    i0 = np.floor(src).astype(np.int64)
    w = src - i0
    lo = np.clip(i0, 0, n - 1)
    hi = np.clip(i0 + 1, 0, n - 1)
    out = power[:, lo] * (1 - w) + power[:, hi] * w
    outside = (src < 0) | (src > n - 1)
    if outside.any():
        out[:, outside] = power.min(axis=1, keepdims=True)
    return out


class FeatureAugmenter:
    """Feature-space distortions of clean band levels (see the module docstring)."""

    def __init__(self, *, audio: AudioParams, features: FeatureParams, aug: AugmentParams, seed: int,
                 frames: int):
        from scipy import signal as sps

        from ...signal.features import band_centres_hz
        from .. import augment

        self.audio, self.features, self.aug, self.frames = audio, features, aug, frames
        rng = np.random.default_rng(_seed(seed, "noise-bank"))
        n = int(20 * audio.sample_rate)
        white = rng.standard_normal(n).astype(np.float32)
        pink = augment.pink_noise(n, rng)
        # (levels in dB, mean linear energy) of each noise colour.
        self.noise = []
        for x in (white, pink):
            levels, energy = track_band_db(x, audio=audio, features=features, with_energy=True)
            self.noise.append((_db_to_power(levels), float(_db_to_power(energy).mean())))
        centres = band_centres_hz(features)
        sr = audio.sample_rate
        # A bank of phone-like responses: band-pass with random edges, tilt, one resonance.
        self.eq = []
        for _ in range(64):
            lo, hi = rng.uniform(200, 450), min(rng.uniform(2800, 3800), 0.45 * sr)
            sos = sps.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
            _, h = sps.sosfreqz(sos, worN=centres, fs=sr)
            gain = np.abs(h) ** 2
            f0 = math.exp(rng.uniform(math.log(400), math.log(3000)))
            peak = 10 ** (rng.uniform(-6, 8) / 10 * np.exp(-0.5 * (np.log2(centres / f0) / 0.3) ** 2))
            self.eq.append((gain * peak).astype(np.float32))
        self.centres = centres

    def _noise(self, rng, n_frames: int, color: int) -> tuple[np.ndarray, float]:
        levels, energy = self.noise[color]
        s = int(rng.integers(0, len(levels) - n_frames))
        return levels[s:s + n_frames], energy

    def positive(self, clean: np.ndarray, energy: np.ndarray, rng: np.random.Generator,
                 other: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, float]:
        """A distorted sub-window from a clean track.

        clean: (T, bands) dB levels; energy: (T,) dB frame energies; other:
        (levels, energy) of another track for the music distortion.
        Returns (levels (frames, bands) dB, centre) where ``centre`` is the
        clean frame (fractional) shown at the middle of the sub-window.
        """
        a, f = self.aug, self.frames
        u = rng.random()
        scale, shift = 1.0, 0.0
        bpo = self.features.bins_per_octave
        if u < a.p_speed:
            scale = rng.uniform(*a.speed_range)
            shift = bpo * math.log2(scale)
        elif u < a.p_speed + a.p_pitch:
            shift = rng.uniform(*a.pitch_semitones) * bpo / 12.0
        elif u < a.p_speed + a.p_pitch + a.p_stretch:
            scale = rng.uniform(*a.stretch_range)
        half = (f - 1) / 2 * scale
        centre = rng.uniform(half, len(clean) - 1 - half)
        pos = centre + (np.arange(f) - (f - 1) / 2) * scale
        power = _db_to_power(_interp_frames(clean, pos))
        sig_energy = float(_db_to_power(energy[np.clip(np.round(pos).astype(int), 0, len(energy) - 1)]).mean())
        if shift:
            power = _shift_bands(power, shift)
        if rng.random() < a.p_reverb:
            from scipy.signal import lfilter

            rt60 = rng.uniform(0.2, 1.0)
            g = 10 ** (-6.0 * self.features.hop_length / self.audio.sample_rate / rt60)
            wet = rng.uniform(0.2, 0.7)
            tail = lfilter([1.0 - g], [1.0, -g], power, axis=0, zi=(g * power[:1]))[0]
            power = (1 - wet) * power + wet * tail.astype(np.float32)
        if other is not None and rng.random() < a.p_music:
            o_levels, o_energy = other
            s = int(rng.integers(0, max(1, len(o_levels) - f)))
            o = _db_to_power(o_levels[s:s + f])
            if len(o) == f:
                o_e = float(_db_to_power(o_energy[s:s + f]).mean())
                power = power + o * np.float32(sig_energy / max(o_e, 1e-12) * 10 ** (-rng.uniform(0, 15) / 10))
        if rng.random() < a.p_phone:
            noise, n_e = self._noise(rng, f, 1)
            power = power + noise * np.float32(sig_energy / n_e * 10 ** (-rng.uniform(5, 20) / 10))
            power = power * self.eq[int(rng.integers(len(self.eq)))][None, :]
        if rng.random() < a.p_noise:
            color = int(rng.random() < 0.5)
            noise, n_e = self._noise(rng, f, color)
            power = power + noise * np.float32(sig_energy / n_e * 10 ** (-rng.uniform(*a.snr_db_range) / 10))
        if rng.random() < a.p_codec:
            cutoff = rng.uniform(3000, 7000)
            power = power * np.where(self.centres > cutoff, np.float32(10 ** -rng.uniform(2, 5)), 1).astype(np.float32)
        return 10.0 * np.log10(power + 1e-12), float(centre)


# --------------------------------------------------------------------------
# batches


class PairSampler:
    """Draws (anchors, positives, track ids) batches from the cache."""

    def __init__(self, tracks: list[TrackCache], *, augmenter: FeatureAugmenter, train: EncoderTrainParams,
                 floor_db: float, frames: int):
        self.tracks = [t for t in tracks if len(t.clean) >= frames + 2 * train.jitter_frames + 8]
        if len(self.tracks) < 2:
            raise DatasetError("the encoder needs at least two training tracks longer than a few seconds")
        self.aug, self.train, self.floor_db, self.frames = augmenter, train, floor_db, frames

    def _anchor(self, t: TrackCache, centre: float, rng) -> np.ndarray:
        f, j = self.frames, self.train.jitter_frames
        start = int(round(centre - (f - 1) / 2)) + int(rng.integers(-j, j + 1))
        start = min(max(start, 0), len(t.clean) - f)
        return t.clean[start:start + f]

    def pair(self, ti: int, rng) -> tuple[np.ndarray, np.ndarray]:
        t, f = self.tracks[ti], self.frames
        if len(t.views) and rng.random() < self.train.p_view:
            v = int(rng.integers(len(t.views)))
            i0 = int(rng.integers(0, t.views.shape[1] - f + 1))
            centre = t.view_frame0[v] + (i0 + (f - 1) / 2) * t.view_scale[v]
            positive = t.views[v, i0:i0 + f].astype(np.float32)
        else:
            other = self.tracks[int(rng.integers(len(self.tracks)))]
            positive, centre = self.aug.positive(t.clean, t.energy, rng, (other.clean, other.energy))
        return self._anchor(t, centre, rng), positive

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(anchors, positives) (size, frames, bands) standardised, and (size,) track indices."""
        ids = rng.choice(len(self.tracks), size=size, replace=size > len(self.tracks))
        pairs = [self.pair(int(i), rng) for i in ids]
        anchors = standardize(np.stack([p[0] for p in pairs]), floor_db=self.floor_db)
        positives = standardize(np.stack([p[1] for p in pairs]), floor_db=self.floor_db)
        return anchors, positives, ids.astype(np.int32)


# --------------------------------------------------------------------------
# loss and validation


def nt_xent(z, track_ids, temperature: float):
    """NT-Xent over 2B unit vectors: rows [0, B) anchors, [B, 2B) their positives.

    z: (2B, D) float32 tensor, L2-normalised. track_ids: (B,) int32; pairs of
    rows from the same track (other than the positive) are masked out of the
    denominator. Returns the mean loss (scalar tensor).
    """
    import tensorflow as tf

    n = tf.shape(z)[0]
    b = n // 2
    ids = tf.concat([track_ids, track_ids], 0)
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    idx = tf.range(n)
    positive = tf.concat([idx[b:], idx[:b]], 0)
    same = tf.equal(ids[:, None], ids[None, :])
    is_pos = tf.equal(idx[None, :], positive[:, None])
    masked = tf.logical_and(same, tf.logical_not(is_pos))  # includes the diagonal
    logits = tf.where(masked, tf.constant(-1e9, logits.dtype), logits)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positive, logits=logits)
    return tf.reduce_mean(losses)


@dataclass
class Validation:
    """A fixed retrieval test: distorted queries from held-out tracks against
    a database of every cached track's clean sub-windows."""

    queries: np.ndarray  # (Q, frames, bands) standardised
    query_track: np.ndarray  # (Q,) index into db tracks
    query_centre: np.ndarray  # (Q,) clean frame at the query's centre
    db_subwindows: list  # per track: (n, frames, bands) standardised
    db_starts: list  # per track: (n,) start frames

    def run(self, embed, frames: int) -> dict:
        """Top-1 retrieval: right track, and right track within one enrolment hop."""
        vecs = [embed(s) for s in self.db_subwindows]
        db = np.concatenate(vecs)
        track = np.concatenate([np.full(len(v), i) for i, v in enumerate(vecs)])
        centre = np.concatenate(self.db_starts) + (frames - 1) / 2
        q = embed(self.queries)
        best = np.argmax(q @ db.T, axis=1)
        right_track = track[best] == self.query_track
        near = np.abs(centre[best] - self.query_centre) <= 8
        return {"top1_track": float(right_track.mean()), "top1": float((right_track & near).mean()),
                "db_vectors": int(len(db))}


def make_validation(val: list[TrackCache], distractors: list[TrackCache], sampler: PairSampler, *,
                    train: EncoderTrainParams, floor_db: float, frames: int) -> Validation:
    """Build the fixed validation set (seeded, identical on every resume)."""
    from ...encoder.subwindows import cut_subwindows, subwindow_starts

    rng = np.random.default_rng(_seed(train.seed, "validation"))
    tracks = val + distractors
    queries, q_track, q_centre = [], [], []
    for k in range(train.val_queries):
        ti = k % len(val)
        t = val[ti]
        f = frames
        if len(t.views) and rng.random() < 0.5:
            v = int(rng.integers(len(t.views)))
            i0 = int(rng.integers(0, t.views.shape[1] - f + 1))
            centre = t.view_frame0[v] + (i0 + (f - 1) / 2) * t.view_scale[v]
            positive = t.views[v, i0:i0 + f].astype(np.float32)
        else:
            other = distractors[int(rng.integers(len(distractors)))] if distractors else t
            positive, centre = sampler.aug.positive(t.clean, t.energy, rng, (other.clean, other.energy))
        queries.append(positive)
        q_track.append(ti)
        q_centre.append(centre)
    subs, starts = [], []
    for i, t in enumerate(tracks):
        hop = train.enrol_hop_frames if i < len(val) else 2 * train.enrol_hop_frames  # distractors: half density
        s = subwindow_starts(len(t.clean), frames=frames, hop_frames=hop)
        subs.append(standardize(cut_subwindows(t.clean[None].astype(np.float32), s, frames)[0], floor_db=floor_db))
        starts.append(s)
    return Validation(standardize(np.stack(queries), floor_db=floor_db), np.array(q_track), np.array(q_centre),
                      subs, starts)


# --------------------------------------------------------------------------
# the training loop


@dataclass
class TrainState:
    """What a checkpoint restores."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    best_top1: float = -1.0


def split_tracks(paths: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, validation) split by a hash of the track id."""
    order = sorted(paths, key=lambda p: hashlib.sha1(("val:" + p.stem).encode()).hexdigest())
    return sorted(order[n_val:]), sorted(order[:n_val])


def _save_checkpoint(work: Path, model, optimizer, state: TrainState, meta: dict) -> None:
    arrays = {f"w{i:03d}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i:03d}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    with atomic_open(work / f"{CHECKPOINT}.npz") as fh:
        np.savez(fh, **arrays)
    atomic_write_json(work / f"{CHECKPOINT}.json", {**meta, "epoch": state.epoch, "step": state.step,
                                                          "seconds": state.seconds, "history": state.history,
                                                          "best_top1": state.best_top1})


def _load_checkpoint(work: Path, model, optimizer, meta: dict) -> TrainState | None:
    path = work / f"{CHECKPOINT}.json"
    if not path.exists():
        return None
    saved = read_json(path, "training checkpoint")
    diffs = [k for k in meta if json.loads(json.dumps(meta[k])) != saved.get(k)]
    if diffs:
        raise DatasetError(f"{work} holds a checkpoint made with other settings ({', '.join(diffs)}); "
                           "delete it or use another --work")
    with np.load(work / f"{CHECKPOINT}.npz") as z:
        n_w = len([k for k in z.files if k.startswith("w")])
        model.set_weights([z[f"w{i:03d}"] for i in range(n_w)])
        opt = [z[f"o{i:03d}"] for i in range(len([k for k in z.files if k.startswith("o")]))]
    optimizer.build(model.trainable_variables)
    if len(opt) != len(optimizer.variables):
        raise DatasetError(f"{work}: the checkpoint's optimizer state does not fit this model")
    for var, value in zip(optimizer.variables, opt):
        var.assign(value)
    return TrainState(saved["epoch"], saved["step"], saved["seconds"], saved["history"], saved["best_top1"])


def train_encoder(tracks: list[Path], work: Path, out: Path, *, audio: AudioParams = AudioParams(),
                  features: FeatureParams = FeatureParams(), encoder: EncoderParams = EncoderParams(),
                  aug: AugmentParams = ENCODER_AUGMENT, train: EncoderTrainParams = EncoderTrainParams(),
                  max_minutes: float | None = None, provenance: dict | None = None,
                  progress: bool = True) -> TrainState:
    """Train (or resume training) the encoder and export the best weights to ``out``.

    tracks: training audio files; ``train.val_tracks`` of them are held out
        for validation. work: cache and checkpoints. out: the encoder record
        path (``.json``; weights beside it as ``.npz``).
    max_minutes: stop (after checkpointing) once this much wall time has
        been spent in this call; None runs all ``train.epochs``.
    provenance: extra JSON recorded in the exported artifact (corpus, command).
    Returns the final training state (history: loss and validation per epoch).
    """
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    if encoder.bands != features.n_bins:
        raise DatasetError(f"encoder bands {encoder.bands} != feature bands {features.n_bins}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    train_paths, val_paths = split_tracks(list(tracks), train.val_tracks)
    files = build_cache(train_paths + val_paths, work, audio=audio, features=features, aug=aug, train=train,
                        progress=progress)
    by_stem = {Path(f).stem: f for f in files}
    train_cache = load_cache([by_stem[catalog.track_filename(p.stem)] for p in train_paths
                              if catalog.track_filename(p.stem) in by_stem])
    val_cache = load_cache([by_stem[catalog.track_filename(p.stem)] for p in val_paths
                            if catalog.track_filename(p.stem) in by_stem])
    if not val_cache:
        raise DatasetError("no validation track could be cached")
    hours = sum(len(t.clean) for t in train_cache) * features.hop_length / audio.sample_rate / 3600
    log.info("training on %d tracks (%.2f h), validating on %d", len(train_cache), hours, len(val_cache))

    augmenter = FeatureAugmenter(audio=audio, features=features, aug=aug, seed=train.seed, frames=encoder.frames)
    sampler = PairSampler(train_cache, augmenter=augmenter, train=train, floor_db=features.floor_db,
                          frames=encoder.frames)
    validation = make_validation(val_cache, train_cache, sampler, train=train, floor_db=features.floor_db,
                                 frames=encoder.frames)

    keras.utils.set_random_seed(train.seed)
    model = build_model(encoder)
    total_steps = train.epochs * train.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=train.learning_rate / 10, decay_steps=max(1, total_steps - train.warmup_steps),
        alpha=0.02, warmup_target=train.learning_rate, warmup_steps=train.warmup_steps)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    # ``epochs`` is left out of the resume check so that a finished run can be
    # extended (the cosine schedule then stretches to the new length).
    meta = {"audio": as_dict(audio), "features": as_dict(features), "encoder": as_dict(encoder),
            "augment": as_dict(aug), "train": {k: v for k, v in as_dict(train).items() if k != "epochs"},
            "tracks": sorted(p.stem for p in train_paths), "val_tracks": sorted(p.stem for p in val_paths)}
    state = _load_checkpoint(work, model, optimizer, meta)
    if state is None:
        state = TrainState()
        optimizer.build(model.trainable_variables)
    else:
        log.info("resuming at epoch %d (step %d, %.1f min trained)", state.epoch, state.step, state.seconds / 60)

    variables = model.trainable_variables
    temperature = float(train.temperature)

    @tf.function(reduce_retracing=True)
    def step(anchors, positives, ids):
        with tf.GradientTape() as tape:
            z = model(tf.concat([anchors, positives], 0), training=True)
            loss = nt_xent(z, ids, temperature)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def embed(x):
        return np.concatenate([np.asarray(infer(x[i:i + 512])) for i in range(0, len(x), 512)])

    deadline = None if max_minutes is None else t_start + 60 * max_minutes
    while state.epoch < train.epochs:
        if deadline is not None and time.monotonic() > deadline:
            log.info("time budget of %.1f min reached", max_minutes)
            break
        rng = np.random.default_rng(_seed(train.seed, "epoch", state.epoch))
        t0 = time.monotonic()
        losses = []
        bar = tqdm(range(train.steps_per_epoch), desc=f"epoch {state.epoch + 1}/{train.epochs}", unit="step",
                   disable=not progress, leave=False)
        for _ in bar:
            a, p, ids = sampler.batch(rng, train.batch_pairs)
            losses.append(float(step(a, p, ids)))
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        val = validation.run(embed, encoder.frames)
        state.epoch += 1
        state.step += train.steps_per_epoch
        state.seconds += time.monotonic() - t0
        entry = {"epoch": state.epoch, "loss": round(float(np.mean(losses)), 4), **val,
                 "minutes": round(state.seconds / 60, 2)}
        state.history.append(entry)
        log.info("epoch %d: loss %.3f, val top-1 %.3f (track %.3f), %.1f min", state.epoch, entry["loss"],
                 val["top1"], val["top1_track"], state.seconds / 60)
        improved = val["top1"] > state.best_top1
        if improved:
            state.best_top1 = val["top1"]
        _save_checkpoint(work, model, optimizer, state, meta)
        if improved:
            save_encoder(Path(out), model, params=encoder, audio=audio, features=features, training={
                **(provenance or {}), "epochs": state.epoch, "steps": state.step,
                "train_minutes": round(state.seconds / 60, 1), "train_tracks": len(train_cache),
                "train_hours": round(hours, 2), "val_tracks": len(val_cache), "best": entry,
                "history": state.history, "augment": as_dict(aug), "train": as_dict(train)})
            log.info("exported the best encoder so far to %s", out)
    _record_run(Path(out), state)
    return state


def _record_run(out: Path, state: TrainState) -> None:
    """Add the whole run (every epoch so far) to the exported record; the weights are untouched.

    The record was written when the best epoch was exported; later epochs
    that did not improve are only known here. Minutes are time inside the
    epochs, accumulated over resumed runs (cache building is not counted).
    """
    if not out.exists():
        return
    record = read_json(out, "encoder record")
    training = dict(record.get("training") or {})
    training.update({"run_epochs": state.epoch, "run_steps": state.step,
                     "run_train_minutes": round(state.seconds / 60, 1), "history": state.history})
    record["training"] = training
    atomic_write_json(out, record)
