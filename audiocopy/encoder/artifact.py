"""The fingerprint encoder: sub-windows of features -> unit vectors, and its artifact.

Place in the pipeline: inside the ``fingerprint`` engine, between
``features`` and the vector index (``fpindex``). Training lives in
``training.fit_encoder``; enrolment (``training.enroll_fingerprint``) and
queries (``engines.fingerprint``) both embed through ``Encoder`` here, so the
two sides can never cut, normalise or embed sub-windows differently.

Sub-windows. A 2.5 s query window is 75 feature frames; the encoder sees
``EncoderParams.frames`` = 30 of them (about one second). One second is
short enough that several of them fit in every query (ten, 0.16 s apart),
which is what lets the matcher vote on a consistent time offset, and long
enough to hold a few notes or beats. Each sub-window is standardised on its
own (zero mean, unit variance over its cells, after the same 80 dB floor as
``features.log_spectrogram``): a query's features were standardised over
the whole 2.5 s window, an enrolled track's over another context, and a
per-sub-window standardisation makes both sides equal whatever the context
was (re-standardising an affinely scaled array gives the same array).

Enrolment computes the band powers of a whole track once, in chunks
(``track_band_db``), instead of cutting overlapping 2.5 s windows: frames are
the same STFT frames either way, and it is 2.5 s / 0.5 s = 5x less FFT work.

The artifact is two files side by side: ``<stem>.npz`` (the weights, in the
order of ``model.get_weights()``) and ``<stem>.json`` (audio, feature and
encoder parameters, the weights' names, shapes and SHA-256, and the
training provenance). ``load_encoder`` rebuilds the network from the JSON
with ``models.build_encoder`` and refuses, with ``ParamsMismatch``, weights
whose shapes or parameters differ from what the running code or the
database expects: a vector made by one encoder means nothing to an index
built by another. The SHA-256 is also what a database records to know which
encoder made its vectors.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write_bytes, atomic_write_json, read_json
from ..config import AudioParams, EncoderParams, FeatureParams, as_dict, check_compatible, from_dict
from ..errors import ModelError, ParamsMismatch
from .subwindows import track_subwindows, window_subwindows

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "audiocopy-fingerprint-encoder"
ARTIFACT_VERSION = 1
#: The encoder shipped with the package (trained by ``tools/train_encoder.py``).
SHIPPED_ENCODER = Path(__file__).resolve().parents[1] / "weights" / "fingerprint_encoder.json"
#: Sub-windows per encoder call: big enough to amortise the call overhead,
#: small enough to keep activations in cache.
EMBED_BATCH = 512


# --------------------------------------------------------------------------
# sub-windows


# --------------------------------------------------------------------------
# the encoder at run time


class Encoder:
    """A loaded encoder: embeds standardised sub-windows.

    Attributes: ``params`` (EncoderParams), ``audio``/``features`` (what it was
    trained on), ``sha256`` (of its weights file: the identity a database
    records), ``info`` (the artifact's JSON).
    """

    def __init__(self, model, *, params: EncoderParams, audio: AudioParams, features: FeatureParams,
                 sha256: str, info: dict | None = None):
        import tensorflow as tf

        self.model = model
        self.params = params
        self.audio = audio
        self.features = features
        self.sha256 = sha256
        self.info = info or {}
        # One traced graph for every batch size: Keras' __call__ costs ~1 ms
        # of Python per call, which would dominate a 10-sub-window query.
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                               input_signature=[tf.TensorSpec((None, params.frames, params.bands), tf.float32)])

    @property
    def dim(self) -> int:
        return self.params.embedding_dim

    def embed(self, subwindows: np.ndarray) -> np.ndarray:
        """Unit vectors of standardised sub-windows.

        subwindows: (n, frames, bands) float32, standardised (``standardize``).
        Returns (n, embedding_dim) float32 with unit L2 norm per row.
        """
        x = np.asarray(subwindows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.params.frames, self.params.bands):
            raise ValueError(f"sub-windows must be (n, {self.params.frames}, {self.params.bands}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [np.asarray(self._fn(x[i:i + EMBED_BATCH])) for i in range(0, len(x), EMBED_BATCH)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def embed_windows(self, features, starts: np.ndarray) -> np.ndarray:
        """Embed the sub-windows of a batch of query windows.

        features: (batch, n_frames, bands) from ``features.log_spectrogram``
        (NumPy or CuPy). starts: (n_sub,) start frames.
        Returns (batch, n_sub, embedding_dim) float32.
        """
        return self.embed_subwindows(window_subwindows(features, starts, self.params.frames))

    def embed_subwindows(self, sub: np.ndarray) -> np.ndarray:
        """(batch, n_sub, frames, bands) from ``window_subwindows`` -> (batch, n_sub, embedding_dim)."""
        flat = self.embed(sub.reshape(-1, self.params.frames, self.params.bands))
        return flat.reshape(*sub.shape[:2], self.dim)

    def embed_track(self, band_db: np.ndarray, *, hop_frames: int) -> np.ndarray:
        """Embed every sub-window of a whole track.

        band_db: (n_frames, bands) from ``track_band_db``; hop_frames: step
        between sub-windows. Returns (n_sub, embedding_dim) float32; vector
        ``i`` starts at frame ``i * hop_frames``.
        """
        return self.embed(track_subwindows(band_db, frames=self.params.frames, hop_frames=hop_frames,
                                           floor_db=self.features.floor_db))


# --------------------------------------------------------------------------
# the artifact


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_encoder(json_path: Path, model, *, params: EncoderParams, audio: AudioParams, features: FeatureParams,
                 training: dict | None = None) -> dict:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically; returns the JSON record.

    json_path: where the record goes (``.json``); the weights go beside it
    with the suffix ``.npz``. The weights are written first and the record
    last, and loaders start from the record, so an interrupted save never
    looks complete. Weights are stored as float32 (the encoder is ~1 MB).
    """
    json_path = Path(json_path)
    weights = [np.asarray(w, dtype=np.float32) for w in model.get_weights()]
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i:03d}": w for i, w in enumerate(weights)})
    data = buf.getvalue()
    weights_path = json_path.with_suffix(".npz")
    atomic_write_bytes(weights_path, data)
    record = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "weights_file": weights_path.name,
        "weights_sha256": _sha256(data),
        "weights": [{"name": v.path, "shape": list(v.shape)} for v in model.weights],
        "audio": as_dict(audio),
        "features": as_dict(features),
        "encoder": as_dict(params),
        "training": training or {},
    }
    atomic_write_json(json_path, record)
    return record


