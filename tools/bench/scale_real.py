"""The real embeddings of the scale benchmark (``tools/bench_scale.py``): enrolled, copied, generated, queried.

Place in ``tools/bench``: the first step of ``bench_scale``; ``scale_vectors``
derives the rest of the catalogue from what this returns. Three kinds of
real tracks, all embedded by the shipped encoder exactly as enrolment embeds
them (``track_band_db`` then ``embed_track`` at the enrolment hop):

* the corpus tracks, read back from the fingerprint benchmark's enrolled
  database (``WORK/corpus_db``, made by ``tools/bench_fingerprint.py``);
* distorted copies of them, from ``fpscale.copy_vectors`` (speed 0.85-1.15
  without 1.0, white noise at 30 dB; cached in ``WORK/copies``);
* generated music (``tools/generate_music.py``'s WAV files), cached per
  file in ``WORK/generated``.

Queries are 2.5 s windows of corpus tracks the encoder never trained on
(``never_trained``), each clean and distorted; their windows are the same
for every catalogue size.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .common import BenchError, rng_for

log = logging.getLogger(__name__)

#: Distortion of the query windows: speed change (pitch and tempo together), then pink noise at this SNR.
QUERY_SPEEDS = (0.96, 1.04)
QUERY_SNR_DB = 5.0


def corpus_tracks(work: Path) -> tuple[object, list[str], list[np.ndarray]]:
    """(engine of ``WORK/corpus_db``, its track ids, each track's enrolled vectors (n, dim) float32)."""
    from audiocopy.engines import catalog
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint import engine as fp

    db = Path(work) / "corpus_db"
    if not (db / catalog.DB_FILE).exists():
        raise BenchError(f"{db} is missing: run tools/bench_fingerprint.py --steps enrol --work {work} first")
    base = fp.load(db)
    records = catalog.track_records(db)
    return base, [r["track_id"] for r in records], [fpdb.track_vectors(db, r)[0].astype(np.float32)
                                                    for r in records]


def generated_vectors(folder: Path, work: Path, n: int, encoder, hop: int) -> list[tuple[str, np.ndarray]]:
    """(file stem, vectors (m, dim) float16) of the first ``n`` WAV files of ``folder``, embedded like enrolment."""
    from tqdm import tqdm

    from audiocopy.config import AudioParams, FeatureParams
    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.features import track_band_db

    files = sorted(Path(folder).glob("*.wav"))[:n]
    if len(files) < n:
        raise BenchError(f"{folder} holds {len(files)} WAV files, fewer than the {n} asked for")
    audio, features = AudioParams(), FeatureParams()
    out_dir = Path(work) / "generated"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in tqdm(files, desc="generated", unit="track"):
        cached = out_dir / f"{path.stem}.npy"
        if not cached.exists():
            band_db = track_band_db(load_audio(path, params=audio), audio=audio, features=features)
            np.save(cached, encoder.embed_track(band_db, hop_frames=hop).astype(np.float16))
        out.append((path.stem, np.load(cached)))
    return out


def never_trained(corpus_ids: list[str], record: dict, split_path: Path | None) -> tuple[list[str], str]:
    """(corpus ids the encoder never trained on, the sentence saying how that is known).

    record: the encoder's JSON record. With ``trained_track_ids`` the answer
    is exact; a record without them (the shipped encoder predates them) is
    reconstructed from the split its training command excluded
    (``provenance.reconstruct_trained``), trusted only when its count matches
    the record's. Otherwise ``BenchError``: no query may come from music the
    encoder heard.
    """
    from audiocopy.encoder.artifact import trained_track_ids

    from .common import read_json
    from .provenance import reconstruct_trained

    training = record.get("training") or {}
    trained = trained_track_ids(record)
    if trained is not None:
        how = f"its record lists the {len(trained)} tracks it trained on"
    else:
        split = read_json(Path(split_path), None) if split_path else None
        trained = reconstruct_trained(training, split, set(corpus_ids)) if split else None
        if trained is None:
            raise BenchError("the encoder's record lists no trained_track_ids and --encoder-split does not "
                             "reconstruct the tracks it trained on: no query could be shown to be unheard")
        how = (f"its record lists no trained_track_ids; reconstructed from `{split_path}` (the split its "
               f"training excluded) as {len(trained)} tracks, the count its record gives")
    free = [i for i in corpus_ids if i not in trained]
    return free, f"{len(free)} of {len(corpus_ids)} corpus tracks were never trained on ({how})"


def query_windows(corpus: Path, track_ids: list[str], n: int, seed: int) -> dict:
    """``n`` clean 2.5 s windows of ``track_ids`` (round robin) and a distorted twin of each.

    Distortion: speed x0.96 or x1.04 (soxr, pitch and tempo together), then
    pink noise at ``QUERY_SNR_DB``; the twin is cut from the same place of
    the track. Returns {"clean": (n, samples), "distorted": (n, samples),
    "track": [id per window]}.
    """
    import soxr

    from audiocopy.config import AudioParams
    from audiocopy.signal.audio import load_audio

    from .distortions import mix_at_snr, pink_noise

    if not track_ids:
        raise BenchError("no query tracks")
    audio = AudioParams()
    rng = rng_for(seed, "scale-queries")
    clean, distorted, which = [], [], []
    for j in range(n):
        tid = track_ids[j % len(track_ids)]
        sig = load_audio(Path(corpus) / f"{tid}.wav", params=audio)
        w = audio.window_samples
        lo = int(rng.integers(audio.sample_rate, max(audio.sample_rate + 1, sig.size - 2 * w)))
        speed = float(QUERY_SPEEDS[j % len(QUERY_SPEEDS)])
        # Playing ``speed`` times faster = resampling to 1/speed of the samples.
        piece = sig[lo:lo + int(w * speed) + 64]
        fast = soxr.resample(piece, audio.sample_rate, audio.sample_rate / speed)[:w]
        fast = np.pad(fast, (0, w - fast.size))
        clean.append(sig[lo:lo + w])
        distorted.append(mix_at_snr(fast.astype(np.float32), pink_noise(w, rng).astype(np.float32), QUERY_SNR_DB))
        which.append(tid)
    return {"clean": np.stack(clean).astype(np.float32), "distorted": np.stack(distorted).astype(np.float32),
            "track": which}
