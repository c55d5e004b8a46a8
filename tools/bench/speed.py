"""cnnbin's scoring cost: features and scoring per window for 10 and 100 tracks.

Place in ``tools/bench``: the last measuring step of ``tools/evaluate.py
--engine cnnbin`` (the fingerprint engine's cost by catalogue size is
``tools/bench_fingerprint.py``'s scale step). Scoring is
``CnnBinEngine.score_features`` on ready features: for the embedding kind
it includes the encoder's ten sub-window embeddings per window (also
measured alone), for the spectrogram kind the stacked CNNs. The 10- and
100-track catalogues are timing copies of the trained database
(``clone_db``): the cost depends on the number and size of the models, not
on their weights.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from .common import BenchError
from .machine import per_batch_ms

log = logging.getLogger(__name__)


def clone_db(src: Path, dst: Path, tracks: int) -> None:
    """A timing catalogue of ``tracks`` tracks: copies of the source's cnnbin models under new ids.

    Its matches are meaningless; never use it for accuracy.
    """
    from audiocopy.atomic_files import atomic_write_json
    from audiocopy.engines import catalog

    records = catalog.track_records(src)
    if not records:
        raise BenchError(f"{src} has no tracks to clone")
    if dst.exists():
        raise BenchError(f"{dst} exists; remove it first")
    (dst / catalog.TRACKS_DIR).mkdir(parents=True)
    shutil.copy(src / catalog.DB_FILE, dst / catalog.DB_FILE)
    for i in range(tracks):
        rec = {k: v for k, v in records[i % len(records)].items() if k != "_path"}
        track_id = f"clone-{i:04d}-{rec['track_id']}"
        base = catalog.track_filename(track_id)
        shutil.copy(src / catalog.TRACKS_DIR / rec["model_file"], dst / catalog.TRACKS_DIR / f"{base}.keras")
        atomic_write_json(dst / catalog.TRACKS_DIR / f"{base}.json",
                          {**rec, "track_id": track_id, "model_file": f"{base}.keras"})
    log.info("wrote %s with %d tracks (timing only)", dst, tracks)


def _timing_db(db: Path, dst: Path, n_tracks: int) -> Path:
    """``db`` itself when it has exactly ``n_tracks`` tracks, else a timing copy of that size."""
    from audiocopy.engines import catalog

    if len(catalog.track_records(db)) == n_tracks:
        return db
    clone_db(db, dst, n_tracks)
    return dst


def measure_cnnbin_speed(db: Path, windows: np.ndarray, scratch: Path) -> dict:
    """Feature and scoring ms per window (batches 1 and 32) of a cnnbin database.

    windows: (n, window_samples) float32 query windows at the database's
    rate (repeated to 32 when fewer). scratch: where timing copies go
    (removed afterwards).
    """
    import tensorflow as tf

    from audiocopy.engines import catalog
    from audiocopy.engines.cnnbin import engine as cnnbin
    from audiocopy.engines.cnnbin.stacked_head import embed_query_windows
    from audiocopy.signal.features import log_spectrogram
    from audiocopy.signal.xp import device_name, get_xp, to_numpy

    info, n_trained = catalog.open_db(db), len(catalog.track_records(db))
    windows = np.resize(windows, (32, windows.shape[1])).astype(np.float32)
    xp = get_xp()
    feats = np.asarray(to_numpy(log_spectrogram(windows, audio=info.audio, params=info.features, xp=xp)))
    out = {"trained_models": n_trained, "feature_device": device_name(xp), "scoring": [], "encoder": [],
           "tensorflow": tf.__version__, "tf_devices": [d.device_type for d in tf.config.list_physical_devices()]}
    out["features"] = per_batch_ms(lambda b: to_numpy(log_spectrogram(windows[:b], audio=info.audio,
                                                                     params=info.features, xp=xp)))
    shutil.rmtree(scratch, ignore_errors=True)
    engine = None
    for n_tracks in (10, 100):
        engine = cnnbin.load(_timing_db(db, scratch / f"db{n_tracks}", n_tracks))
        out["kind"] = engine.cnn.kind
        out["scoring"] += per_batch_ms(lambda b: engine.score_features(feats[:b]), tracks=n_tracks,
                                       repeated=n_tracks > n_trained)
    if engine is not None and engine.encoder is not None:
        out["encoder"] = per_batch_ms(lambda b: embed_query_windows(engine.encoder, feats[:b],
                                                                    hop_frames=engine.cnn.hop_frames))
    shutil.rmtree(scratch, ignore_errors=True)
    return out