def read_encoder_record(json_path: Path) -> dict:
    """The JSON record of an encoder artifact (``ModelError`` if absent/corrupt)."""
    record = read_json(Path(json_path), "encoder record")
    if not isinstance(record, dict) or record.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"{json_path} is not a fingerprint encoder record (format {ARTIFACT_FORMAT!r})")
    if record.get("format_version") != ARTIFACT_VERSION:
        raise ModelError(f"{json_path}: encoder format {record.get('format_version')} is not supported "
                         f"(expected {ARTIFACT_VERSION})")
    return record


def load_encoder(json_path: Path = SHIPPED_ENCODER, *, audio: AudioParams | None = None,
                 features: FeatureParams | None = None, expect_sha256: str | None = None) -> Encoder:
    """Rebuild an encoder from its artifact and check it fits.

    json_path: the artifact's record (default: the shipped encoder).
    audio, features: the parameters the caller will feed it (a database's or
        the running code's); a difference raises ``ParamsMismatch``.
    expect_sha256: the weights a database was enrolled with; other weights
        raise ``ParamsMismatch`` (their vectors would not match the index).
    Raises ``ModelError`` for a missing, corrupt or tampered artifact.
    """
    json_path = Path(json_path)
    record = read_encoder_record(json_path)
    try:
        rec_audio = from_dict(AudioParams, record["audio"])
        rec_feat = from_dict(FeatureParams, record["features"])
        params = from_dict(EncoderParams, record["encoder"])
        weights_path = json_path.with_name(record["weights_file"])
        shapes = [tuple(w["shape"]) for w in record["weights"]]
        sha = str(record["weights_sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"encoder record {json_path} is malformed ({exc})") from None
    diffs = []
    if audio is not None:
        diffs += check_compatible(rec_audio, audio, "audio")
    if features is not None:
        diffs += check_compatible(rec_feat, features, "features")
    if params.bands != rec_feat.n_bins:
        diffs.append(f"encoder.bands {params.bands} != features.n_bins {rec_feat.n_bins}")
    if expect_sha256 is not None and sha != expect_sha256:
        diffs.append(f"weights sha256 {sha[:12]}..., the database was enrolled with {expect_sha256[:12]}... "
                     "(re-enrol the catalogue with this encoder, or use the encoder stored in the database)")
    if diffs:
        raise ParamsMismatch(f"encoder {json_path} does not fit: " + "; ".join(diffs))
    try:
        data = weights_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"encoder weights {weights_path} are missing or unreadable ({exc})") from None
    if _sha256(data) != sha:
        raise ModelError(f"encoder weights {weights_path} do not match their record's SHA-256 "
                         "(corrupt or replaced; retrain or reinstall)")
    with np.load(io.BytesIO(data)) as npz:
        arrays = [npz[f"w{i:03d}"] for i in range(len(npz.files))]
    model = build_model(params)
    expected = [tuple(v.shape) for v in model.weights]
    if [tuple(a.shape) for a in arrays] != expected or shapes != expected:
        raise ParamsMismatch(f"encoder weights {weights_path} have shapes {[a.shape for a in arrays][:4]}..., "
                             f"the architecture {params} needs {expected[:4]}... ({len(expected)} arrays)")
    model.set_weights(arrays)
    log.debug("loaded encoder %s (%s, sha256 %s)", json_path, params, sha[:12])
    return Encoder(model, params=params, audio=rec_audio, features=rec_feat, sha256=sha, info=record)


def build_model(params: EncoderParams):
    """A fresh (untrained) Keras encoder for ``params``."""
    from ..training.models import build_encoder

    return build_encoder((params.frames, params.bands), widths=params.widths, hidden_dim=params.hidden_dim,
                         embedding_dim=params.embedding_dim)
