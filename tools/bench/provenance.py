"""The encoder's provenance checked against the split: benchmarks measure music it never heard.

Place in ``tools/bench``: right after the split, before any query is made
or enrolled. Both engines embed with the fingerprint encoder (cnnbin's
embedding heads too), so a catalogue or unseen track the encoder trained on
would flatter every figure.

The encoder's record (``audiocopy/weights/fingerprint_encoder.json``, field
``training``) lists ``trained_track_ids``: every corpus track id
``tools/train_encoder.py`` gave it (training and validation tracks), and
``generated``: the summary of the generated music it also trained on. The
check refuses a split whose catalogue or unseen tracks, or any track of
their packages, are among those ids. A record without the list (encoders
trained before the list existed) is refused too, unless the caller allows
an unchecked encoder; the report then says plainly that the check could not
be made.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from audiocopy.encoder.artifact import trained_track_ids

from .common import BenchError, read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvenanceCheck:
    """The outcome: checked (the record had ``trained_track_ids``), how many ids, and the report's sentence."""

    checked: bool
    n_ids: int
    sentence: str
    encoder: str
    generated: dict | None = None


def read_record(path: Path) -> dict:
    """The encoder's JSON record; ``BenchError`` if it is missing or unreadable."""
    record = read_json(Path(path))
    if not isinstance(record, dict):
        raise BenchError(f"encoder record {path} is missing or unreadable")
    return record


def check_encoder(split: dict, record: dict, *, allow_unchecked: bool, name: str = "the encoder") -> ProvenanceCheck:
    """Refuse (``BenchError``) an encoder that trained on the split's measured tracks or their packages.

    split: a ``split.json`` record; record: the encoder's JSON record;
    allow_unchecked: accept a record without ``trained_track_ids`` (the
    sentence then says the check could not be made); name: how messages call
    the encoder (its path).
    """
    training = record.get("training") or {}
    trained = trained_track_ids(record)
    generated = training.get("generated")
    if trained is None:
        if not allow_unchecked:
            raise BenchError(f"{name} lists no trained_track_ids, so nobody can tell whether it trained on "
                             "catalogue or unseen tracks; retrain it with tools/train_encoder.py --split, or "
                             "pass --allow-unchecked-encoder to run anyway (the report will say so)")
        sentence = (f"Whether {name} trained on catalogue or unseen tracks **could not be checked**: its record "
                    "has no `trained_track_ids` (it predates them); this run was allowed with "
                    "`--allow-unchecked-encoder`." + record_says(training))
        log.warning("encoder provenance not checked: %s has no trained_track_ids", name)
        return ProvenanceCheck(False, 0, sentence, name, generated)
    measured = set(split["catalog"]) | set(split["unseen"])
    overlap = sorted(trained & measured)
    if overlap:
        raise BenchError(f"{name} trained on {len(overlap)} catalogue/unseen tracks of this split "
                         f"(e.g. {', '.join(overlap[:3])}): choose another split, or retrain the encoder "
                         "with tools/train_encoder.py --split WORK/split.json")
    packages = set(split.get("packages", {}).get("catalog", [])) | set(split.get("packages", {}).get("unseen", []))
    package_of = split.get("track_packages", {})
    siblings = sorted(i for i in trained if split.get("kind") == "package" and package_of.get(i) in packages)
    if siblings:
        raise BenchError(f"{name} trained on {len(siblings)} tracks of the catalogue/unseen packages "
                         f"(e.g. {', '.join(siblings[:3])}): a package split needs packages it never heard")
    sentence = (f"The encoder never trained on any catalogue or unseen track (checked: {len(trained)} ids"
                + (", and none of their packages" if split.get("kind") == "package" else "") + ").")
    return ProvenanceCheck(True, len(trained), sentence, name, generated)


def record_says(training: dict) -> str:
    """What an unchecked record does say about its tracks (counts and command), as one sentence ('' if nothing)."""
    if "trained_tracks" not in training:
        return ""
    return (f" Its record says it was given {training['trained_tracks']} of {training.get('corpus_tracks', '?')} "
            f"corpus tracks (command: `{training.get('command', '?')}`).")


def reconstruct_trained(training: dict, old_split: dict, corpus_ids: set[str]) -> set[str] | None:
    """The corpus tracks an unchecked encoder was most likely given, or None when that is not consistent.

    For records made by the pre-provenance ``train_encoder.py --exclude-split``:
    the corpus minus that split's catalogue and unseen tracks minus the
    calibration hold-out. Trusted only when the count equals the record's
    ``trained_tracks``.
    """
    from audiocopy.training.sources import is_calibration_track

    excluded = set(old_split.get("catalog", [])) | set(old_split.get("unseen", []))
    trained = {i for i in corpus_ids - excluded if not is_calibration_track(i)}
    return trained if len(trained) == training.get("trained_tracks") else None


def reconstruction_text(split: dict, training: dict, old_split: dict, source: str) -> str:
    """The sentence on an unchecked encoder's likely overlap with ``split`` (``--encoder-split``)."""
    trained = reconstruct_trained(training, old_split, set(split["track_packages"]))
    if trained is None:
        return (f" Reconstructing its tracks from `{source}` does not give the {training.get('trained_tracks', '?')} "
                "tracks its record counts, so nothing is inferred from it.")
    cat, uns = trained & set(split["catalog"]), trained & set(split["unseen"])
    measured = set(split["packages"]["catalog"]) | set(split["packages"]["unseen"])
    heard = {split["track_packages"][i] for i in trained} & measured
    kind = f"a {old_split.get('kind', '?')} split, seed {old_split.get('seed', '?')}"
    return (f" Reconstructed from the split its command names (`--encoder-split {source}`, {kind}: the corpus "
            f"minus that split's catalogue and unseen tracks minus the calibration hold-out gives {len(trained)} "
            f"tracks, the count its record gives), it most likely trained on **{len(cat)} of the "
            f"{len(split['catalog'])} catalogue and "
            f"{len(uns)} of the {len(split['unseen'])} unseen tracks**, and on tracks of {len(heard)} of the "
            f"{len(measured)} measured packages: these figures are not a measurement on unheard music.")


def generated_text(generated: dict | None) -> str:
    """One sentence on the generated music in the encoder's record ('' when there was none)."""
    if not generated:
        return ""
    return (f"It also trained on {generated.get('track_count', '?')} generated tracks "
            f"({generated.get('generator', '?')} {generated.get('version', '?')}, seed {generated.get('seed', '?')}, "
            f"track ids sha256 {str(generated.get('track_ids_sha256', '?'))[:12]}…).")
