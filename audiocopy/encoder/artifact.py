"""The encoder's artifact: its weights and a record that says what they are and where they came from.

Place in the pipeline: under ``encoder.model``. An encoder is two files side
by side: ``<stem>.npz`` (the weights, in the order of Keras'
``model.get_weights()``) and ``<stem>.json`` (audio, feature and encoder
parameters, the weights' names, shapes and SHA-256, and the training
provenance: what it was trained on, for how long, with which distortions).

``load_encoder`` checks the record against what the caller will feed it and
refuses, with ``ParamsMismatch``, weights whose shapes or parameters differ
from what the running code or the database expects: a vector made by one
encoder means nothing to an index built by another. The SHA-256 is also what
a database records to know which encoder made its vectors, and every
database keeps its own copy (``copy_encoder``), so retraining the shipped
encoder never breaks one. Nothing here needs TensorFlow: the network runs on
the array module (``encoder.forward``).
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
from .model import Encoder

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
# the artifact


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_encoder(json_path: Path, weights: list[np.ndarray], names: list[str], *, params: EncoderParams,
                 audio: AudioParams, features: FeatureParams, training: dict | None = None) -> dict:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically; returns the JSON record.

    json_path: where the record goes (``.json``); the weights go beside it
    with the suffix ``.npz``. weights, names: the trained arrays and their
    layer paths in ``model.get_weights()`` order (training passes a Keras
    model's; nothing here needs Keras). The weights are written first and the
    record last, and loaders start from the record, so an interrupted save
    never looks complete. Weights are stored as float32 (the encoder is ~1 MB).
    """
    json_path = Path(json_path)
    weights = [np.asarray(w, dtype=np.float32) for w in weights]
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} weight arrays but {len(names)} names")
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
        "weights": [{"name": str(n), "shape": list(w.shape)} for n, w in zip(names, weights)],
        "audio": as_dict(audio),
        "features": as_dict(features),
        "encoder": as_dict(params),
        "training": training or {},
    }
    atomic_write_json(json_path, record)
    return record


def trained_track_ids(record: dict) -> set[str] | None:
    """The corpus track ids an encoder record says it trained on, or None for a record without the list.

    record: an encoder's JSON record (``read_encoder_record``); the list is
    ``training.trained_track_ids`` (``tools/train_encoder.py`` writes it).
    """
    ids = (record.get("training") or {}).get("trained_track_ids")
    return None if ids is None else set(ids)


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
    if [tuple(a.shape) for a in arrays] != shapes:
        raise ModelError(f"encoder weights {weights_path} do not have the shapes their record lists")
    encoder = Encoder(arrays, params=params, audio=rec_audio, features=rec_feat, sha256=sha, info=record)
    log.debug("loaded encoder %s (%s, sha256 %s)", json_path, params, sha[:12])
    return encoder


def copy_encoder(source: Path, folder: Path, *, name: str = "encoder") -> dict:
    """Copy an encoder artifact into ``folder`` as ``<name>.json`` + ``<name>.npz``; returns its record.

    A database keeps its own copy of the encoder its vectors or heads were
    made with, so retraining the shipped encoder never breaks it. The
    weights go first and the record last (atomically), as in ``save_encoder``.
    """
    source, folder = Path(source), Path(folder)
    record = read_encoder_record(source)
    try:
        data = source.with_name(record["weights_file"]).read_bytes()
    except (KeyError, OSError) as exc:
        raise ModelError(f"encoder weights of {source} are missing or unreadable ({exc})") from None
    if _sha256(data) != record.get("weights_sha256"):
        raise ModelError(f"encoder weights of {source} do not match their record's SHA-256")
    atomic_write_bytes(folder / f"{name}.npz", data)
    record = {**record, "weights_file": f"{name}.npz"}
    atomic_write_json(folder / f"{name}.json", record)
    return record
